"""Backbones: a pretrained model as the first layer of a run's model, and the second phase that unfreezes it.

A backbone is built as one functional model named ``backbone``: the inputs, as the data pipeline gives them, go
through the preprocessing the pretrained model was trained with (pixels back to 0-255, then the application's own
``preprocess_input`` as Keras layers, or the earlier run's scaling and standardization), then through the pretrained
layers. The preprocessing is inside the model, so predict, export and serve take the inputs they took before.

The pretrained layers run in inference mode in both phases, frozen or fine-tuned, as keras-io's transfer-learning
guide asks. The guide calls them with ``training=False``, but Keras 3's ``fit`` passes ``training=True`` down to
nested models whatever they were called with (keras-team/keras#20285): once unfrozen, the guide's
BatchNormalization layers would train on the new data's batch statistics. So dltool keeps every
BatchNormalization layer of a backbone frozen (Keras 3 runs a frozen one in inference mode) and sets the rate of
its Dropout layers to 0 (inference mode, for a layer that only acts while training). An application with
``weights: none`` has nothing to keep: it trains as any layer does.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BACKBONE, BackboneConfig, ExperimentConfig, backbone_index, backbone_of
from ..errors import ConfigError, did_you_mean
from ..fileio import file_sha256

BACKBONE_LAYER = "backbone"  # the run model's layer for the Backbone entry
CORE_LAYER = "pretrained"  # inside it: the pretrained layers, after the preprocessing
DOWNLOAD_TIMEOUT_SECONDS = 30.0

# How each keras.applications module's preprocess_input treats 0-255 RGB pixels (tests/training/test_backbones.py
# checks every entry against Keras's own function): "inside" (the model rescales them itself, given
# include_preprocessing), "tf" (to -1..1), "torch" (to 0..1, then ImageNet's mean and std), "caffe" (BGR, minus
# ImageNet's mean in 0-255).
APPLICATION_PREPROCESSING = {
    "convnext": "inside",
    "efficientnet": "inside",
    "efficientnet_v2": "inside",
    "mobilenet_v3": "inside",
    "densenet": "torch",
    "inception_resnet_v2": "tf",
    "inception_v3": "tf",
    "mobilenet": "tf",
    "mobilenet_v2": "tf",
    "nasnet": "tf",
    "resnet_v2": "tf",
    "xception": "tf",
    "resnet": "caffe",
    "vgg16": "caffe",
    "vgg19": "caffe",
}
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # of 0..1 pixels ("torch" mode)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # of 0..255 pixels ("caffe" mode)


@dataclass
class Backbone:
    """A built backbone: the functional model (the run model's first layer) and what run.json records of it."""

    model: object
    record: dict = field(default_factory=dict)


def build_backbone(config: ExperimentConfig, input_shape: tuple | None = None, runs_root=None) -> Backbone:
    """Build the config's Backbone entry for the inputs the layers before it give (``input_shape``, default
    ``model.input_shape``: data augmentation layers keep it) and for the data's input scaling.

    ``runs_root`` is where a ``run:`` reference is looked up (default: the runs folder). Raises ConfigError
    (path ``model.layers[i].Backbone...``) for weights that are missing and cannot be downloaded, an input shape the
    pretrained model cannot take, or inputs standardized by the data config.
    """
    import keras

    spec = backbone_of(config)
    path = f"model.layers[{backbone_index(config)}].Backbone"
    input_shape = tuple(config.model.input_shape if input_shape is None else input_shape)
    if getattr(config.data, "standardize", False):
        raise ConfigError(
            "a backbone takes its inputs as its pretraining saw them, and standardize would change them; remove "
            "data.standardize (the backbone's own preprocessing is inside the model)",
            path="data.standardize",
        )
    data_scale = getattr(config.data, "scale", None) or 1.0  # the data divides the inputs by this
    if spec.kind == "application":
        core, preprocessing, record = _application(spec, input_shape, path)
    elif spec.kind == "run":
        core, preprocessing, record = _earlier_run(spec, input_shape, path, runs_root)
    else:
        from .hub_backbones import preset_backbone

        core, preprocessing, record = preset_backbone(spec, input_shape, path)
        core.name = CORE_LAYER
    inputs = keras.Input(input_shape, name="inputs")
    x = inputs
    for layer in _to_pixels(data_scale, record.pop("input_scale", 1.0)) + preprocessing:
        x = layer(x)
    input_key = record.pop("core_input", None)  # a core whose input is a dict, e.g. keras-hub's {"images": ...}
    x = core(x if input_key is None else {input_key: x}, training=False)
    if spec.pooling is not None:
        x = _pool(x, spec.pooling, f"{path}.pooling")
    model = keras.Model(inputs, x, name=BACKBONE_LAYER)
    model.trainable = spec.trainable
    if is_pretrained(spec):
        keep_in_inference_mode(core)
    record.update(kind=spec.kind, trainable=spec.trainable, layers=len(_pretrained_layers(model)))
    return Backbone(model, record)


def _pool(x, pooling: str, path: str):
    """Feature maps (batch, height, width, channels) or a sequence of tokens (batch, tokens, channels: a ViT's,
    its class token included, as keras-hub's own pooling "gap" averages them) pooled into one vector each."""
    import keras

    kinds = {
        4: (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D),
        3: (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D),
    }
    if len(x.shape) not in kinds:
        raise ConfigError(
            f"pooling {pooling} takes feature maps (batch, height, width, channels) or tokens (batch, tokens, "
            f"channels), and the backbone gives {tuple(x.shape)}; set pooling: null",
            path=path,
        )
    average, maximum = kinds[len(x.shape)]
    return (average if pooling == "avg" else maximum)(name=f"{pooling}_pool")(x)


def _to_pixels(data_scale: float, pretrained_scale: float) -> list:
    """The layer that turns the data's inputs (divided by ``data_scale``) into the pretrained model's inputs
    (divided by ``pretrained_scale``); none when they agree."""
    import keras

    factor = data_scale / pretrained_scale
    if factor == 1.0:
        return []
    return [keras.layers.Rescaling(factor, name="to_pretrained_scale", dtype="float32")]


# --------------------------------------------------------------------------- keras.applications
def _application(spec: BackboneConfig, input_shape: tuple, path: str):
    """A keras.applications model without its top, its preprocessing layers, and its record."""
    import inspect

    import keras

    name = spec.application
    build = getattr(keras.applications, name)
    module = build.__module__.rsplit(".", 1)[-1]
    mode = APPLICATION_PREPROCESSING.get(module)
    if mode is None:  # an application newer than this table: refuse rather than feed it the wrong pixels
        raise ConfigError(
            f"dltool does not know how {name} ({module}) expects its pixels; expected one of the applications of "
            f"{', '.join(sorted(APPLICATION_PREPROCESSING))}",
            path=f"{path}.application",
        )
    args = dict(include_top=False, weights=None, input_shape=input_shape, pooling=None, **spec.application_args)
    if "include_preprocessing" in inspect.signature(build).parameters:
        args["include_preprocessing"] = True
    weights = spec.weights
    if weights != "none" and input_shape[-1] != 3:
        raise ConfigError(
            f"{name}'s pretrained weights take 3 colour channels, and model.input_shape is {list(input_shape)}; "
            "set data.color_mode: rgb and model.input_shape [..., 3] (or weights: none to train it untrained)",
            path="model.input_shape",
        )
    record: dict = {"application": name, "weights": weights}
    file: Path | None = None
    try:
        if weights == "imagenet":
            # Keras warns, and goes on, where its weights were trained at another size than input_shape: the run's
            # log keeps that line (record["notes"]).
            with _weights_from_cache(name, path) as fetched, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                core = build(**{**args, "weights": "imagenet"})
            notes = [str(w.message).strip() for w in caught if issubclass(w.category, UserWarning)]
            if notes:
                record["notes"] = notes
            file = fetched[-1] if fetched else None
        else:
            core = build(**args)
            if weights != "none":
                file = Path(weights)
                _load_weights_file(core, file, name, path)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        message = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"Keras refused {name}(input_shape={list(input_shape)}"
            + "".join(f", {k}={v!r}" for k, v in spec.application_args.items())
            + f"): {message}",
            path=path,
        ) from None
    core.name = CORE_LAYER
    if file is not None:
        record.update(weights_file=str(file), weights_sha256=file_sha256(file))
    return core, _application_preprocessing(mode, core), record


