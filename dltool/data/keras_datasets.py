"""The ``keras`` source: the datasets that ship with ``keras.datasets``."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .numpy_files import arrays_from_npz, open_array_file
from .sources import RawData

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def load(config, **_) -> RawData:
    """Load a Keras built-in dataset, from ``data.path`` when given, else through Keras's download cache."""
    if config.path:
        archive = open_array_file(config.path, "data.path")
        with archive:
            raw = arrays_from_npz(archive, config.path)
        if raw.x_test is None and config.name == "boston_housing":
            raw = _keras_boston_split(raw)
    else:
        raw = _download(config.name)
    raw.y = np.asarray(raw.y).reshape(len(raw.y), -1).squeeze(-1) if raw.y.ndim == 2 and raw.y.shape[1] == 1 else raw.y
    if raw.y_test is not None and raw.y_test.ndim == 2 and raw.y_test.shape[1] == 1:
        raw.y_test = raw.y_test.squeeze(-1)
    raw.class_names = CLASS_NAMES.get(config.name)
    return raw


def _keras_boston_split(raw: RawData) -> RawData:
    """Split a boston_housing.npz (x, y) exactly as keras.datasets.boston_housing does."""
    rng = np.random.RandomState(113)
    order = np.arange(len(raw.x))
    rng.shuffle(order)
    x, y = raw.x[order], raw.y[order]
    cut = int(len(x) * 0.8)
    return RawData(x=x[:cut], y=y[:cut], x_test=x[cut:], y_test=y[cut:])


def _download(name: str) -> RawData:
    import keras

    try:
        (x, y), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # noqa: BLE001  (any download/cache failure gets the same advice)
        raise DataError(
            f"could not load keras dataset '{name}': the download failed ({type(exc).__name__}: {exc}). "
            f"Without internet, set data.path to a local copy, e.g. --set data.path=path/to/{name}.npz"
        ) from None
    return RawData(x=x, y=y, x_test=x_test, y_test=y_test)
