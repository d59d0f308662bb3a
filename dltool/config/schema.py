"""The experiment config's models (model, train, the whole experiment) and its JSON Schema.

Every default lives here and in :mod:`.data`, once; the resolved config
written into a run is these models dumped back to YAML. Short forms that a
``mode="before"`` validator expands (``optimizer: adam``, ``metrics: mae``)
are declared with ``json_schema_input_type`` so the JSON Schema accepts them too.
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..errors import ConfigError
from .data import DataConfig
from .expectations import CONDITION_PATTERN
from .values import (
    FiniteFloat,
    Fraction,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
    auto_or_bool,
    integer_at_least,
)
from .yamlio import LineMap

CLASSIFICATION_LOSSES = {
    "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "CategoricalCrossentropy",
    "binary_crossentropy",
    "BinaryCrossentropy",
    "bce",
    "BCE",
    "binary_focal_crossentropy",
    "BinaryFocalCrossentropy",
    "categorical_focal_crossentropy",
    "CategoricalFocalCrossentropy",
    "categorical_hinge",
    "CategoricalHinge",
    "hinge",
    "Hinge",
    "squared_hinge",
    "SquaredHinge",
}
ONE_HOT_LOSSES = {
    "categorical_crossentropy",
    "CategoricalCrossentropy",
    "categorical_focal_crossentropy",
    "CategoricalFocalCrossentropy",
    "categorical_hinge",
    "CategoricalHinge",
}


# --------------------------------------------------------------------------- model
LayerSpec = Union[str, dict[str, dict[str, Any] | None]]


class ModelConfig(Strict):
    input_shape: list[PositiveInt] = Field(
        description="Shape of one input sample, without the batch axis (one number: [n])."
    )
    layers: list[LayerSpec] = Field(
        min_length=1, description="Keras layer classes, bare (Flatten) or with arguments ({Dense: {units: 10}})."
    )

    @field_validator("input_shape", mode="before", json_schema_input_type=Union[list[PositiveInt], PositiveInt])
    @classmethod
    def _shape_from_int(cls, value):
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value


BACKBONE = "Backbone"  # the layer entry that is a pretrained model: {Backbone: {application: ..., ...}}
BACKBONE_KINDS = ("application", "preset", "run")


class BackboneConfig(Strict):
    """A pretrained model as the first layer of ``model.layers``: a Keras application, a keras-hub preset folder, or
    an earlier dltool run's layers. Checked when the config is validated (:mod:`.keras_names`); the resolved config
    keeps every default."""

    model_config = ConfigDict(extra="allow")  # an application's own arguments (alpha, minimalistic), checked by name

    application: str | None = Field(
        None, description="A model of keras.applications without its top, e.g. MobileNetV3Small, EfficientNetB0."
    )
    preset: str | None = Field(
        None, description="A keras-hub preset folder on disk (an image backbone); needs the hub extra."
    )
    run: str | None = Field(
        None, description="An earlier dltool run (id, folder or 'latest'): its layers up to `up_to`."
    )
    up_to: str | int | None = Field(
        None,
        description="With run: the last layer kept, by name (its summary.txt lists them) or index (inclusive; "
        "-2 drops the last layer). Where to cut matters: the layers just before a classifier are specific to its task.",
    )
    weights: str | None = Field(
        "imagenet",
        description="With application: imagenet (Keras's cache, ~/.keras/models; `dltool weights fetch` fills it), "
        "none (untrained) or the path of a weights file (.weights.h5 or .h5).",
    )
    trainable: bool = Field(False, description="Train the backbone's weights from the start (false: frozen).")
    pooling: Literal["avg", "max"] | None = Field(
        None,
        description="Pool the feature maps into one vector: avg, max or null; default avg for application and preset, "
        "null for run.",
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data):
        """weights: null means none; pooling defaults to avg where the output is a feature map (not for a run)."""
        if isinstance(data, dict):
            data = dict(data)
            if "weights" in data and data["weights"] is None:
                data["weights"] = "none"
            if "pooling" not in data and data.get("run") is None:
                data["pooling"] = "avg"
        return data

    @model_validator(mode="after")
    def _one_kind(self):
        given = [kind for kind in BACKBONE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "dltool",
                "expected exactly one of application, preset or run"
                + (f", received {' and '.join(given)}" if given else ""),
            )
        if self.up_to is not None and self.run is None:
            raise PydanticCustomError("dltool", "up_to applies to a run backbone only; remove it")
        if self.run is not None and self.up_to is None:
            raise PydanticCustomError(
                "dltool",
                "a run backbone needs up_to: the last layer to keep, by name (e.g. up_to: flatten) or index "
                "(-2 drops the last layer)",
            )
        if self.application is None and "weights" in self.model_fields_set:
            raise PydanticCustomError(
                "dltool", "weights applies to an application backbone (a preset or run brings its own); remove it"
            )
        if self.application is None and self.model_extra:
            key = next(iter(self.model_extra))
            raise PydanticCustomError(
                "dltool",
                f"unknown key '{key}'; expected application, preset, run, up_to, weights, trainable, pooling",
            )
        return self

    def resolved(self) -> dict:
        """The entry as the run's resolved config keeps it: the keys that apply to its kind, defaults filled in."""
        entry = self.model_dump(exclude_none=True)
        if self.kind != "application":
            entry.pop("weights", None)
        if self.pooling is None:
            entry["pooling"] = None
        return entry

    @property
    def kind(self) -> str:
        """application, preset or run."""
        return next(kind for kind in BACKBONE_KINDS if getattr(self, kind) is not None)

    @property
    def application_args(self) -> dict:
        """The application's own arguments given in the entry (alpha, minimalistic, ...)."""
        return dict(self.model_extra or {})


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


