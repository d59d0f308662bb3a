"""What a run's model reads from files: one reader per kind of model (tables and arrays, images, texts, series).

A reader knows its kind's file types, checks a CSV's columns (one message for
a missing or unexpected column: :func:`dltool.data.csv_source.column_problem`)
and reads files in bounded chunks: unlabelled inputs for ``predict``, inputs
with targets for ``evaluate --data``. Both come out ready for the model: the
run's saved preprocessing applied, NaN and infinity refused. :func:`inputs_for`
picks the reader from the run's preprocessing, so the commands never branch on
the kind of model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import images
from ..data.images import ImageSettings
from ..data.preprocessing import Preprocessing
from ..errors import InputError
from .base import LabelledFile, ModelInputs
from .image import ImageInputs
from .series import SeriesInputs
from .table import TableInputs
from .text import TextInputs

__all__ = [
    "ImageInputs",
    "LabelledFile",
    "ModelInputs",
    "SeriesInputs",
    "TableInputs",
    "TextInputs",
    "expand_inputs",
    "image_settings",
    "inputs_for",
    "load_image",
]


def image_settings(state: Preprocessing) -> ImageSettings | None:
    """How this run reads an image file: its images source's settings, else what its input shape implies."""
    if state.kind == "image":
        return ImageSettings.from_dict(state.extra["image"])
    if state.kind in ("text", "timeseries"):
        return None
    return ImageSettings.for_input_shape(list(state.input_shape))


def inputs_for(state: Preprocessing) -> ModelInputs:
    """The reader for this run's kind of model (its saved preprocessing says which)."""
    if state.kind == "text":
        return TextInputs(state)
    if state.kind == "timeseries":
        return SeriesInputs(state)
    settings = image_settings(state)
    return TableInputs(state) if settings is None else ImageInputs(state, settings)


def load_image(path: Path, state: Preprocessing) -> np.ndarray:
    """An image file as one raw sample of the model's input shape (resized, converted to its colour mode)."""
    reader = inputs_for(state)
    if not isinstance(reader, ImageInputs):
        raise InputError(f"{path}: this model takes {reader.describe()}, not images")
    return images.read_image(path, reader.settings, error=InputError)


def expand_inputs(paths: list[str | Path], reader: ModelInputs) -> list[Path]:
    """Files to predict on: each file as given, each folder's usable files (recursively, sorted)."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            usable = reader.suffixes(in_folder=True)
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in usable and not p.name.startswith(".")
            )
            if not found:
                raise InputError(
                    f"{path}: the folder holds no files this model can read (expected {', '.join(sorted(usable))})"
                )
            files += found
        elif not path.exists():
            raise InputError(f"{path}: file not found")
        elif path.suffix.lower() not in reader.suffixes():
            raise InputError(
                f"{path}: this model cannot read '{path.suffix}' files; expected "
                f"{', '.join(sorted(reader.suffixes()))} ({reader.describe()})"
            )
        else:
            files.append(path)
    return files
