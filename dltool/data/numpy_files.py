"""The ``npz`` and ``npy`` sources: NumPy files on disk (never unpickled)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .sources import RawData, require_data_file


def open_array_file(path: str | Path, key_path: str):
    """np.load a .npy/.npz with pickles refused; a missing or unreadable file is a ConfigError at ``key_path``."""
    path = require_data_file(path, key_path, "an .npy or .npz file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a NumPy file ({exc}); expected an .npy or .npz file") from None


def arrays_from_npz(archive, path: str | Path) -> RawData:
    """Pick x_train/y_train[/x_test/y_test], or x/y, out of an open .npz."""
    keys = set(archive.files)

    def array(key: str):
        try:
            return archive[key]
        except ValueError as exc:  # object arrays need pickle, which is refused: it can run code
            raise DataError(
                f"{path}: array '{key}' cannot be read without unpickling ({exc}); expected a numeric array"
            ) from None

    if {"x_train", "y_train"} <= keys:
        has_test = {"x_test", "y_test"} <= keys
        return RawData(
            x=array("x_train"),
            y=array("y_train"),
            x_test=array("x_test") if has_test else None,
            y_test=array("y_test") if has_test else None,
        )
    if {"x", "y"} <= keys:
        return RawData(x=array("x"), y=array("y"))
    raise DataError(
        f"{path}: expected arrays x_train and y_train (optionally x_test, y_test) or x and y, "
        f"received {', '.join(sorted(keys)) or 'no arrays'}"
    )


def load_npz(config, **_) -> RawData:
    """Load an .npz in the Keras layout or with x/y."""
    archive = open_array_file(config.path, "data.path")
    with archive:
        raw = arrays_from_npz(archive, config.path)
    _check_lengths(raw, config.path)
    return raw


def load_npy(config, **_) -> RawData:
    """Load inputs and targets from two .npy files."""
    x = open_array_file(config.x, "data.x")
    y = open_array_file(config.y, "data.y")
    for array, key in ((x, "data.x"), (y, "data.y")):
        if not isinstance(array, np.ndarray):
            raise ConfigError("expected an .npy file holding one array, received an .npz archive", path=key)
    raw = RawData(x=x, y=y)
    _check_lengths(raw, f"{config.x} and {config.y}")
    return raw


def _check_lengths(raw: RawData, where) -> None:
    for x, y, split in ((raw.x, raw.y, "train"), (raw.x_test, raw.y_test, "test")):
        if x is not None and len(x) != len(y):
            raise DataError(f"{where}: {split} inputs and targets differ in length: {len(x)} inputs, {len(y)} targets")