def _true_means_defaults(value):
    return {} if value is True else (None if value is False else value)


def _switch(model: type) -> Any:
    """The type of a callback: off (null or false), on with its defaults (true), or on with the settings given."""
    return Annotated[
        model | None, BeforeValidator(_true_means_defaults, json_schema_input_type=Union[model, bool, None])
    ]


class Callbacks(Strict):
    early_stopping: _switch(EarlyStopping) = None
    reduce_lr_on_plateau: _switch(ReduceLROnPlateau) = None
    checkpoint: _switch(BestCheckpoint) = Field(None, description="Save the best epoch to checkpoints/best.keras.")


def _epochs_value(value: Any) -> int:
    if value == 0 and not isinstance(value, bool):
        return 0
    return integer_at_least(1)(value)


class FineTune(Strict):
    unfreeze: int | str = Field(
        "all",
        description="The backbone's layers made trainable: all, the top N layers (a number), or a regular "
        "expression over layer names. BatchNormalization layers stay frozen and in inference mode.",
    )
    epochs: PositiveInt = Field(10, description="Epochs of the second phase, after the first phase's epochs.")
    learning_rate: PositiveFloat = Field(
        1e-5, description="The learning rate of the second phase (the optimizer is otherwise the first phase's)."
    )

    @field_validator("unfreeze")
    @classmethod
    def _unfreeze_words(cls, value):
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise PydanticCustomError("dltool", "expected all, a number of layers >= 1 or a regular expression")
        if isinstance(value, str) and value != "all":
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError("dltool", f"expected a regular expression: {exc}") from None
        return value


def _label_text(key: Any) -> str:
    """A class label as the run names its classes: 3 and 3.0 are "3", a string stays as written."""
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _class_weight_value(value: Any):
    """``balanced``, null, or {label: weight > 0}; labels become text ("3"), as the run's class names are."""
    if value is None or value == "balanced":
        return value
    if isinstance(value, str):
        raise PydanticCustomError("dltool", f"expected balanced or a mapping {{label: weight}}, received '{value}'")
    if not isinstance(value, dict) or not value:
        raise PydanticCustomError("dltool", "expected balanced or a mapping {label: weight} such as {malignant: 3.0}")
    weights: dict[str, float] = {}
    for key, weight in value.items():
        if isinstance(key, bool) or key is None:
            raise PydanticCustomError("dltool", f"expected class labels as keys, received {key!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise PydanticCustomError(
                "dltool", f"label '{_label_text(key)}': expected a weight > 0, received {weight!r}"
            )
        label = _label_text(key)
        if label in weights:
            raise PydanticCustomError("dltool", f"label '{label}' is given twice")
        weights[label] = float(weight)
    return weights


