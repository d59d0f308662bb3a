"""TensorFlow SavedModel in TF Serving's layout (``BASE/<name>/<version>/``), reloaded with ``tf.saved_model.load``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.preprocessing import Preprocessing

RUNTIME = "tensorflow"  # the package that reloads and runs the artifact
SIGNATURE = "serving_default"  # the signature TF Serving answers :predict with


def refuse(model, state: Preprocessing) -> str | None:
    """Every model dltool trains exports as a SavedModel."""
    return None


def next_version(model_folder: Path) -> int:
    """1, or one more than the largest integer version folder in ``model_folder`` (TF Serving serves the largest)."""
    versions = [int(p.name) for p in Path(model_folder).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def write(model, path: Path) -> dict:
    """Write ``model`` as a SavedModel folder at ``path`` with a ``serving_default`` signature."""
    from .runtimes import quiet_converters

    with quiet_converters():
        model.export(str(path), format="tf_saved_model", verbose=False)
    return {}


class Runner:
    """The SavedModel at ``path`` reloaded with ``tf.saved_model.load``, called through its serving signature."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self._tf = tf
        self._function = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        self.input_name = next(iter(self._function.structured_input_signature[1]))

    def run(self, x: np.ndarray) -> np.ndarray:
        tensor = self._tf.constant(x.astype(str) if x.dtype.kind in "OUS" else x)
        outputs = self._function(**{self.input_name: tensor})
        return next(iter(outputs.values())).numpy()