def _load_weights_file(core, file: Path, name: str, path: str) -> None:
    if not file.is_file():
        raise ConfigError(
            f"weights file {file} does not exist; expected imagenet, none, or the path of a weights file saved "
            f"from {name} (model.save_weights('x.weights.h5'))",
            path=f"{path}.weights",
        )
    import warnings

    try:
        # Keras only warns when a part of the model finds no weights in the file (those layers keep their fresh
        # weights): here that is a file of another model, refused as such.
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*(Skipping|freshly-initialized|mismatch).*")
            core.load_weights(str(file))
    except Exception as exc:  # noqa: BLE001  (h5py, Keras and OS errors alike: the file does not fit this model)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"weights file {file} does not fit {name} at input_shape {list(core.input_shape[1:])}: {message}",
            path=f"{path}.weights",
        ) from None


def _application_preprocessing(mode: str, core) -> list:
    """Keras layers doing what the application's preprocess_input does to 0-255 RGB pixels."""
    import keras
    import numpy as np

    if mode == "inside":
        return []
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess_input", dtype="float32")]
    if mode == "torch":
        mean, std = np.array(IMAGENET_MEAN_RGB), np.array(IMAGENET_STD_RGB)
        return [
            keras.layers.Rescaling(
                (1 / (255 * std)).tolist(), offset=(-mean / std).tolist(), name="preprocess_input", dtype="float32"
            )
        ]
    # caffe: BGR minus the mean. The pretrained first convolution's input channels are reversed instead of the
    # image's, which computes the same and keeps the model in Keras's own layers (exportable, loadable anywhere).
    first = next(layer for layer in core.layers if isinstance(layer, keras.layers.Conv2D))
    kernel, *rest = first.get_weights()
    first.set_weights([kernel[:, :, ::-1, :], *rest])
    mean_rgb = np.array(CAFFE_MEAN_BGR[::-1])
    return [keras.layers.Rescaling(1.0, offset=(-mean_rgb).tolist(), name="preprocess_input", dtype="float32")]