ClassWeight = Annotated[
    Literal["balanced"] | dict[str, Annotated[float, Field(gt=0)]] | None,
    BeforeValidator(
        _class_weight_value,
        json_schema_input_type=Union[Literal["balanced"], dict[str, Annotated[float, Field(gt=0)]], None],
    ),
]


THRESHOLD_RULES = ("f1", "youden", "precision_at_recall", "recall_at_precision")


class ThresholdRule(Strict):
    optimize: Literal["f1", "youden", "precision_at_recall", "recall_at_precision"] = Field(
        description="What the threshold maximizes on the validation split: f1; youden (true positive rate - "
        "false positive rate); precision_at_recall (the highest precision with recall >= at); "
        "recall_at_precision (the highest recall with precision >= at)."
    )
    at: Fraction | None = Field(
        None, description="The recall (precision_at_recall) or precision (recall_at_precision) to reach, e.g. 0.9."
    )

    @model_validator(mode="after")
    def _target_with_its_rule(self):
        targeted = self.optimize in ("precision_at_recall", "recall_at_precision")
        if targeted and self.at is None:
            measure = "recall" if self.optimize == "precision_at_recall" else "precision"
            raise PydanticCustomError(
                "dltool",
                f"optimize: {self.optimize} needs the {measure} to reach as at, received no at; write "
                f"{{optimize: {self.optimize}, at: 0.9}}",
            )
        if not targeted and self.at is not None:
            raise PydanticCustomError(
                "dltool",
                f"at is the target of precision_at_recall or recall_at_precision, received at: {self.at:g} with "
                f"optimize: {self.optimize}, which has none; remove at",
            )
        return self


def _threshold_value(value: Any):
    """A rule ({optimize: ...}), a fixed number in (0, 1), or null."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        hint = f"; write {{optimize: {value}}}" if value in THRESHOLD_RULES else ""
        raise PydanticCustomError(
            "dltool",
            f"expected {{optimize: f1 | youden | precision_at_recall | recall_at_precision}} or a number between "
            f"0 and 1, received {shown}{hint}",
        )
    if not (0 < value < 1):
        raise PydanticCustomError("dltool", f"expected a number between 0 and 1 (exclusive), received {value!r}")
    return float(value)


Threshold = Annotated[
    ThresholdRule | Annotated[float, Field(gt=0, lt=1)] | None,
    BeforeValidator(
        _threshold_value, json_schema_input_type=Union[ThresholdRule, Annotated[float, Field(gt=0, lt=1)], None]
    ),
]


def device_count(devices) -> int:
    """How many devices ``train.devices`` asks for: 1 for auto, cpu and gpu; N; or the list's length."""
    if isinstance(devices, list):
        return len(devices)
    return devices if isinstance(devices, int) else 1


