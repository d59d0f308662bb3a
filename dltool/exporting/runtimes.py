"""The optional packages an export needs: imported on demand, named with the pip command when missing."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
import warnings
from contextlib import contextmanager

from ..errors import ExportError
from ..installation import pip_install


def require(module: str, package: str, purpose: str):
    """Import ``module`` (from pip package ``package``), or raise ExportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"{purpose} needs the package {package}, which is not installed; {pip_install('export')}"
        ) from None


def version_of(package: str) -> str:
    """The installed version of pip package ``package`` ('unknown' when it has no metadata)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextmanager
def quiet_converters():
    """Silence what converters log and warn while they work (tf2onnx's INFO lines, NumPy deprecations)."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def quiet_stderr():
    """Hide what native code writes straight to file descriptor 2 (LiteRT's "Created TensorFlow Lite XNNPACK
    delegate" line); errors still come back as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
