"""Loading a data source: the registered loader for ``data.source`` (see :mod:`dltool.config.registry`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.registry import source_entry


@dataclass
class SplitRows:
    """The rows of a source's samples in each split, for a source that draws its splits itself (an image folder:
    from its files' paths, stratified by class) instead of leaving them to :func:`dltool.data.splits.split_raw`."""

    train: np.ndarray
    validation: np.ndarray | None  # None: no validation split of its own (none, or data.validation: test)
    test: np.ndarray
    description: str  # how the test split was drawn, for run.json: "fraction 0.2 of each class (seed 42)"


@dataclass
class RawData:
    """What a source yields before splitting: inputs, targets, and its own test split if it has one."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None  # names for label indices 0..K-1, where the source knows them
    feature_names: list[str] | None = None  # input columns, for tabular sources
    warnings: list[str] = field(default_factory=list)  # what looks wrong but does not stop training (an id column)
    split: SplitRows | None = None  # the source's own splits of x (None: split_raw draws them)
    # Per sample, what its split is a hash of (with the seed): tables named by a glob or a list, or with a
    # data.split_key (see data.table_files). None: the test and validation splits are drawn at random.
    split_ids: np.ndarray | None = None
    sample_weight: np.ndarray | None = None  # a table's data.sample_weight column, one weight per sample


def _function(reference: str) -> Callable:
    """Import ``"package.module:function"`` (data modules load only when their source is used)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def load_source(data_config, seed: int, classification: bool) -> RawData:
    """Load the configured data source (``seed`` drives synthetic generators)."""
    loader = _function(source_entry(data_config.source).loader)
    return loader(data_config, seed=seed, classification=classification)


def should_stream(data_config) -> bool:
    """Whether this data config is read from disk while training instead of loaded: ``data.stream`` true, or
    auto and the source's own rule says so (a CSV over 1 GiB, ...). A source without ``stream`` is loaded."""
    entry = source_entry(data_config.source)
    if entry.streamer is None or data_config.stream is False:
        return False
    return data_config.stream is True or bool(_function(entry.stream_auto)(data_config))


def streamer(data_config) -> Callable:
    """The function that opens this source's splits for streaming: ``streamer(data_config)(config)``."""
    return _function(source_entry(data_config.source).streamer)


def preprocessing_kind(data_config) -> dict:
    """Preprocessing's ``kind`` and ``extra`` for a data source: what predict needs to read raw files ({}: arrays)."""
    hook = source_entry(data_config.source).preprocessing
    return _function(hook)(data_config) if hook else {}


def require_data_file(path, key: str = "data.path", expected: str = "a data file") -> Path:
    """``path`` as a Path when it is a file; a missing path, or a folder where a file belongs, is a ConfigError at ``key``."""
    from ..errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; expected {expected} (give the file's path inside it)", path=key)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}", path=key)
    return path
