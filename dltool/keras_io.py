"""Keras I/O: what goes into a model (texts as string tensors), and saving and loading model files.

Imports Keras lazily, inside each function: the modules that import this one
(training, model, saved runs) must stay importable without TensorFlow.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import RunStateError
from .fileio import atomic_target

# The one name of a model's input, TF Serving's own: model.keras, the exports' signatures and ONNX input, and
# dltool serve's metadata, so a request naming it works against dltool serve and TF Serving alike.
INPUT_NAME = "inputs"
INFERENCE_BATCH_MIN = 256  # evaluation keeps no gradients: bigger batches run faster, and means do not depend on them


def inference_batch_size(train_batch_size: int) -> int:
    """The batch size of evaluate and predict calls: the run's training batch size, at least INFERENCE_BATCH_MIN."""
    return max(train_batch_size, INFERENCE_BATCH_MIN)


def as_model_input(x):
    """Texts (object or str arrays) as a string tensor, which Keras accepts where NumPy strings are refused."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "OUS":
        import tensorflow as tf

        return tf.constant(x.astype(str))
    return x


def predict_eagerly(model, x: np.ndarray, batch_rows: int = 8192) -> np.ndarray:
    """Model outputs for ``x`` by direct calls in inference mode.

    Unlike ``model.predict`` this traces no new function (about 0.5 s saved
    once per run), which is what a single pass over a test split needs.
    """
    import keras

    return (
        np.concatenate(
            [
                keras.ops.convert_to_numpy(model(as_model_input(x[i : i + batch_rows]), training=False))
                for i in range(0, len(x), batch_rows)
            ]
        )
        if len(x)
        else np.zeros((0,))
    )


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` to a temporary .keras file beside ``path``, then rename it into place."""
    with atomic_target(path, suffix=".keras") as tmp, _without_distribution():  # Keras wants the suffix
        model.save(tmp)


@contextmanager
def _without_distribution():
    """No Keras distribution inside the block (JAX). Keras's saver makes a scratch optimizer, whose variable
    would otherwise be placed on every device of the distribution: with several processes, a collective that
    only the saving process joins, which never ends."""
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def load_model_safely(path: Path):
    """``keras.saving.load_model(path, safe_mode=True)`` with a clear error for unsafe or corrupt files."""
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001  (a corrupt or unsafe file is reported, whatever Keras raised)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise RunStateError(
                f"{path}: refused to load: the model contains code (e.g. a Lambda layer) "
                f"and dltool loads models with safe_mode=True ({message})"
            ) from None
        raise RunStateError(f"{path}: cannot load the model ({type(exc).__name__}: {message})") from None
