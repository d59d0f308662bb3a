"""The registry of data sources: config ``data.source`` -> loader function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class RawData:
    """What a source yields before splitting: inputs, targets, and its own test split if it has one."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None  # names for label indices 0..K-1, where the source knows them
    feature_names: list[str] | None = None  # input columns, for tabular sources


def _loaders() -> dict[str, Callable]:
    from . import csv_source, images, keras_datasets, numpy_files, sklearn_datasets, synthetic, text, timeseries

    return {
        "keras": keras_datasets.load,
        "npz": numpy_files.load_npz,
        "npy": numpy_files.load_npy,
        "csv": csv_source.load,
        "sklearn": sklearn_datasets.load,
        "synthetic": synthetic.load,
        "images": images.load,
        "text": text.load,
        "timeseries": timeseries.load,
    }


def load_source(data_config, seed: int, classification: bool) -> RawData:
    """Load the configured data source (``seed`` drives synthetic generators)."""
    return _loaders()[data_config.source](data_config, seed=seed, classification=classification)
