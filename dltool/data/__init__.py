"""Data: one module per source, splits and preprocessing.

Which module loads which ``data.source`` is registered in :mod:`dltool.config.registry`.

:func:`prepare_data` is the one entry point training uses: it loads the
configured source, draws the test and validation splits with the config's
seed, maps class labels to indices, fits preprocessing on the training split
only and returns a :class:`TrainingData`: arrays in memory, or a source read
from disk batch by batch (``data.stream``). Commands use that interface only,
never the kind behind it. :func:`open_test_split` rebuilds a run's test split.
"""

from __future__ import annotations

from .base import TrainingData
from .preprocessing import Preprocessing
from .sources import RawData, load_source, should_stream
from .splits import ArrayData, open_test_split, prepare_data

__all__ = [
    "ArrayData",
    "Preprocessing",
    "RawData",
    "TrainingData",
    "load_source",
    "open_test_split",
    "prepare_data",
    "should_stream",
]
