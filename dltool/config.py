"""The experiment config: typed models, YAML loading with line numbers, overrides.

Every default lives here, once, in the pydantic models below; the resolved
config written into a run is these models dumped back to YAML. Unknown keys
are refused everywhere (``extra="forbid"``). Names that refer to Keras objects
(layers and their arguments, optimizers, losses, metrics, activations) are
checked against :mod:`dltool.keras_catalog`, so validation needs no TensorFlow.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError, did_you_mean
from .keras_catalog import load_catalog
from .yamlio import LineMap, dump_yaml, format_path, load_yaml, parse_path, read_config_text

CLASSIFICATION_LOSSES = {
    "sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
    "categorical_crossentropy", "CategoricalCrossentropy",
    "binary_crossentropy", "BinaryCrossentropy", "bce", "BCE",
    "binary_focal_crossentropy", "BinaryFocalCrossentropy",
    "categorical_focal_crossentropy", "CategoricalFocalCrossentropy",
    "categorical_hinge", "CategoricalHinge", "hinge", "Hinge", "squared_hinge", "SquaredHinge",
}  # fmt: skip
ONE_HOT_LOSSES = {"categorical_crossentropy", "CategoricalCrossentropy", "categorical_focal_crossentropy",
                  "CategoricalFocalCrossentropy", "categorical_hinge", "CategoricalHinge"}  # fmt: skip


# --------------------------------------------------------------------------- value types
def _integer_at_least(minimum: int):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise PydanticCustomError("dltool", f"expected an integer >= {minimum}")
        if value < minimum:
            raise PydanticCustomError("dltool", f"expected an integer >= {minimum}")
        return int(value)

    return check


def _number(minimum_exclusive: float | None = None):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PydanticCustomError("dltool", "expected a finite number")
        if minimum_exclusive is not None and value <= minimum_exclusive:
            raise PydanticCustomError("dltool", f"expected a number > {minimum_exclusive:g}")
        return float(value)

    return check


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise PydanticCustomError("dltool", "expected a fraction between 0 and 1 (exclusive)")
    return float(value)


def _auto_or_bool(value: Any):
    if value == "auto" or isinstance(value, bool):
        return value
    raise PydanticCustomError("dltool", "expected auto, true or false")


def _fraction_or(*words: str | None):
    """A fraction, or one of ``words`` (None stands for null)."""
    shown = " or ".join("null" if w is None else repr(w) for w in words)

    def check(value: Any):
        if value in words and not isinstance(value, bool):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise PydanticCustomError("dltool", f"expected a fraction between 0 and 1 (exclusive) or {shown}")
        return float(value)

    return check


PositiveInt = Annotated[int, BeforeValidator(_integer_at_least(1)), Field(ge=1)]
NonNegativeInt = Annotated[int, BeforeValidator(_integer_at_least(0)), Field(ge=0)]
Seed = Annotated[int, BeforeValidator(_integer_at_least(0)), Field(ge=0, le=2**32 - 1)]
PositiveFloat = Annotated[float, BeforeValidator(_number(0.0)), Field(gt=0)]
FiniteFloat = Annotated[float, BeforeValidator(_number())]
Fraction = Annotated[float, BeforeValidator(_fraction), Field(gt=0, lt=1)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors; assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class _DataCommon(Strict):
    scale: PositiveFloat | None = Field(None, description="Divide every input by this (255 for 8-bit pixels).")
    standardize: bool = Field(False, description="Subtract the mean and divide by the std per feature, fitted on the training split only.")
    standardize_targets: bool = Field(
        False, description="Regression: the model ends in a Rescaling layer by the training targets' std and mean, so "
        "its last layer learns values near 0 while losses, metrics and predictions stay in target units."
    )
    test: Annotated[Literal["auto", "builtin"] | Fraction, BeforeValidator(_fraction_or("auto", "builtin"))] = Field(
        "auto", description="'builtin': the dataset's own test split; a fraction: held out with the seed; 'auto': builtin where the dataset has one, else 0.2."
    )
    validation: Annotated[Literal["test"] | Fraction | None, BeforeValidator(_fraction_or("test", None))] = Field(
        0.1, description="A fraction of the training split, 'test' to validate on the test split, or null for none."
    )
    split_seed: Seed | None = Field(None, description="Seed of the test/validation split; null means the top-level seed.")


class KerasData(_DataCommon):
    source: Literal["keras"]
    name: Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "boston_housing"]
    path: str | None = Field(None, description="A local .npz in the Keras layout (x_train, y_train, x_test, y_test) used instead of downloading.")


class NpzData(_DataCommon):
    source: Literal["npz"]
    path: str = Field(description="An .npz with x_train/y_train (and optionally x_test/y_test), or x/y.")


class NpyData(_DataCommon):
    source: Literal["npy"]
    x: str = Field(description="An .npy file of inputs.")
    y: str = Field(description="An .npy file of targets, one per input.")


class CsvData(_DataCommon):
    source: Literal["csv"]
    path: str = Field(description="A CSV file with a header row.")
    target: str = Field(description="The name of the column to predict.")
    features: list[str] | None = Field(None, description="Input columns; null means every column but the target.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    stream: Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)] = Field(
        "auto", description="Read the CSV from disk batch by batch (tf.data) instead of into memory: "
        "true, false, or auto (files over 1 GiB)."
    )


class SklearnData(_DataCommon):
    source: Literal["sklearn"]
    name: Literal["iris", "digits", "wine", "breast_cancer", "diabetes"]


class Noise(Strict):
    distribution: Literal["normal", "uniform"] = "normal"
    std: FiniteFloat = Field(1.0, ge=0, description="normal: the standard deviation (mean 0).")
    low: FiniteFloat = Field(0.0, description="uniform: the lower bound.")
    high: FiniteFloat = Field(1.0, description="uniform: the upper bound.")

    @model_validator(mode="after")
    def _bounds(self):
        if self.distribution == "uniform" and self.low >= self.high:
            raise PydanticCustomError(
                "dltool", f"expected low < high, received low={self.low:g}, high={self.high:g}"
            )
        return self


class SyntheticData(_DataCommon):
    source: Literal["synthetic"]
    generator: Literal["linear", "regression"] = Field(
        "linear", description="linear: y = x·weights + bias + noise, x ~ U(0, 1); regression: scikit-learn make_regression."
    )
    n_samples: PositiveInt = 100
    n_features: PositiveInt = 1
    weights: list[FiniteFloat] | FiniteFloat = Field(1.0, description="linear: one weight per feature, or one for all.")
    bias: FiniteFloat = 0.0
    noise: Noise = Field(default_factory=Noise)
    seed: Seed | None = Field(None, description="Seed of the generator; null means the top-level seed.")

    @field_validator("weights")
    @classmethod
    def _weights_fit(cls, weights, info):
        n_features = info.data.get("n_features")
        if isinstance(weights, list) and n_features is not None and len(weights) != n_features:
            raise PydanticCustomError(
                "dltool", f"expected one weight per feature ({n_features}), received {len(weights)} weights"
            )
        return weights


def _pair_from_int(value):
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


class ImageData(_DataCommon):
    source: Literal["images"]
    path: str = Field(description="A folder with one subfolder of images per class (png, jpg, jpeg, bmp, gif).")
    image_size: Annotated[list[PositiveInt], BeforeValidator(_pair_from_int), Field(min_length=2, max_length=2)] = Field(
        [256, 256], description="[height, width] every image is resized to (one number: square)."
    )
    color_mode: Literal["grayscale", "rgb", "rgba"] = Field("rgb", description="Channels: grayscale 1, rgb 3, rgba 4.")
    interpolation: Literal["bilinear", "nearest", "bicubic", "lanczos"] = "bilinear"
    classes: list[str] | None = Field(None, description="The class subfolders to use, in label order; null: every subfolder, sorted.")


class TextData(_DataCommon):
    source: Literal["text"]
    path: str | None = Field(None, description="A CSV with a text column and a label column.")
    dataset: Literal["imdb"] | None = Field(None, description="Instead of path: keras.datasets.imdb, decoded back to review texts.")
    text: str = Field("text", description="The column holding the texts.")
    target: str = Field("label", description="The column holding the labels (or numbers, for a regression loss).")
    delimiter: str = Field(",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.dataset is None):
            raise PydanticCustomError("dltool", "expected exactly one of path (a CSV) or dataset (imdb)")
        if self.scale is not None or self.standardize:
            raise PydanticCustomError("dltool", "texts cannot be scaled or standardized: remove scale and standardize "
                                      "(a TextVectorization layer in model.layers turns texts into numbers)")
        return self


class TimeseriesData(_DataCommon):
    source: Literal["timeseries"]
    path: str = Field(description="A CSV with one row per time step, oldest first, and a header row.")
    target: Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v), Field(min_length=1)] = Field(
        description="The column(s) to forecast."
    )
    features: list[str] | None = Field(None, description="Input columns; null means the target column(s) themselves.")
    window: PositiveInt = Field(description="Time steps of history in each input window.")
    horizon: PositiveInt = Field(1, description="Forecast this many steps after the window's last step.")
    stride: PositiveInt = Field(1, description="Steps between the starts of consecutive training windows.")
    delimiter: str = Field(",", min_length=1, max_length=1)


DataConfig = Annotated[
    Union[KerasData, NpzData, NpyData, CsvData, SklearnData, SyntheticData, ImageData, TextData, TimeseriesData],
    Field(discriminator="source"),
]
DATA_SOURCES = ["keras", "npz", "npy", "csv", "sklearn", "synthetic", "images", "text", "timeseries"]


# --------------------------------------------------------------------------- model
LayerSpec = Union[str, dict[str, Union[dict[str, Any], None]]]


class ModelConfig(Strict):
    input_shape: list[PositiveInt] = Field(description="Shape of one input sample, without the batch axis.")
    layers: list[LayerSpec] = Field(min_length=1, description="Keras layer classes, bare (Flatten) or with arguments ({Dense: {units: 10}}).")

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape_from_int(cls, value):
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value


# --------------------------------------------------------------------------- train
class OptimizerConfig(Strict):
    model_config = ConfigDict(extra="allow")  # the optimizer's own arguments, checked against Keras

    name: str


class EarlyStopping(Strict):
    monitor: str = "val_loss"
    patience: NonNegativeInt = 3
    min_delta: FiniteFloat = 0.0
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: bool = False


class ReduceLROnPlateau(Strict):
    monitor: str = "val_loss"
    factor: Fraction = 0.1
    patience: NonNegativeInt = 2
    min_lr: FiniteFloat = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


class BestCheckpoint(Strict):
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"


class Callbacks(Strict):
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    checkpoint: BestCheckpoint | None = Field(None, description="Save the best epoch to checkpoints/best.keras.")

    @field_validator("early_stopping", "reduce_lr_on_plateau", "checkpoint", mode="before")
    @classmethod
    def _true_means_defaults(cls, value):
        return {} if value is True else (None if value is False else value)


class TrainConfig(Strict):
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adam"))
    loss: str = Field(description="A Keras loss name, e.g. mse or sparse_categorical_crossentropy.")
    metrics: list[str] = Field(default_factory=list)
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True
    steps_per_execution: PositiveInt = Field(
        32, description="Batches run per call into TensorFlow; larger is faster, results are the same."
    )
    jit_compile: Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)] = Field("auto", description="XLA compilation: auto, true or false.")
    callbacks: Callbacks = Field(default_factory=Callbacks)
    tensorboard: bool = Field(True, description="Write TensorBoard logs to the run's tensorboard/ folder.")
    plots: bool = Field(True, description="Write curves.png and confusion_matrix.png or predictions.png into the run.")
    checkpoint_every: NonNegativeInt = Field(
        1, description="Save a resumable checkpoint every this many epochs (0: never; then --resume cannot resume)."
    )

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("callbacks", mode="before")
    @classmethod
    def _no_callbacks(cls, value):
        return {} if value is None else value

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_from_name(cls, value):
        return [value] if isinstance(value, str) else value


# --------------------------------------------------------------------------- experiment
class ExperimentConfig(Strict):
    """A whole experiment: what `dltool train` reads."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Letters, digits, '.', '_', '-'; part of the run id.")
    seed: Seed = 42
    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    _source: str | None = PrivateAttr(None)
    _line_map: LineMap = PrivateAttr(default_factory=LineMap)
    _overrides: list = PrivateAttr(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` overrides (``key.path=value``) applied when this config was loaded."""
        return list(self._overrides)

    @property
    def is_classifier(self) -> bool:
        """Whether the loss makes this a classification experiment."""
        return self.train.loss in CLASSIFICATION_LOSSES

    def locate(self, error: ConfigError) -> ConfigError:
        """Give an error found after validation (data shapes, Keras) this config's file and line."""
        return error.located(self._source, self._line_map.line_of)


# --------------------------------------------------------------------------- loading
def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a config file; raise :class:`ConfigError` with file, key path and line."""
    path = Path(path)
    text = read_config_text(path)
    return config_from_text(text, source=str(path), overrides=overrides)


def config_from_text(text: str, source: str = "<config>", overrides: list[str] | None = None) -> ExperimentConfig:
    """Validate YAML text as an experiment config (see :func:`load_config`)."""
    data, line_map = load_yaml(text, source)
    if data is None:
        raise ConfigError(
            "the config is empty; expected a mapping with keys name, data, model, train "
            "(see `dltool init` or configs/)",
            source=source,
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level (keys name, data, model, train), "
            f"received {_type_name(data)}",
            source=source,
            line=1,
        )
    overridden = apply_overrides(data, overrides or [])
    config = validate_config(data, source, line_map, overridden)
    config._overrides = list(overrides or [])
    return config


def apply_overrides(data: dict, overrides: list[str]) -> dict[tuple, str]:
    """Apply ``key.path=value`` strings to ``data`` in place; return {path: override text}."""
    applied: dict[tuple, str] = {}
    for text in overrides:
        key, sep, value_text = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"expected KEY=VALUE such as train.epochs=3, received '{text}'", source="--set"
            )
        path = parse_path(key.strip())
        value, _ = load_yaml(value_text, source=f"--set {text}")
        target = data
        for depth, part in enumerate(path[:-1]):
            here = format_path(path[: depth + 1])
            if isinstance(part, int):
                if not isinstance(target, list) or not -len(target) <= part < len(target):
                    raise ConfigError(f"no list item [{part}] at {here}", source=f"--set {text}")
                target[part] = _long_form(path[: depth + 1], target[part])
                target = target[part]
            else:
                if not isinstance(target, dict):
                    raise ConfigError(f"{format_path(path[:depth])} is not a mapping", source=f"--set {text}")
                target[part] = _long_form(path[: depth + 1], target.get(part))
                if not isinstance(target[part], (dict, list)):
                    target[part] = {}
                target = target[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(target, list) or not -len(target) <= last < len(target):
                raise ConfigError(f"no list item [{last}] at {key.strip()}", source=f"--set {text}")
        elif not isinstance(target, dict):
            raise ConfigError(f"{format_path(path[:-1])} is not a mapping", source=f"--set {text}")
        target[last] = value
        applied[path] = text
    return applied


def _long_form(path: tuple, value: Any) -> Any:
    """Expand a short form that an override is about to descend into.

    ``optimizer: adam`` becomes ``{name: adam}``, a bare layer ``Flatten``
    becomes ``{Flatten: {}}``, a layer's null arguments become ``{}``.
    """
    if path == ("train", "optimizer") and isinstance(value, str):
        return {"name": value}
    if len(path) == 3 and path[:2] == ("model", "layers") and isinstance(value, str):
        return {value: {}}
    if len(path) == 4 and path[:2] == ("model", "layers") and value is None:
        return {}
    return value


def validate_config(
    data: dict, source: str = "<config>", line_map: LineMap | None = None, overridden: dict | None = None
) -> ExperimentConfig:
    """Validate plain data as an experiment config; errors name ``source`` and lines from ``line_map``."""
    line_map = line_map or LineMap()
    overridden = overridden or {}

    def locate(error: ConfigError) -> ConfigError:
        path = parse_path(error.path) if error.path else ()
        for over_path, text in overridden.items():
            shorter = min(len(path), len(over_path))
            if path and path[:shorter] == over_path[:shorter]:
                return ConfigError(error.detail, source=f"--set {text}", path=error.path)
        return error.located(source, line_map.line_of)

    if "data" in data and isinstance(data["data"], dict):
        _check_source(data["data"], locate)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise locate(_first_error(exc)) from None
    try:
        check_keras_names(config)
    except ConfigError as exc:
        raise locate(exc) from None
    config._source = source
    config._line_map = line_map
    return config


def _check_source(data: dict, locate) -> None:
    source = data.get("source")
    if source is None:
        raise locate(ConfigError(f"missing key 'source'; expected one of {', '.join(DATA_SOURCES)}", path="data"))
    if source not in DATA_SOURCES:
        raise locate(
            ConfigError(
                f"unknown data source {source!r}; expected one of {', '.join(DATA_SOURCES)}"
                + did_you_mean(str(source), DATA_SOURCES),
                path="data.source",
            )
        )


def _type_name(value: Any) -> str:
    return {list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            dict: "a mapping", type(None): "nothing (null)"}.get(type(value), type(value).__name__)  # fmt: skip


_MODELS_BY_SOURCE = {
    "keras": KerasData, "npz": NpzData, "npy": NpyData, "csv": CsvData, "sklearn": SklearnData, "synthetic": SyntheticData,
    "images": ImageData, "text": TextData, "timeseries": TimeseriesData,
}  # fmt: skip


def _allowed_keys(loc: tuple, model: Any = ExperimentConfig) -> list[str]:
    """The keys the model at ``loc`` (below ``model``) accepts, for did-you-mean on an unknown key."""
    for part in loc:
        if isinstance(part, int) or model is None:
            return []
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def _model_of(annotation) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _first_error(exc: ValidationError) -> ConfigError:
    """Turn pydantic's first error into a ConfigError with a key path and a plain-words message."""
    errors = exc.errors(include_url=False)
    # In a union every member reports; our own messages already cover the whole union.
    err = next((e for e in errors if e["type"] == "dltool"), None) or next(
        (e for e in errors if e["type"] == "extra_forbidden"), errors[0]
    )
    loc = list(err["loc"])
    # Drop the discriminator tag pydantic inserts: ('data', 'csv', 'target') -> ('data', 'target').
    if len(loc) >= 2 and loc[0] == "data" and loc[1] in _MODELS_BY_SOURCE:
        model = _MODELS_BY_SOURCE[loc.pop(1)]
    else:
        model = None
    # Union members add their type name to the location ('str', 'dict[str,...]'); drop them.
    loc = [p for p in loc if not (isinstance(p, str) and (p in ("str", "int", "float", "bool", "list[str]")
                                                         or p.startswith(("dict[", "list[", "function-", "literal["))))]  # fmt: skip
    path = format_path(tuple(loc))
    kind, received = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = tuple(loc[:-1])
        allowed = _allowed_keys(parent[1:], model) if model else _allowed_keys(parent)
        key = str(loc[-1])
        hint = did_you_mean(key, allowed) or (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return ConfigError(f"unknown key '{key}'{hint}", path=path)
    if kind == "missing":
        return ConfigError(f"missing required key '{loc[-1]}'", path=path)
    if kind == "dltool":
        message = err["msg"]
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        message = f"expected one of {expected}, received {_show(received)}" + did_you_mean(str(received), choices)
    elif kind in ("string_type",):
        message = "expected a string"
    elif kind in ("list_type",):
        message = "expected a list"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a mapping"
    elif kind == "bool_type" or kind == "bool_parsing":
        message = "expected true or false"
    elif kind == "string_pattern_mismatch":
        message = "expected letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)"
    elif kind in _BOUNDS:
        bound = next(iter(err.get("ctx", {}).values()), "")
        message = f"expected a number {_BOUNDS[kind]} {bound}"
    elif kind == "too_short":
        message = "expected at least one item"
    else:
        message = "expected " + err["msg"][0].lower() + err["msg"][1:]
    if kind not in ("missing",) and "received" not in message:
        message += f", received {_show(received)}"
    return ConfigError(message, path=path)


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) < 60 else _type_name(value)
    if value is None:
        return "null"
    return repr(value)


# --------------------------------------------------------------------------- Keras names
def layer_name_and_args(spec: LayerSpec) -> tuple[str, dict]:
    """Split a layer entry into (class name, keyword arguments)."""
    if isinstance(spec, str):
        return spec, {}
    if len(spec) != 1:
        raise ConfigError(
            f"expected one layer class per list item such as {{Dense: {{units: 10}}}}, received keys {sorted(spec)}"
        )
    (name, args), = spec.items()
    return name, dict(args or {})


STRING_INPUT_LAYERS = ("TextVectorization", "StringLookup", "Hashing")
_ACTIVATION_ARGS = ("activation", "recurrent_activation")
_NESTED_LAYER_ARGS = ("layer", "backward_layer")  # Bidirectional, TimeDistributed


def check_layer(spec: LayerSpec, path: str, catalog: dict) -> None:
    """Check one layer entry (and nested ones) against the Keras catalog."""
    try:
        name, args = layer_name_and_args(spec)
    except ConfigError as exc:
        raise ConfigError(exc.detail, path=path) from None
    layers = catalog["layers"]
    if name not in layers:
        raise ConfigError(f"unknown layer class '{name}'" + did_you_mean(name, layers)
                          + " (any class of keras.layers)", path=path)  # fmt: skip
    known = layers[name]["args"]
    for arg, value in args.items():
        arg_path = f"{path}.{name}.{arg}"
        if arg not in known:
            raise ConfigError(
                f"unknown argument '{arg}' for {name}" + (did_you_mean(arg, known) or f"; expected one of: {', '.join(known)}"),
                path=arg_path,
            )
        # Every layer takes these through **kwargs; Embedding's input_dim is its own (required) argument.
        if arg in ("input_shape", "input_dim", "batch_size") and arg not in layers[name]["required"]:
            raise ConfigError(f"'{arg}' does not belong to a layer here; set model.input_shape instead",
                              path=arg_path)  # fmt: skip
        if arg in _ACTIVATION_ARGS or (name == "Activation" and arg == "activation"):
            if isinstance(value, str) and value not in catalog["activations"]:
                raise ConfigError(f"unknown activation '{value}'" + did_you_mean(value, catalog["activations"]),
                                  path=arg_path)  # fmt: skip
        if arg in _NESTED_LAYER_ARGS and isinstance(value, (dict, str)):
            check_layer(value, f"{arg_path}", catalog)
    missing = [a for a in layers[name]["required"] if a not in args]
    if missing:
        raise ConfigError(f"{name} needs argument '{missing[0]}', as in {{{name}: {{{missing[0]}: ...}}}}",
                          path=f"{path}.{name}")  # fmt: skip


def check_keras_names(config: ExperimentConfig) -> None:
    """Check layer classes and arguments, optimizer, loss, metrics and activations by name."""
    catalog = load_catalog()
    for index, spec in enumerate(config.model.layers):
        check_layer(spec, f"model.layers[{index}]", catalog)
    opt = config.train.optimizer
    optimizers = catalog["optimizers"]
    if opt.name.lower() not in optimizers:
        raise ConfigError(f"unknown optimizer '{opt.name}'; expected one of {', '.join(optimizers)}"
                          + did_you_mean(opt.name, optimizers), path="train.optimizer.name")  # fmt: skip
    opt.name = opt.name.lower()
    for arg in opt.model_extra or {}:
        if arg not in optimizers[opt.name]:
            raise ConfigError(f"unknown argument '{arg}' for optimizer {opt.name}"
                              + (did_you_mean(arg, optimizers[opt.name]) or f"; expected one of: {', '.join(optimizers[opt.name])}"),
                              path=f"train.optimizer.{arg}")  # fmt: skip
    if config.data.source == "text":
        first = layer_name_and_args(config.model.layers[0])[0]
        if first not in STRING_INPUT_LAYERS:
            raise ConfigError(f"texts reach the model as strings, and {first} cannot take strings; start "
                              "model.layers with TextVectorization (or StringLookup, Hashing), e.g. "
                              "{TextVectorization: {max_tokens: 20000, output_sequence_length: 200}}",
                              path="model.layers[0]")  # fmt: skip
    if config.train.loss not in catalog["losses"]:
        raise ConfigError(f"unknown loss '{config.train.loss}'" + did_you_mean(config.train.loss, catalog["losses"]),
                          path="train.loss")  # fmt: skip
    for index, metric in enumerate(config.train.metrics):
        if metric not in catalog["metrics"]:
            raise ConfigError(f"unknown metric '{metric}'" + did_you_mean(metric, catalog["metrics"]),
                              path=f"train.metrics[{index}]")  # fmt: skip


# --------------------------------------------------------------------------- output
def resolve_paths(config: ExperimentConfig) -> ExperimentConfig:
    """Return a copy whose data file paths are absolute, so a run folder works from any directory."""
    data = config.data.model_copy()
    for key in ("path", "x", "y"):
        value = getattr(data, key, None)
        if isinstance(value, str):
            setattr(data, key, str(Path(value).expanduser().resolve()))
    return config.model_copy(update={"data": data})


def config_to_dict(config: ExperimentConfig) -> dict:
    """The fully resolved config as plain data (every default filled in)."""
    return config.model_dump(mode="json")


def config_to_yaml(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML text."""
    return dump_yaml(config_to_dict(config))


def json_schema() -> dict:
    """The JSON Schema of the config file, for editors (yaml-language-server)."""
    schema = ExperimentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dltool experiment"
    return schema
