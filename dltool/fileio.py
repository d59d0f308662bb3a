"""Atomic file writes: every file in a run folder (and every output dltool writes) goes through here.

A file is written to a temporary name beside its target, flushed to disk and
renamed over it, so a crash at any instant leaves the old complete file or
the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    A crash at any instant leaves either the old complete file or the new one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """:func:`atomic_write_bytes` for JSON (indented, NaN written as null)."""
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def _json_safe(value):
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def check_output_file(path: str | Path, what: str = "output", option: str = "the output", error=None) -> Path:
    """Refuse, before any work is done, a file path that cannot be written: a missing or unwritable folder, or a
    folder in place of the file. Every command that writes a file the user names follows this one rule.

    ``option`` names where the path came from (``-o``); ``error`` is the DltoolError subclass to raise
    (default UsageError; exit 2 either way).
    """
    from .errors import UsageError

    error = error or UsageError
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name for {option}")
    if not folder.exists():
        raise error(
            f"{path}: the folder {folder} does not exist; create it first (mkdir -p {folder}) "
            f"or write the {what} elsewhere"
        )
    if not folder.is_dir():
        raise error(f"{path}: {folder} is a file, not a folder")
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-")
        probe.close()
    except OSError as exc:
        raise error(f"{path}: cannot write in {folder} ({exc.strerror or exc}); write the {what} elsewhere") from None
    return path
