"""Names that refer to Keras objects, checked against :mod:`dltool.keras_catalog` (no Keras import).

Layer classes and their arguments, optimizers and their arguments, losses,
metrics and activations; an unknown name gets a did-you-mean.
"""

from __future__ import annotations

from ..errors import ConfigError, did_you_mean
from ..keras_catalog import load_catalog
from .schema import BACKBONE, BackboneConfig, ExperimentConfig, LayerSpec, device_count


def layer_name_and_args(spec: LayerSpec) -> tuple[str, dict]:
    """Split a layer entry into (class name, keyword arguments)."""
    if isinstance(spec, str):
        return spec, {}
    if len(spec) != 1:
        raise ConfigError(
            f"expected one layer class per list item such as {{Dense: {{units: 10}}}}, received keys {sorted(spec)}"
        )
    ((name, args),) = spec.items()
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
        raise ConfigError(
            f"unknown layer class '{name}'" + did_you_mean(name, layers) + " (any class of keras.layers)", path=path
        )
    known = layers[name]["args"]
    for arg, value in args.items():
        arg_path = f"{path}.{name}.{arg}"
        if arg not in known:
            raise ConfigError(
                f"unknown argument '{arg}' for {name}"
                + (did_you_mean(arg, known) or f"; expected one of: {', '.join(known)}"),
                path=arg_path,
            )
        # Every layer takes these through **kwargs; Embedding's input_dim is its own (required) argument.
        if arg in ("input_shape", "input_dim", "batch_size") and arg not in layers[name]["required"]:
            raise ConfigError(f"'{arg}' does not belong to a layer here; set model.input_shape instead", path=arg_path)
        if arg in _ACTIVATION_ARGS or (name == "Activation" and arg == "activation"):
            if isinstance(value, str) and value not in catalog["activations"]:
                raise ConfigError(
                    f"unknown activation '{value}'" + did_you_mean(value, catalog["activations"]), path=arg_path
                )
        if arg in _NESTED_LAYER_ARGS and isinstance(value, (dict, str)):
            check_layer(value, f"{arg_path}", catalog)
    missing = [a for a in layers[name]["required"] if a not in args]
    if missing:
        raise ConfigError(
            f"{name} needs argument '{missing[0]}', as in {{{name}: {{{missing[0]}: ...}}}}", path=f"{path}.{name}"
        )


AUGMENTATION_PREFIX = "Random"  # RandomFlip, RandomRotation, ...: the only layers that may come before a Backbone


def backbone_index(config: ExperimentConfig) -> int | None:
    """Where the config's Backbone entry is in model.layers (first, or after data augmentation layers); None."""
    return next((i for i, spec in enumerate(config.model.layers) if isinstance(spec, dict) and BACKBONE in spec), None)


def backbone_of(config: ExperimentConfig) -> BackboneConfig | None:
    """The config's Backbone entry, validated; None without one."""
    index = backbone_index(config)
    if index is None:
        return None
    return BackboneConfig.model_validate(config.model.layers[index][BACKBONE] or {})


def check_backbone(spec: dict, path: str, catalog: dict) -> dict:
    """Check a ``{Backbone: {...}}`` entry; return it with every default filled in (the resolved config's form)."""
    from pydantic import ValidationError

    from .messages import first_error

    path = f"{path}.{BACKBONE}"
    args = spec[BACKBONE]
    if not isinstance(args, dict):
        raise ConfigError(
            "expected a mapping such as {Backbone: {application: MobileNetV3Small}} or "
            "{Backbone: {run: RUN, up_to: flatten}}",
            path=path,
        )
    try:
        backbone = BackboneConfig.model_validate(args)
    except ValidationError as exc:
        error = first_error(exc, root=BackboneConfig)
        raise ConfigError(error.detail, path=f"{path}.{error.path}" if error.path else path) from None
    if backbone.application is not None:
        applications = catalog["applications"]
        name = backbone.application
        if name not in applications:
            raise ConfigError(
                f"unknown application '{name}'"
                + (did_you_mean(name, applications) or f"; expected one of: {', '.join(applications)}")
                + " (any model of keras.applications)",
                path=f"{path}.application",
            )
        known = applications[name]["args"]
        for arg in backbone.application_args:
            if arg not in known:
                hint = did_you_mean(arg, known) or (
                    f"; {name} takes: {', '.join(known)}" if known else f"; {name} takes no arguments of its own"
                )
                raise ConfigError(f"unknown argument '{arg}' for {name}{hint}", path=f"{path}.{arg}")
    return {BACKBONE: backbone.resolved()}