class TrainConfig(Strict):
    # epochs: 0 only before a fine_tune phase (keras_names.check_fine_tune says so in words; editors see this).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"fine_tune": {"type": "null"}}},
            "then": {"properties": {"epochs": {"minimum": 1}}},
        }
    )

    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="adam"),
        description="An optimizer name (adam), or {name: sgd, learning_rate: 0.01, ...} with its arguments.",
    )
    loss: str = Field(description="A Keras loss name, e.g. mse or sparse_categorical_crossentropy.")
    metrics: list[str] = Field(default_factory=list, description="Keras metric names (one name or a list).")
    # 0 is allowed only before a fine_tune phase (_some_epochs); the message for a bad value speaks of >= 1.
    epochs: Annotated[int, Field(ge=0), BeforeValidator(_epochs_value)] = Field(
        10, description="Epochs of training (the first phase when fine_tune is set; 0 goes straight to fine-tuning)."
    )
    fine_tune: _switch(FineTune) = Field(
        None,
        description="A second phase after `epochs`: unfreeze the Backbone entry of model.layers, or its top "
        "layers and train on at a lower learning rate. true: the defaults.",
    )
    batch_size: PositiveInt = 32
    shuffle: bool = True
    steps_per_execution: PositiveInt = Field(
        32,
        description="Batches run per call into the backend (TensorFlow, JAX); larger is faster, results are the same.",
    )
    jit_compile: Annotated[Literal["auto"] | bool, BeforeValidator(auto_or_bool)] = Field(
        "auto", description="XLA compilation: auto, true or false."
    )
    class_weight: ClassWeight = Field(
        None,
        description="Classification: weigh each training sample's loss by its class. balanced: n_samples / "
        "(n_classes * count of the class) over the training split, as scikit-learn's compute_class_weight; or "
        "{label: weight} by the run's class names (classes not named weigh 1); null: every sample weighs 1.",
    )
    threshold: Threshold = Field(
        None,
        description="Binary classification: the decision threshold on the positive class's probability (the "
        "second class). {optimize: f1 | youden}, or {optimize: precision_at_recall | recall_at_precision, at: "
        "0.9}: chosen on the validation split after training; a number in (0, 1): that threshold; null: 0.5.",
    )
    calibrate: Literal["temperature"] | None = Field(
        None,
        description="Classification: after training, fit one temperature T on the validation split (its "
        "negative log-likelihood) and end the model in a TemperatureScaling layer in place of its last softmax or "
        "sigmoid: softmax(logits / T). predict, export and serve get the calibrated probabilities; the predicted "
        "class does not change. Needs a validation split that is not the test split.",
    )
    callbacks: Callbacks = Field(default_factory=Callbacks)
    tensorboard: bool = Field(True, description="Write TensorBoard logs to the run's tensorboard/ folder.")
    plots: bool = Field(True, description="Write curves.png and confusion_matrix.png or predictions.png into the run.")
    checkpoint_every: NonNegativeInt = Field(
        1, description="Save a resumable checkpoint every this many epochs (0: never; then --resume cannot resume)."
    )
    devices: (
        Literal["auto", "cpu", "gpu"] | PositiveInt | list[Annotated[str, Field(pattern=r"^(cpu|gpu):[0-9]+$")]]
    ) = Field(
        "auto",
        description="auto (the backend's default: the first GPU, else the CPU) | cpu | gpu | N devices | "
        "[gpu:0, gpu:1]. Several devices train synchronous data parallel; batch_size is then the global batch.",
    )
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"] = Field(
        "float32",
        description="float32; mixed_bfloat16 (CPUs and TPUs with bfloat16, recent GPUs) or mixed_float16 (GPUs): "
        "layers compute in 16 bits and keep float32 weights; the last layer computes in float32. auto: "
        "mixed_bfloat16 where the training device computes bfloat16 natively (an NVIDIA GPU of compute "
        "capability 8.0+; a CPU with AVX512-BF16 or AMX on TensorFlow or torch), else float32; run.json says "
        "which and why, `dltool info` what it would pick.",
    )
    deterministic: bool = Field(
        False,
        description="Seed everything and make TensorFlow's ops deterministic: two runs give identical "
        "metrics, at some cost in speed.",
    )

    @property
    def total_epochs(self) -> int:
        """Epochs of both phases: ``epochs``, then ``fine_tune.epochs`` if set."""
        return self.epochs + (self.fine_tune.epochs if self.fine_tune else 0)

    @field_validator("optimizer", mode="before", json_schema_input_type=Union[OptimizerConfig, str])
    @classmethod
    def _optimizer_from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("callbacks", mode="before", json_schema_input_type=Union[Callbacks, None])
    @classmethod
    def _no_callbacks(cls, value):
        return {} if value is None else value

    @field_validator("metrics", mode="before", json_schema_input_type=Union[list[str], str])
    @classmethod
    def _metric_from_name(cls, value):
        return [value] if isinstance(value, str) else value


# --------------------------------------------------------------------------- tracking
REGISTERED_MODEL_NAME = r"^[^/:]+$"  # MLflow's registered model names hold neither '/' nor ':'

