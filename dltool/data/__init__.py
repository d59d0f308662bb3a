"""Data: one module per source, splits and preprocessing.

Which module loads which ``data.source`` is registered in :mod:`dltool.config.registry`.

:func:`prepare_data` is the one entry point training uses: it loads the
configured source, draws the test and validation splits with the config's
seed, maps class labels to indices, fits preprocessing on the training split
only and returns float32 arrays ready for ``model.fit``.
"""

from __future__ import annotations

from .preprocessing import Preprocessing
from .sources import RawData, load_source
from .splits import PreparedData, load_test_split, prepare_data

__all__ = ["PreparedData", "Preprocessing", "RawData", "load_source", "load_test_split", "prepare_data"]