def check_keras_names(config: ExperimentConfig) -> None:
    """Check layer classes and arguments, optimizer, loss, metrics and activations by name."""
    catalog = load_catalog()
    for index, spec in enumerate(config.model.layers):
        if isinstance(spec, dict) and BACKBONE in spec:
            before = [layer_name_and_args(entry)[0] for entry in config.model.layers[:index]]
            others = [name for name in before if not name.startswith(AUGMENTATION_PREFIX)]
            if others or len(spec) != 1:
                raise ConfigError(
                    "a Backbone comes first in model.layers, alone in its item, after data augmentation layers "
                    "only (RandomFlip, RandomRotation, ...): it takes the inputs as the data gives them"
                    + (f"; received {', '.join(others)} before it" if others else ""),
                    path=f"model.layers[{index}]",
                )
            config.model.layers[index] = check_backbone(spec, f"model.layers[{index}]", catalog)
            continue
        check_layer(spec, f"model.layers[{index}]", catalog)
    check_fine_tune(config)
    opt = config.train.optimizer
    optimizers = catalog["optimizers"]
    if opt.name.lower() not in optimizers:
        raise ConfigError(
            f"unknown optimizer '{opt.name}'; expected one of {', '.join(optimizers)}"
            + did_you_mean(opt.name, optimizers),
            path="train.optimizer.name",
        )
    opt.name = opt.name.lower()
    for arg in opt.model_extra or {}:
        if arg not in optimizers[opt.name]:
            raise ConfigError(
                f"unknown argument '{arg}' for optimizer {opt.name}"
                + (did_you_mean(arg, optimizers[opt.name]) or f"; expected one of: {', '.join(optimizers[opt.name])}"),
                path=f"train.optimizer.{arg}",
            )
    check_backend_support(config)
    if config.data.source == "text":
        first = layer_name_and_args(config.model.layers[0])[0]
        if first not in STRING_INPUT_LAYERS:
            raise ConfigError(
                f"texts reach the model as strings, and {first} cannot take strings; start "
                "model.layers with TextVectorization (or StringLookup, Hashing), e.g. "
                "{TextVectorization: {max_tokens: 20000, output_sequence_length: 200}}",
                path="model.layers[0]",
            )
    if config.train.loss not in catalog["losses"]:
        raise ConfigError(
            f"unknown loss '{config.train.loss}'" + did_you_mean(config.train.loss, catalog["losses"]),
            path="train.loss",
        )
    for index, metric in enumerate(config.train.metrics):
        if metric not in catalog["metrics"]:
            raise ConfigError(
                f"unknown metric '{metric}'" + did_you_mean(metric, catalog["metrics"]), path=f"train.metrics[{index}]"
            )
    check_class_weight(config)
    check_threshold(config)
    check_calibrate(config)


def check_class_weight(config: ExperimentConfig) -> None:
    """Class weights weigh samples by their class label: a regression loss has none. (Labels are checked against
    the run's classes once the data is loaded: :mod:`dltool.data.class_weights`.)"""
    if config.train.class_weight is not None and not config.is_classifier:
        raise ConfigError(
            f"class weights apply to classification losses only, received loss '{config.train.loss}' (regression); "
            "remove train.class_weight, or use a classification loss such as sparse_categorical_crossentropy",
            path="train.class_weight",
        )
    check_resample(config)
    check_monitors(config)


def check_resample(config: ExperimentConfig) -> None:
    """data.resample repeats or drops rows by class: a regression loss has none. data.sample_weight with
    train.class_weight: Keras's fit refuses both at once ("You cannot class_weight and sample_weight at the same
    time"), so the config is refused before any data is read. (Resample labels are checked against the run's
    classes once the data is loaded: :mod:`dltool.data.resampling`.)"""
    resample = getattr(config.data, "resample", None)
    if resample is not None and not config.is_classifier:
        way = "oversample" if resample.oversample is not None else "undersample"
        raise ConfigError(
            f"resampling by class applies to classification losses only, received loss '{config.train.loss}' "
            "(regression); remove data.resample, or use a classification loss such as "
            "sparse_categorical_crossentropy",
            path=f"data.resample.{way}",
        )
    if getattr(config.data, "sample_weight", None) is not None and config.train.class_weight is not None:
        raise ConfigError(
            f"data.sample_weight ({config.data.sample_weight}) and train.class_weight cannot both weigh the loss: "
            "Keras's fit takes one or the other; remove train.class_weight, or multiply the class weights into "
            "the weight column",
            path="data.sample_weight",
        )


PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