# `register` is also ABCMeta's classmethod on every pydantic model, which pydantic warns the field shadows; the key is
# the one MLflow users know (mlflow.register_model), and the class method is never called on a config model.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class MlflowTracking(Strict):
        uri: str | None = Field(
            None,
            description="The MLflow tracking URI: sqlite:///mlflow.db (a file, relative to the current folder) or "
            "http://host:5000 (a server). Default: the MLFLOW_TRACKING_URI variable, else sqlite:///mlflow.db.",
        )
        experiment: str | None = Field(
            None, min_length=1, description="The MLflow experiment the run is logged in (default: the config's name)."
        )
        register: str | None = Field(
            None,
            min_length=1,
            pattern=REGISTERED_MODEL_NAME,
            description="Register the run's logged model as a new version of this registered model, tagged with the "
            "run id (default: not registered).",
        )


class TrackingConfig(Strict):
    mlflow: _switch(MlflowTracking) = Field(
        None,
        description="Log the run to MLflow (parameters, per-epoch metrics, artifacts, the model); needs the tracking "
        "extra. "
        "true: the defaults.",
    )


# --------------------------------------------------------------------------- experiment
class ExperimentConfig(Strict):
    """A whole experiment: what `dltool train` reads."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Letters, digits, '.', '_', '-'; part of the run id."
    )
    seed: Seed = 42
    backend: Literal["tensorflow", "jax", "torch"] | None = Field(
        None,
        description="The Keras backend that trains the model: tensorflow, jax or torch (default: the KERAS_BACKEND "
        "variable, else tensorflow). TensorFlow stays the data layer on every backend.",
    )
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    tracking: TrackingConfig | None = Field(
        None,
        description="Where the run is logged besides its folder: {mlflow: {uri: ..., experiment: ..., register: ...}}.",
    )
    expect: dict[str, str] = Field(
        default_factory=dict,
        description="Metric expectations checked after training, e.g. {test.accuracy: '>= 0.95'}: a run that misses "
        "one stays COMPLETED and `dltool train` exits 3.",
        json_schema_extra={
            "propertyNames": {"pattern": r"^((train|validation|test)\.[^.]+|epochs)$"},
            "additionalProperties": {"type": "string", "pattern": CONDITION_PATTERN},
        },
    )

    _source: str | None = PrivateAttr(None)
    _line_map: LineMap = PrivateAttr(default_factory=LineMap)
    _overrides: list = PrivateAttr(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` overrides (``key.path=value``) applied when this config was loaded."""
        return list(self._overrides)

    @property
    def backend_name(self) -> str:
        """The backend this config trains on: ``backend``, else the KERAS_BACKEND variable, else tensorflow."""
        import os

        return self.backend or os.environ.get("KERAS_BACKEND") or "tensorflow"

    @property
    def is_classifier(self) -> bool:
        """Whether the loss makes this a classification experiment."""
        return self.train.loss in CLASSIFICATION_LOSSES

    def locate(self, error: ConfigError) -> ConfigError:
        """Give an error found after validation (data shapes, Keras) this config's file and line."""
        return error.located(self._source, self._line_map.line_of)


def json_schema() -> dict:
    """The JSON Schema of the config file, for editors (yaml-language-server); short forms included."""
    schema = ExperimentConfig.model_json_schema()
    _add_backbone_entry(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dltool experiment"
    return schema


def _add_backbone_entry(schema: dict) -> None:
    """A layer entry is a Keras layer or ``{Backbone: {...}}``; the Backbone's application is one of Keras's (an
    editor completes the names)."""
    from ..keras_catalog import load_catalog

    backbone = BackboneConfig.model_json_schema()
    backbone["properties"]["application"] = {
        "anyOf": [{"enum": sorted(load_catalog()["applications"])}, {"type": "null"}],
        "default": None,
        "description": backbone["properties"]["application"]["description"],
    }
    schema["$defs"]["BackboneConfig"] = backbone
    items = schema["$defs"]["ModelConfig"]["properties"]["layers"]["items"]["anyOf"]
    keras_layer = next(item for item in items if item.get("type") == "object")
    keras_layer["propertyNames"] = {"not": {"const": BACKBONE}}
    items.append(
        {
            "type": "object",
            "properties": {BACKBONE: {"$ref": "#/$defs/BackboneConfig"}},
            "required": [BACKBONE],
            "additionalProperties": False,
        }
    )