def keras_cache_dir(subdir: str = "models") -> Path:
    """Where Keras keeps downloaded files: $KERAS_HOME (default ~/.keras), else /tmp/.keras where that is not
    writable, as keras.utils.get_file decides."""
    import tempfile

    from keras.src.backend.config import keras_home

    base = os.path.expanduser(keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base) / subdir


@contextlib.contextmanager
def _weights_from_cache(name: str, path: str | None):
    """Within: keras.applications finds its weights in Keras's cache, or downloads them with a timeout; a file that
    is missing and cannot be downloaded becomes one ConfigError line naming the file, the URL and where it goes.
    Yields the list of files it handed over."""
    from keras.src.utils import file_utils

    original = file_utils.get_file
    fetched: list[Path] = []

    def get_file(fname=None, origin=None, *args, **kwargs):
        target = keras_cache_dir(kwargs.get("cache_subdir", "datasets")) / str(fname)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
        try:
            found = original(fname, origin, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (Keras raises a bare Exception for a failed download)
            # Keras says "URL fetch failure on URL: code -- reason"; the URL is in the message already.
            reason = str(exc).strip().splitlines()[0].rsplit(" -- ", 1)[-1] if str(exc).strip() else ""
            raise ConfigError(
                f"{name}'s imagenet weights {fname} are not in Keras's cache and could not be downloaded"
                f"{f' ({reason})' if reason else ''}: download {origin} on a machine with internet (or run "
                f"`dltool weights fetch {name}` there) and put the file at {target}; or set weights: none "
                "(untrained) or weights: PATH (a weights file)",
                path=f"{path}.weights" if path else None,
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
        fetched.append(Path(found))
        return found

    file_utils.get_file = get_file
    try:
        yield fetched
    finally:
        file_utils.get_file = original


def fetch_application_weights(name: str, input_shape: tuple = (224, 224, 3), **application_args) -> Path:
    """Download ``name``'s imagenet weights (without its top) into Keras's cache, if not there yet; the file."""
    from ..backend import import_keras
    from ..keras_catalog import load_catalog

    names = load_catalog()["applications"]
    if name not in names:
        raise ConfigError(
            f"unknown application '{name}'" + (did_you_mean(name, names) or f"; expected one of: {', '.join(names)}")
        )
    keras = import_keras()
    with _weights_from_cache(name, None) as fetched:
        getattr(keras.applications, name)(
            include_top=False, weights="imagenet", input_shape=tuple(input_shape), **application_args
        )
    keras.backend.clear_session()
    return fetched[-1]


# --------------------------------------------------------------------------- an earlier run
def _earlier_run(spec: BackboneConfig, input_shape: tuple, path: str, runs_root):
    """The earlier run's layers up to ``up_to`` (a functional model), no preprocessing layers beyond its own
    scaling and standardization, and its record."""
    import keras
    import numpy as np

    from ..data.preprocessing import Preprocessing
    from ..keras_io import load_model_safely
    from ..keras_layers import TemperatureScaling

    run = _backbone_run(spec.run, runs_root, f"{path}.run")
    model_file = run.file("model.keras")
    if not model_file.is_file():
        raise ConfigError(
            f"run {run.id} has no model.keras ({run.status}); a backbone comes from a COMPLETED run",
            path=f"{path}.run",
        )
    trained = load_model_safely(model_file)
    layers = trained.layers
    if layers and isinstance(layers[-1], TemperatureScaling):  # a calibrated run: its layers as trained
        layers = layers[:-1]
    cut = _cut_index(layers, spec.up_to, run.id, f"{path}.up_to")
    expected = tuple(trained.input_shape[1:])
    if expected != tuple(input_shape):
        raise ConfigError(
            f"run {run.id}'s model takes inputs of shape {list(expected)}, and model.input_shape is "
            f"{list(input_shape)}; set model.input_shape: {list(expected)}",
            path="model.input_shape",
        )
    core = keras.Model(trained.inputs, layers[cut].output, name=CORE_LAYER)
    preprocessing = Preprocessing.from_dict(_read_json(run.file("preprocessing.json")))
    steps = []
    if preprocessing.mean is not None:  # (x - mean) / std, per feature or per channel, as the run's data did
        mean, std = np.asarray(preprocessing.mean), np.asarray(preprocessing.std)
        steps.append(
            keras.layers.Rescaling(
                (1 / std).tolist(), offset=(-mean / std).tolist(), name="earlier_run_standardize", dtype="float32"
            )
        )
    record = {
        "run": run.id,
        "run_path": str(run.path),
        "up_to": layers[cut].name,
        "weights_file": str(model_file),
        "weights_sha256": file_sha256(model_file),
        "input_scale": preprocessing.scale or 1.0,
    }
    return core, steps, record


def _backbone_run(ref: str, runs_root, path: str):
    from ..errors import RunNotFoundError, RunStateError
    from ..runs import Run, runs_dir

    try:
        return Run.resolve(str(ref), runs_dir(runs_root))
    except (RunNotFoundError, RunStateError) as exc:
        raise ConfigError(str(exc), path=path) from None


def pin_backbone(config: ExperimentConfig, runs_root=None) -> ExperimentConfig:
    """``config`` with its backbone's references made absolute: a ``run:`` (an id, 'latest', a name) becomes that
    run's folder, and ``weights:`` and ``preset:`` paths absolute ones; so the new run's config.yaml names exactly
    what it was built from, from any directory."""
    spec = backbone_of(config)
    if spec is None:
        return config
    index = backbone_index(config)
    entry = dict(config.model.layers[index][BACKBONE])
    if spec.run is not None:
        path = f"model.layers[{index}].Backbone.run"
        entry["run"] = str(_backbone_run(spec.run, runs_root, path).path.resolve())
    if spec.preset is not None:
        entry["preset"] = str(Path(spec.preset).expanduser().resolve())
    if spec.kind == "application" and spec.weights not in ("imagenet", "none"):
        entry["weights"] = str(Path(spec.weights).expanduser().resolve())
    layers = [*config.model.layers[:index], {BACKBONE: entry}, *config.model.layers[index + 1 :]]
    return config.model_copy(update={"model": config.model.model_copy(update={"layers": layers})})


def _cut_index(layers: list, up_to, run_id: str, path: str) -> int:
    """The index of the last layer kept: ``up_to`` names it, or indexes it (negative: from the end)."""
    names = [layer.name for layer in layers]
    listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    if isinstance(up_to, int):
        if not -len(layers) <= up_to < len(layers):
            raise ConfigError(
                f"run {run_id}'s model has {len(layers)} layers ({listing}); expected an index from "
                f"{-len(layers)} to {len(layers) - 1}, received {up_to}",
                path=path,
            )
        return up_to % len(layers)
    if up_to not in names:
        raise ConfigError(
            f"run {run_id}'s model has no layer '{up_to}'" + did_you_mean(str(up_to), names) + f" ({listing})",
            path=path,
        )
    return names.index(up_to)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the second phase
def _pretrained_layers(backbone) -> list:
    """The pretrained model's layers, in order (its input layer left out)."""
    core = backbone.get_layer(CORE_LAYER)
    return [layer for layer in core.layers if type(layer).__name__ != "InputLayer"]


def is_pretrained(spec: BackboneConfig) -> bool:
    """Whether the backbone brings trained weights: all but an application with ``weights: none``, which trains
    from scratch as any layer does (its BatchNormalization and Dropout as well)."""
    return not (spec.kind == "application" and spec.weights == "none")


def unfreeze(model, unfreeze: int | str, pretrained: bool = True) -> list[str]:
    """Make the backbone's layers named by ``unfreeze`` trainable (all, the top N, or those whose names match a
    regular expression); BatchNormalization layers of a ``pretrained`` backbone (default True) stay frozen, in
    inference mode (:func:`keep_in_inference_mode`).
    Returns the names of the layers made trainable. The model must be compiled again."""
    backbone = model.get_layer(BACKBONE_LAYER)
    layers = _pretrained_layers(backbone)
    if unfreeze == "all":
        chosen = layers
    elif isinstance(unfreeze, int):
        chosen = layers[-unfreeze:]
    else:
        pattern = re.compile(unfreeze)
        chosen = [layer for layer in layers if pattern.search(layer.name)]
        if not chosen:
            shown = ", ".join(layer.name for layer in layers[-8:])
            raise ConfigError(
                f"no layer of the backbone matches {unfreeze!r}; its {len(layers)} layers end with: {shown}",
                path="train.fine_tune.unfreeze",
            )
    backbone.trainable = True  # sets every layer below it: the ones not chosen are frozen again below
    chosen_ids = {id(layer) for layer in chosen}
    for layer in layers:
        layer.trainable = id(layer) in chosen_ids
    if pretrained:
        keep_in_inference_mode(backbone.get_layer(CORE_LAYER))
    for layer in backbone.layers:  # the preprocessing and pooling have nothing to learn
        if layer.name != CORE_LAYER:
            layer.trainable = False
    return [layer.name for layer in chosen if layer.trainable]


def keep_in_inference_mode(core) -> None:
    """Freeze every BatchNormalization layer in ``core`` (Keras 3 runs a frozen one in inference mode: moving
    statistics, no updates) and turn off its Dropout and noise layers, whatever ``training`` flag ``fit`` passes."""
    import keras

    for layer in core._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif hasattr(layer, "rate") and "Dropout" in type(layer).__name__:
            layer.rate = 0.0
        elif isinstance(layer, keras.layers.GaussianNoise):
            layer.stddev = 0.0


def parameter_counts(model) -> dict:
    """{trainable, frozen}: the model's parameters that train, and those that do not."""
    import math

    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    return {"trainable": trainable, "frozen": model.count_params() - trainable}