def last_activation(config: ExperimentConfig) -> str | None:
    """The activation the config's last layer ends in: its ``activation`` argument (linear when it has none), an
    ``Activation`` layer's, "softmax" for a ``Softmax`` layer; None for a Backbone last."""
    spec = config.model.layers[-1]
    if isinstance(spec, dict) and BACKBONE in spec:
        return None
    name, args = layer_name_and_args(spec)
    if name == "Softmax":
        return "softmax"
    activation = args.get("activation")
    if activation is None:
        return None if name == "Activation" else "linear"
    return activation if isinstance(activation, str) else str(activation)


RECURRENT_LAYERS = ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "RNN", "Bidirectional")


def check_calibrate(config: ExperimentConfig) -> None:
    """Temperature scaling divides a classifier's logits by a temperature fitted on the validation split: refuse
    a regression, no validation split or the test split as validation (the test figures would be fitted on), a
    last layer that does not end in softmax or sigmoid, and a recurrent one (its activation is inside)."""
    if config.train.calibrate is None:
        return
    path = "train.calibrate"
    if not config.is_classifier:
        raise ConfigError(
            f"calibration applies to classification losses only, received loss '{config.train.loss}' (regression); "
            "remove train.calibrate",
            path=path,
        )
    validation = config.data.validation
    if validation is None or validation == "test":
        received = "null (no validation split)" if validation is None else "test"
        raise ConfigError(
            f"temperature scaling fits on the validation split, and data.validation is {received}"
            + (": fitted on the test split, the test figures would not be a held-out measure" if validation else "")
            + "; set data.validation to a fraction such as 0.1, or remove train.calibrate",
            path=path,
        )
    activation = last_activation(config)
    if activation not in PROBABILITY_ACTIVATIONS:
        last = len(config.model.layers) - 1
        name = layer_name_and_args(config.model.layers[last])[0] if activation is not None else "Backbone"
        raise ConfigError(
            f"temperature scaling needs a model that ends in probabilities, and its last layer "
            f"(model.layers[{last}], {name}) has activation '{activation or 'none'}'; end it in activation: "
            "softmax (sigmoid for one output), or remove train.calibrate",
            path=path,
        )
    name = layer_name_and_args(config.model.layers[-1])[0]
    if name in RECURRENT_LAYERS:
        raise ConfigError(
            f"temperature scaling divides the logits before the last activation, and {name} applies its activation "
            f"inside each step; end model.layers in {{Dense: {{units: N, activation: softmax}}}} after the {name} "
            "(its activation: tanh), or remove train.calibrate",
            path=path,
        )


def check_fine_tune(config: ExperimentConfig) -> None:
    """fine_tune unfreezes a backbone: refuse it without one, or with a backbone that trains from the start; and
    epochs: 0 only before a fine_tune phase."""
    if config.train.fine_tune is None:
        if config.train.epochs == 0:
            raise ConfigError(
                "expected an integer >= 1, received 0; epochs: 0 goes with a fine_tune phase, which then starts at once",
                path="train.epochs",
            )
        return
    backbone = backbone_of(config)
    if backbone is None:
        raise ConfigError(
            "fine_tune unfreezes a backbone, and model.layers has none; start model.layers with "
            "{Backbone: {application: ...}} or {Backbone: {run: RUN, up_to: LAYER}}, or remove fine_tune",
            path="train.fine_tune",
        )
    if backbone.trainable:
        raise ConfigError(
            "the backbone trains from the start (trainable: true), so fine_tune has nothing to unfreeze; set "
            "trainable: false to train the head first, or remove fine_tune",
            path="train.fine_tune",
        )


def logged_names(config: ExperimentConfig) -> list[str]:
    """What every epoch of this experiment logs: the loss, the compiled metrics (by the names given), their
    ``val_`` forms when there is validation data, and the learning rate."""
    names = ["loss", *config.train.metrics]
    if config.data.validation is not None:
        names += [f"val_{name}" for name in names]
    return names + ["learning_rate"]


def check_monitors(config: ExperimentConfig) -> None:
    """A callback's ``monitor`` must name a value the run logs: Keras would fail mid-run or silently ignore it."""
    callbacks = config.train.callbacks
    logged = logged_names(config)
    for key in ("early_stopping", "reduce_lr_on_plateau", "checkpoint"):
        settings = getattr(callbacks, key)
        if settings is None:
            continue
        if settings.monitor not in logged:
            hint = did_you_mean(settings.monitor, logged)
            if settings.monitor.startswith("val_") and config.data.validation is None:
                hint = (
                    "; data.validation is null, so no val_ value is logged: set data.validation to a fraction or 'test'"
                )
            raise ConfigError(
                f"unknown monitor '{settings.monitor}' (this run logs {', '.join(logged)}){hint}",
                path=f"train.callbacks.{key}.monitor",
            )
        # An auto mode takes the direction from the metric (as Keras does; checkpoints: callbacks.monitor_direction),
        # and the learning rate has none: Keras would stop the run at the end of its first epoch.
        if settings.mode == "auto" and settings.monitor == "learning_rate":
            raise ConfigError(
                "cannot tell whether 'learning_rate' improves going up or down; set mode: max or mode: min",
                path=f"train.callbacks.{key}.mode",
            )


