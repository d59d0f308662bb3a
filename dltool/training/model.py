"""Build the ``keras.Sequential`` model a config describes, and compile it."""

from __future__ import annotations

import math

from ..config import BACKBONE, ExperimentConfig, layer_name_and_args
from ..errors import ConfigError, did_you_mean
from ..keras_io import INPUT_NAME
from .fused_steps import fuse_steps

_NESTED_LAYER_ARGS = ("layer", "backward_layer")


def _layer_class(name: str, path: str):
    import keras

    cls = getattr(keras.layers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        names = [n for n in dir(keras.layers) if isinstance(getattr(keras.layers, n), type)]
        raise ConfigError(f"unknown layer class '{name}'" + did_you_mean(name, names), path=path)
    return cls


def build_layer(spec, path: str, dtype: str | None = None):
    """Instantiate one layer entry (``Flatten`` or ``{Dense: {units: 10}}``); nested layers allowed.

    ``dtype`` (default None: the global policy) is the layer's dtype policy unless the entry names one.
    """
    name, args = layer_name_and_args(spec)
    if dtype is not None:
        args.setdefault("dtype", dtype)
    cls = _layer_class(name, path)
    for arg in _NESTED_LAYER_ARGS:
        if isinstance(args.get(arg), (dict, str)):
            args[arg] = build_layer(args[arg], f"{path}.{name}.{arg}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Keras refused {name}({_show_args(args)}): {exc}", path=f"{path}.{name}") from None


def _show_args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def build_model(config: ExperimentConfig):
    """Return an uncompiled ``keras.Sequential`` starting with ``keras.Input(model.input_shape)``."""
    import keras

    dtype = "string" if config.data.source == "text" else None  # raw texts go into the model's TextVectorization
    model = keras.Sequential(
        [keras.Input(tuple(config.model.input_shape), dtype=dtype, name=INPUT_NAME)], name=config.name.replace("-", "_")
    )
    last = len(config.model.layers) - 1
    mixed = config.train.precision != "float32"
    backbone = None
    for index, spec in enumerate(config.model.layers):
        path = f"model.layers[{index}]"
        if isinstance(spec, dict) and BACKBONE in spec:
            from .backbones import build_backbone

            # After data augmentation layers (RandomFlip, ...) or first: the inputs reach it in their shape.
            backbone = build_backbone(config, tuple(model.output_shape[1:]) if index else None)
            model.add(backbone.model)
            continue
        # Mixed precision: the last layer (its softmax) computes in float32, as Keras's mixed-precision guide asks.
        layer = build_layer(spec, path, dtype="float32" if mixed and index == last else None)
        try:
            model.add(layer)
        except (TypeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"layer {layer_name_and_args(spec)[0]} does not fit after the layers before it: {message}", path=path
            ) from None
    # A dataclass, not a dict: Keras tracks the dicts and lists set on a model, and this is not model state.
    model.dltool_backbone = backbone
    return model


def adapt_preprocessing_layers(model, x_train) -> list[str]:
    """Adapt the model's leading preprocessing layers (TextVectorization, Normalization, ...) on ``x_train``.

    Layers are visited from the first while they have no trainable weights;
    each adaptable one learns its state (vocabulary, mean) from the training
    split only, and is saved with the model. Returns what was adapted, for the log.
    """
    import keras

    from ..keras_io import as_model_input

    adapted: list[str] = []
    leading = []
    for layer in model.layers:
        if layer.trainable_weights:
            break
        leading.append(layer)
    last = max((i for i, layer in enumerate(leading) if hasattr(layer, "adapt")), default=-1)
    x = as_model_input(x_train)
    for index, layer in enumerate(leading[: last + 1]):
        path = f"model.layers[{index}]"
        if hasattr(layer, "adapt"):
            try:
                layer.adapt(x)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{type(layer).__name__} could not adapt to the training data: {str(exc).strip().splitlines()[0]}",
                    path=path,
                ) from None
            adapted.append(_adapted_description(layer))
        if index < last:
            x = keras.ops.convert_to_tensor(layer(x))
    _check_vocabulary_fits(model)
    return adapted


def append_target_scaling(model, y_train) -> None:
    """End the model in ``Rescaling(std, mean)`` of the training targets (per target column)."""
    import keras
    import numpy as np

    y = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    std = y.std(axis=0)
    std[std == 0] = 1.0
    model.add(keras.layers.Rescaling(scale=std.tolist(), offset=y.mean(axis=0).tolist(), name="target_units"))


def _adapted_description(layer) -> str:
    if hasattr(layer, "vocabulary_size"):
        return f"{type(layer).__name__} ({layer.vocabulary_size():,} tokens)"
    return type(layer).__name__


def _check_vocabulary_fits(model) -> None:
    """An Embedding smaller than the vocabulary before it would fail mid-epoch on the first rare word."""
    vocabulary = None
    for index, layer in enumerate(model.layers):
        if hasattr(layer, "vocabulary_size") and getattr(layer, "output_mode", "int") == "int":
            vocabulary = layer.vocabulary_size()
        elif type(layer).__name__ == "Embedding" and vocabulary is not None:
            if layer.input_dim < vocabulary:
                raise ConfigError(
                    f"Embedding input_dim {layer.input_dim} is smaller than the vocabulary of the "
                    f"TextVectorization before it ({vocabulary} tokens); set input_dim: {vocabulary} "
                    "or lower max_tokens",
                    path=f"model.layers[{index}].Embedding.input_dim",
                )
            return


def build_optimizer(config: ExperimentConfig):
    """The configured optimizer instance."""
    import keras

    opt = config.train.optimizer
    params = dict(opt.model_extra or {})
    cls = type(keras.optimizers.get(opt.name))
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Keras refused optimizer {opt.name}({_show_args(params)}): {exc}", path="train.optimizer"
        ) from None


def compile_model(model, config: ExperimentConfig) -> None:
    """Compile with the configured optimizer, loss, metrics, steps_per_execution and jit_compile."""
    train = config.train
    try:
        model.compile(
            optimizer=build_optimizer(config),
            loss=train.loss,
            metrics=list(train.metrics),
            steps_per_execution=train.steps_per_execution,
            jit_compile=train.jit_compile,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Keras could not compile the model: {exc}", path="train") from None
    fuse_steps(model)


def layer_table(model) -> list[tuple[str, str, int]]:
    """(name (Class), output shape, parameter count) for each layer of a built model."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape) if hasattr(layer, "output") else ()
        rows.append(
            (f"{layer.name} ({type(layer).__name__})", str(shape).replace("None", "batch"), layer.count_params())
        )
    return rows


def summary_text(model) -> str:
    """A plain-text model summary: one line per layer, then the parameter counts."""
    rows = [("Layer (type)", "Output shape", "Params")] + [(n, s, f"{p:,}") for n, s, p in layer_table(model)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    total = model.count_params()
    lines += [
        "-" * len(lines[0]),
        f"Total params: {total:,}  (trainable {trainable:,}, non-trainable {total - trainable:,})",
    ]
    return "\n".join(lines) + "\n"


def output_units(model) -> int:
    """The size of the model's last axis of output."""
    shape = model.output_shape
    return int(shape[-1]) if shape and shape[-1] is not None else 1
