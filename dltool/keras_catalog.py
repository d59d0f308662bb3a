"""What Keras offers, by name, without importing Keras.

Validating a config must not import TensorFlow (it costs seconds), yet it must
know every layer class and its arguments, every optimizer, loss, metric and
activation name to say "did you mean ...". The names are read off Keras once by
:func:`build_catalog` and shipped as ``resources/keras_catalog.json``; a test checks the
file against the installed Keras. The model builder checks again against the
live Keras, so a catalog older than the installed Keras can only err on the
side of a later, still precise, error.

Regenerate with ``python -m dltool.keras_catalog``.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

CATALOG_PATH = Path(__file__).with_name("resources") / "keras_catalog.json"

# Not usable as a `model.layers` entry of a Sequential model, or abstract.
_EXCLUDED_LAYERS = {"Layer", "InputLayer", "Input", "Wrapper", "RNN"}
_EXCLUDED_OPTIMIZERS = {"optimizer", "lossscaleoptimizer", "multioptimizer", "optimizermap"}
_EXCLUDED_LOSSES = {"Loss", "LossFunctionWrapper"}
_EXCLUDED_METRICS = {"Metric", "MeanMetricWrapper", "Mean", "Sum", "mean", "sum", "metric", "mean_metric_wrapper"}
_BACKBONE_SET_ARGS = {
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
    "include_preprocessing",  # dltool puts the preprocessing each application expects inside the model, always
}
# `compile` resolves these itself, picking the variant that fits the loss.
_COMPILE_METRIC_ALIASES = ["accuracy", "acc", "crossentropy", "ce"]


def _init_arguments(cls) -> tuple[list[str], list[str]]:
    """All keyword arguments ``cls(...)`` accepts, following **kwargs up the MRO; and the required ones."""
    names: list[str] = []
    required: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name not in names:
                names.append(p.name)
                if p.default is p.empty and klass is cls:
                    required.append(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names, required


def _plain_defaults(cls) -> dict:
    """The keyword defaults of ``cls.__init__`` that are plain JSON values (numbers, strings, booleans, null)."""
    defaults = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            value = p.default
            if (
                p.name not in defaults
                and value is not p.empty
                and (value is None or isinstance(value, (bool, int, float, str)))
            ):
                defaults[p.name] = value
    defaults.pop("name", None)  # an object's own name says nothing about the experiment
    return defaults


def build_catalog() -> dict:
    """Introspect the installed Keras (imports it) and return the catalog as plain data."""
    import keras
    from keras.src.activations import ALL_OBJECTS_DICT as activations
    from keras.src.losses import ALL_OBJECTS_DICT as losses
    from keras.src.metrics import ALL_OBJECTS_DICT as metrics
    from keras.src.optimizers import ALL_OBJECTS_DICT as optimizers

    layers = {}
    for name in sorted(dir(keras.layers)):
        obj = getattr(keras.layers, name)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and name not in _EXCLUDED_LAYERS:
            args, required = _init_arguments(obj)
            # Layer pops these from **kwargs; dltool puts the input in model.input_shape instead.
            args += [a for a in ("input_shape", "input_dim", "batch_size") if a not in args]
            layers[name] = {"args": args, "required": required}
    applications = {}
    for name in sorted(dir(keras.applications)):
        obj = getattr(keras.applications, name)
        if name[:1].isupper() and callable(obj):
            # The arguments dltool sets itself (the top, the input, the pooling, the weights) are not the entry's.
            own = [a for a in inspect.signature(obj).parameters if a not in _BACKBONE_SET_ARGS]
            applications[name] = {"args": own, "module": obj.__module__.rsplit(".", 1)[-1]}
    optimizer_args, optimizer_defaults = {}, {}
    for name in sorted(optimizers):
        if name not in _EXCLUDED_OPTIMIZERS and name == name.lower():
            optimizer_args[name] = _init_arguments(optimizers[name])[0]
            optimizer_defaults[name] = _plain_defaults(optimizers[name])
    return {
        "keras_version": keras.__version__,
        "layers": layers,
        "applications": applications,
        "optimizers": optimizer_args,
        "optimizer_defaults": optimizer_defaults,  # what `runs compare` shows for an argument a config left out
        "losses": sorted(n for n in losses if n not in _EXCLUDED_LOSSES),
        "metrics": sorted(set(metrics) - _EXCLUDED_METRICS | set(_COMPILE_METRIC_ALIASES)),
        "activations": sorted(activations),
    }


@functools.cache
def load_catalog() -> dict:
    """The shipped catalog (no Keras import)."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


if __name__ == "__main__":
    CATALOG_PATH.write_text(json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {CATALOG_PATH}")
