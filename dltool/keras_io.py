"""Keras I/O: what goes into a model (texts as string tensors), and saving and loading model files.

Imports Keras lazily, inside each function: the modules that import this one
(training, model, saved runs) must stay importable without TensorFlow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import DltoolError, RunStateError
from .fileio import atomic_target

# The one name of a model's input, TF Serving's own: model.keras, the exports' signatures and ONNX input, and
# dltool serve's metadata, so a request naming it works against dltool serve and TF Serving alike.
INPUT_NAME = "inputs"
INFERENCE_BATCH_MIN = 256  # evaluation keeps no gradients: bigger batches run faster, and means do not depend on them
# Packages whose layers a saved model may name, and the extra that installs each: Keras finds a layer class by
# its registered name only once its package is imported (a preset backbone's ViT layers are keras-hub's).
LAYER_PACKAGES = {"keras_hub": "hub"}
_MODULE_KEY = re.compile(r'"module":\s*"(\w+)[."]')


def inference_batch_size(train_batch_size: int) -> int:
    """The batch size of evaluate and predict calls, and of the validation pass during fit: the smallest multiple
    of the run's training batch size that is at least INFERENCE_BATCH_MIN. A multiple, so that it splits over
    the devices as the training batch does; the same for validation and the final test, so that JAX compiles
    the test step once for both (0.4 s on the MNIST MLP)."""
    return train_batch_size * -(-INFERENCE_BATCH_MIN // train_batch_size)


def as_model_input(x):
    """Texts (object or str arrays) as a string tensor, which Keras accepts where NumPy strings are refused."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "OUS":
        import tensorflow as tf

        return tf.constant(x.astype(str))
    return x


def predict_eagerly(model, x: np.ndarray, batch_rows: int = 1024) -> np.ndarray:
    """Model outputs for ``x`` by direct calls in inference mode.

    Unlike ``model.predict`` this traces no new function on TensorFlow (about 0.5 s saved once per run), which
    is what a single pass over a test split needs. On JAX, where a direct call compiles each of the model's ops
    on its own (0.3 s for a 3-layer MLP), the whole forward pass is compiled once instead (0.1 s).
    """
    import keras

    forward = _jax_forward(model) if keras.backend.backend() == "jax" else lambda batch: model(batch, training=False)
    return (
        np.concatenate(
            [
                keras.ops.convert_to_numpy(forward(as_model_input(x[i : i + batch_rows])))
                for i in range(0, len(x), batch_rows)
            ]
        )
        if len(x)
        else np.zeros((0,))
    )


def _jax_forward(model):
    """The model's inference-mode forward pass as one jitted JAX function of a batch (its weights as they are)."""
    import jax

    def forward(trainable, non_trainable, batch):
        return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

    compiled = jax.jit(forward)
    return lambda batch: compiled(
        [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], batch
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


def load_model_safely(path: Path, trainable_as_trained: Callable | None = None):
    """``keras.saving.load_model(path, safe_mode=True)`` with a clear error for unsafe or corrupt files.

    A model whose config names classes of LAYER_PACKAGES gets their package imported first (a missing one is a
    RunStateError naming its install command). ``trainable_as_trained`` (default None), a function of the model,
    sets which layers train as they did when the file was saved, before the optimizer is built for them and its
    state loaded: a model that goes on training (resume) needs it where the file cannot say (see
    :func:`_load_staged`).
    """
    import keras

    from . import keras_layers  # noqa: F401  (registers dltool's layers, which a calibrated model ends in)

    packages = _import_packages_named_by(path)
    try:
        if packages or trainable_as_trained is not None:
            return _load_staged(path, trainable_as_trained)
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001  (a corrupt or unsafe file is reported, whatever Keras raised)
        if isinstance(exc, DltoolError):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise RunStateError(
                f"{path}: refused to load: the model contains code (e.g. a Lambda layer) "
                f"and dltool loads models with safe_mode=True ({message})"
            ) from None
        raise RunStateError(f"{path}: cannot load the model ({type(exc).__name__}: {message})") from None


def _load_staged(path: Path, trainable_as_trained: Callable | None):
    """Load the model uncompiled, set which layers train, then compile it as saved and load its weights and its
    optimizer's state.

    Keras's own loading builds the optimizer for the trainable variables of the model as rebuilt from its config,
    and a keras-hub backbone is rebuilt from its constructor's arguments: the trainable flags of its inner layers
    are not in the file. Keras's Functional constructor also sets ``trainable=False`` before it tracks its layers,
    so they come back trainable under a frozen backbone, and setting it False again does nothing on TensorFlow
    (its ``__setattr__`` skips a value equal to the current one). Seen with keras-hub 0.32's ViTBackbone, Keras
    3.15: a frozen backbone would train again, and the optimizer's saved state would be skipped. So every frozen
    layer's setter is called (freezing all below it, as when the model was saved), then ``trainable_as_trained``.
    """
    import json
    import zipfile

    import keras

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    freeze = keras.layers.Layer.trainable.fset
    for layer in model._flatten_layers(include_self=False):
        if not layer.trainable:
            freeze(layer, False)
    if trainable_as_trained is not None:
        trainable_as_trained(model)
    with zipfile.ZipFile(path) as archive:
        compile_config = json.loads(archive.read("config.json")).get("compile_config")
    if compile_config:
        model.compile_from_config(compile_config)  # builds the optimizer for the trainable variables
        model.load_weights(path)  # the weights again, and the optimizer's state
    return model


def _import_packages_named_by(path: Path) -> list[str]:
    """Import the packages of LAYER_PACKAGES whose classes the .keras file's config names, and return them; a
    RunStateError with the install command where one is missing. A file that is not a readable .keras zip is left
    to Keras's own error."""
    import importlib
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8", errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return []
    packages = sorted(set(_MODULE_KEY.findall(config)) & set(LAYER_PACKAGES))
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            from .installation import pip_install

            names = sorted(set(re.findall(rf'"module":\s*"{package}[^"]*",\s*"class_name":\s*"(\w+)"', config)))
            layers = f" ({', '.join(names[:4])})" if names else ""
            raise RunStateError(
                f"{path}: the model has {package.replace('_', '-')} layers{layers}, and {package} is not "
                f"installed: {pip_install(LAYER_PACKAGES[package])}"
            ) from None
    return packages