TENSORFLOW_ONLY_LAYERS = ("TextVectorization",)  # string ops: they run only inside TensorFlow graphs


def _layer_names(spec) -> list[str]:
    """Every layer class named in one layer spec, wrapped layers (Bidirectional's LSTM) included."""
    if isinstance(spec, str):
        return [spec]
    names = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            names.append(key)
            if isinstance(value, dict):
                names += [n for inner in value.values() if isinstance(inner, (dict, str)) for n in _layer_names(inner)]
    return names


def check_backend_support(config: ExperimentConfig) -> None:
    """Refuse what the chosen backend cannot run: TextVectorization outside TensorFlow; steps_per_execution > 1
    on torch, or on TensorFlow with several devices (Keras's multi-batch loop fails under MirroredStrategy).
    A default of 32 there becomes 1 when the run starts. (A backend that is not installed is refused when
    dltool selects it.)"""
    backend = config.backend_name
    explicit = "steps_per_execution" in config.train.model_fields_set and config.train.steps_per_execution > 1
    if backend == "tensorflow" and explicit and device_count(config.train.devices) > 1:
        raise ConfigError(
            "expected steps_per_execution: 1 with several devices on tensorflow (Keras runs one batch per call "
            f"there), received {config.train.steps_per_execution}",
            path="train.steps_per_execution",
        )
    if backend == "tensorflow":
        return
    for index, spec in enumerate(config.model.layers):
        found = [name for name in _layer_names(spec) if name in TENSORFLOW_ONLY_LAYERS]
        if found:
            raise ConfigError(
                f"{found[0]} runs only inside TensorFlow graphs, so backend {backend} cannot train this model "
                f"(model.layers[{index}]); remove `backend: {backend}` (TensorFlow is the default)",
                path="backend",
            )
    if backend == "torch" and explicit:
        raise ConfigError(
            f"the torch backend runs one batch per call; expected steps_per_execution: 1 with backend torch, "
            f"received {config.train.steps_per_execution}",
            path="train.steps_per_execution",
        )


def check_threshold(config: ExperimentConfig) -> None:
    """A decision threshold needs a binary classifier (one sigmoid output or a 2-class softmax; the class count
    itself is checked once the data is loaded) and, to be chosen, a validation split that is not the test split."""
    threshold = config.train.threshold
    if threshold is None:
        return
    if not config.is_classifier:
        raise ConfigError(
            f"a decision threshold applies to binary classifiers only, received loss '{config.train.loss}' "
            "(regression); remove train.threshold",
            path="train.threshold",
        )
    name, args = layer_name_and_args(config.model.layers[-1])
    units = (args or {}).get("units") if name == "Dense" else None
    if isinstance(units, int) and units > 2:
        raise ConfigError(
            f"a decision threshold applies to binary classifiers only (one sigmoid output or a 2-class softmax), "
            f"received a last layer of {units} units (model.layers[{len(config.model.layers) - 1}]); remove "
            "train.threshold (a multi-class run decides by argmax)",
            path="train.threshold",
        )
    if isinstance(threshold, float):  # a fixed threshold is not chosen: no validation split needed
        return
    validation = config.data.validation
    if validation is None or validation == "test":
        received = (
            "null (no validation split)"
            if validation is None
            else "test (a threshold chosen on the test split would make its test figures optimistic)"
        )
        raise ConfigError(
            f"{threshold.optimize} chooses the threshold on the validation split, but data.validation is "
            f"{received}; set data.validation to a fraction such as 0.2, or give a fixed threshold "
            "(train.threshold: 0.5)",
            path="train.threshold",
        )


def check_threshold_classes(config: ExperimentConfig, class_names: list[str] | None) -> None:
    """Once the data is loaded: a decision threshold needs exactly two classes."""
    if config.train.threshold is not None and class_names is not None and len(class_names) != 2:
        raise ConfigError(
            f"a decision threshold applies to binary classifiers only, received {len(class_names)} classes "
            f"({', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''}); remove train.threshold",
            path="train.threshold",
        )
