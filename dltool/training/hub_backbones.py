"""A keras-hub preset folder as a Backbone: ``{Backbone: {preset: DIR}}``.

A preset is what ``keras_hub.models.Backbone.save_to_preset(DIR)`` writes: ``config.json`` (the backbone class and
its arguments), ``metadata.json``, ``model.weights.h5`` and, from the preset's ``ImageConverter``,
``image_converter.json`` (the image size it was pretrained at, and the scale and offset that turn 0-255 pixels into
its inputs). dltool loads it from that folder only: it never downloads a preset (Kaggle, Hugging Face), so a run
needs no network and names exactly the files it was built from.

The converter's scale and offset become a built-in ``keras.layers.Rescaling`` in front of the backbone, and the
backbone's layers are wrapped in a plain functional model: a backbone made of Keras's own layers (ResNet) saves a
model that loads without keras-hub; one with keras-hub layers (ViT, DINOv2) needs keras-hub where it is loaded,
which :func:`dltool.keras_io.load_model_safely` imports when the model file names it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import BackboneConfig
from ..errors import ConfigError
from ..fileio import file_sha256

HUB_EXTRA = "hub"  # pyproject.toml's optional-dependencies entry that installs keras-hub
CONFIG_FILE = "config.json"  # keras-hub's own file names (keras_hub/src/utils/preset_utils.py)
METADATA_FILE = "metadata.json"
CONVERTER_FILE = "image_converter.json"
WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_FILE = "model.weights.json"  # the index of a preset saved in shards (over 10 GB)
SAVE_HINT = (
    "on a machine with internet, save one with keras-hub: "
    "`import keras_hub as h; h.models.Backbone.from_preset(NAME).save_to_preset(DIR); "
    "h.layers.ImageConverter.from_preset(NAME).save_to_preset(DIR)`"
)


def import_keras_hub(path: str):
    """``keras_hub``, or a ConfigError (exit 2) naming the command that installs it."""
    try:
        import keras_hub
    except ImportError:
        from ..installation import pip_install

        raise ConfigError(
            f"a preset backbone needs keras-hub, which is not installed: {pip_install(HUB_EXTRA)} "
            "(or: pip install keras-hub)",
            path=path,
        ) from None
    return keras_hub


def preset_backbone(spec: BackboneConfig, input_shape: tuple, path: str):
    """The preset's image backbone as a functional model (feature maps, or a sequence of tokens for ViT-like
    backbones), the Keras layers that turn 0-255 RGB pixels into its inputs, and its record.

    Raises ConfigError for a preset that is not a folder on disk, a folder that is not a keras-hub preset, a
    backbone that does not take images, a missing keras-hub, and images of another size than the preset's.
    """
    folder, class_name = preset_folder(spec.preset, f"{path}.preset")
    keras_hub = import_keras_hub(f"{path}.preset")
    hub_backbone = _load_backbone(keras_hub, folder, class_name, f"{path}.preset")
    images, features = _image_input_and_features(hub_backbone, folder, class_name, f"{path}.preset")
    converter = _image_converter(keras_hub, folder, class_name, f"{path}.preset")
    _check_input_shape(images, converter.image_size, input_shape, folder, class_name)
    weights = _load_weights(hub_backbone, folder, class_name, f"{path}.preset")
    core, input_key = _core(hub_backbone, images, features)
    record = {
        "preset": str(folder),
        "backbone_class": class_name,
        "keras_hub_version": keras_hub.__version__,
        "weights_file": str(weights),
        "weights_sha256": file_sha256(weights),
        "input_scale": 1.0,  # the converter's scale and offset take 0-255 pixels
    }
    saved_with = _read_json(folder / METADATA_FILE).get("keras_hub_version")
    if saved_with:
        record["saved_with_keras_hub"] = saved_with
    if weights.name == SHARDED_WEIGHTS_FILE:
        record["weights_shards_sha256"] = {shard.name: file_sha256(shard) for shard in _shards(weights)}
    if input_key is not None:
        record["core_input"] = input_key  # build_backbone calls the core with {input_key: images}
    return core, _converter_layers(converter, folder, f"{path}.preset"), record


# --------------------------------------------------------------------------- the folder
def preset_folder(preset: str, path: str) -> tuple[Path, str]:
    """The preset's folder (absolute) and the backbone class its config.json names; a ConfigError for anything
    else than a keras-hub preset folder on disk. Needs no keras-hub."""
    if "://" in preset:
        raise ConfigError(
            f"preset {preset} is a download handle, and dltool loads presets from a folder on disk only (a run "
            f"needs no network and records the files it used); {SAVE_HINT}, and give DIR",
            path=path,
        )
    folder = Path(preset).expanduser().resolve()
    if not folder.exists():
        raise ConfigError(
            f"preset folder {folder} does not exist; expected a keras-hub preset folder on disk "
            f"({CONFIG_FILE}, {METADATA_FILE}, {WEIGHTS_FILE}, {CONVERTER_FILE}); {SAVE_HINT}",
            path=path,
        )
    if not folder.is_dir():
        raise ConfigError(
            f"preset {folder} is a file; expected a keras-hub preset folder ({CONFIG_FILE}, {METADATA_FILE}, "
            f"{WEIGHTS_FILE}, {CONVERTER_FILE}), as Backbone.save_to_preset(DIR) writes it",
            path=path,
        )
    missing = [name for name in (CONFIG_FILE, METADATA_FILE) if not (folder / name).is_file()]
    if missing:
        found = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "") or "nothing"
        raise ConfigError(
            f"{folder} is not a keras-hub preset: it has no {' and no '.join(missing)} (found: {shown}); expected "
            f"the folder Backbone.save_to_preset(DIR) writes ({CONFIG_FILE}, {METADATA_FILE}, {WEIGHTS_FILE}, "
            f"{CONVERTER_FILE})",
            path=path,
        )
    try:
        config = _read_json(folder / CONFIG_FILE)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder / CONFIG_FILE} cannot be read as JSON: {exc}", path=path) from None
    name = config.get("registered_name") if isinstance(config, dict) else None
    if not isinstance(name, str):
        kind = next((k for k in ("model_type", "architecture") if isinstance(config, dict) and k in config), None)
        what = {"model_type": "a Hugging Face Transformers", "architecture": "a timm"}.get(kind, "another")
        raise ConfigError(
            f"{folder / CONFIG_FILE} is {what} config, not a keras-hub preset's (it names no registered_name); "
            f"{SAVE_HINT} (NAME may be an hf:// handle)",
            path=path,
        )
    return folder, name.split(">")[-1]


def _read_json(file: Path) -> dict:
    return json.loads(file.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the backbone
def _load_backbone(keras_hub, folder: Path, class_name: str, path: str):
    """The preset's backbone, built from its config.json without weights (they are loaded once it is known to
    take images)."""
    try:
        return keras_hub.models.Backbone.from_preset(str(folder), load_weights=False)
    except Exception as exc:  # noqa: BLE001  (keras-hub raises ValueError, TypeError, KeyError... for a bad preset)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"keras-hub {keras_hub.__version__} cannot build preset {folder} ({class_name}): {message}; expected a "
            "preset of a keras-hub image backbone (a newer keras-hub may know its class)",
            path=path,
        ) from None


def _image_input_and_features(hub_backbone, folder: Path, class_name: str, path: str):
    """The backbone's one image input (batch, height, width, channels) and its one output; a ConfigError for a
    backbone of text, audio or several inputs (BERT, CLIP, SAM), or with several outputs."""
    inputs = hub_backbone.input
    named = (
        inputs if isinstance(inputs, dict) else {t.name: t for t in (inputs if isinstance(inputs, list) else [inputs])}
    )
    shown = ", ".join(f"{name} {_shape(t.shape)}" for name, t in named.items())
    if len(named) != 1 or len(next(iter(named.values())).shape) != 4:
        raise ConfigError(
            f"preset {folder} is a {class_name}, which takes {shown}; expected an image backbone, which takes one "
            "batch of images (batch, height, width, channels): e.g. ResNetBackbone, EfficientNetBackbone, "
            "MobileNetBackbone, ViTBackbone, DINOV2Backbone",
            path=path,
        )
    if _channels_first(hub_backbone):
        raise ConfigError(
            f"preset {folder}'s {class_name} was saved with data_format channels_first, and dltool's images are "
            "channels_last (height, width, channels); save the preset again with data_format='channels_last'",
            path=path,
        )
    output = hub_backbone.output
    if not hasattr(output, "shape") or len(output.shape) not in (3, 4):
        shown_out = (
            ", ".join(f"{k} {_shape(v.shape)}" for k, v in output.items())
            if isinstance(output, dict)
            else str(output if not hasattr(output, "shape") else _shape(output.shape))
        )
        raise ConfigError(
            f"preset {folder}'s {class_name} gives {shown_out}; expected one output: feature maps (batch, height, "
            "width, channels) or a sequence of tokens (batch, tokens, channels)",
            path=path,
        )
    return next(iter(named.values())), output


def _core(hub_backbone, images, features):
    """The model build_backbone calls (and names), and the key its images go under (None: the tensor itself).

    A backbone made of Keras's own layers only (ResNet) becomes a plain functional model over them: saved as
    Keras's Functional, it loads where keras-hub is not installed. Any other is the keras-hub backbone itself,
    saved by its class and constructor arguments as keras-hub tests it (its inner layers do not all save on their
    own: ViTPatchingAndEmbedding's config has arguments its constructor refuses, keras-hub 0.32).
    """
    import keras

    builtin = all(
        isinstance(op, keras.layers.Layer) and type(op).__module__.startswith("keras.")
        for op in hub_backbone.operations
    )
    if builtin:
        return keras.Model(images, features), None
    inputs = hub_backbone.input
    return hub_backbone, (next(iter(inputs)) if isinstance(inputs, dict) else None)


def _channels_first(hub_backbone) -> bool:
    try:
        return hub_backbone.get_config().get("data_format") == "channels_first"
    except Exception:  # noqa: BLE001  (a backbone whose get_config fails says nothing about its data format)
        return False


def _shape(shape) -> str:
    return "(" + ", ".join("batch" if i == 0 and d is None else str(d) for i, d in enumerate(shape)) + ")"


def _load_weights(hub_backbone, folder: Path, class_name: str, path: str) -> Path:
    """Load the preset's weights into ``hub_backbone``; the file loaded (the index of a sharded preset)."""
    weights = next((folder / name for name in (WEIGHTS_FILE, SHARDED_WEIGHTS_FILE) if (folder / name).is_file()), None)
    if weights is None:
        raise ConfigError(
            f"preset {folder} has no weights: expected {WEIGHTS_FILE} (or {SHARDED_WEIGHTS_FILE} and its shards) "
            "beside its config.json, as Backbone.save_to_preset(DIR) writes them",
            path=path,
        )
    try:
        hub_backbone.load_weights(str(weights))
    except Exception as exc:  # noqa: BLE001  (h5py, Keras and OS errors alike: the file does not fit the config)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{weights} does not fit the {class_name} that {folder / CONFIG_FILE} describes: {message}",
            path=path,
        ) from None
    return weights


def _shards(index: Path) -> list[Path]:
    """The weight files a sharded preset's index names."""
    weight_map = _read_json(index).get("weight_map", {})
    names = set()
    for value in weight_map.values():
        names.update(value if isinstance(value, list) else [value])
    return [index.parent / name for name in sorted(names)]


# --------------------------------------------------------------------------- the image converter
def _image_converter(keras_hub, folder: Path, class_name: str, path: str):
    """The preset's ImageConverter; a ConfigError where the preset has none (dltool would not know how the
    backbone expects its pixels) or where it does more than resize, scale and offset."""
    if not (folder / CONVERTER_FILE).is_file():
        raise ConfigError(
            f"preset {folder} has no {CONVERTER_FILE}, so how its {class_name} expects its pixels is unknown; "
            "save the converter the backbone was pretrained with into the folder, e.g. "
            "keras_hub.layers.ImageConverter(image_size=(224, 224), scale=1/255).save_to_preset(DIR)",
            path=path,
        )
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    except Exception as exc:  # noqa: BLE001  (whatever keras-hub raised, the converter file does not load)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{folder / CONVERTER_FILE} does not load: {message}", path=path) from None
    base = keras_hub.layers.ImageConverter
    overridden = [
        name
        for name in ("call", "_call_python")
        if hasattr(base, name) and getattr(type(converter), name) is not getattr(base, name)
    ]
    if overridden:
        raise ConfigError(
            f"preset {folder}'s {type(converter).__name__} does more than resize, scale and offset the pixels (its "
            f"own {overridden[0]}), which dltool cannot put into the model; expected an image backbone's "
            "ImageConverter",
            path=path,
        )
    return converter


def _check_input_shape(images, image_size, input_shape: tuple, folder: Path, class_name: str) -> None:
    """model.input_shape must be the size the preset takes: its converter's image_size, else the backbone's own
    fixed height and width, and its channels.

    A different size is refused rather than resized inside the model: dltool's data already resizes every image to
    model.input_shape, and a second resize would resample the images twice (blurrier than once from the
    original file) and hide its cost in every prediction; setting model.input_shape resizes once.
    """
    expected = list(images.shape[1:])
    if image_size is not None:
        expected[:2] = list(image_size)
    given = list(input_shape)
    if len(given) == 3 and all(e is None or e == g for e, g in zip(expected, given)):
        return
    wanted = [e if e is not None else (given[i] if i < len(given) else None) for i, e in enumerate(expected)]
    source = "its ImageConverter's image_size" if image_size is not None else f"its {class_name}'s image_shape"
    hint = f"set model.input_shape: {wanted}"
    if wanted[:2] != given[:2]:
        hint += f" and, for an image folder, data.image_size: {wanted[:2]} (each image is resized once, from its file)"
    if len(given) != 3 or given[2] != wanted[2]:
        hint += f" and data.color_mode: {'rgb' if wanted[2] == 3 else 'grayscale' if wanted[2] == 1 else 'rgba'}"
    raise ConfigError(
        f"preset {folder} takes images of {_size(expected)} ({source}), and model.input_shape is {given}; {hint}",
        path="model.input_shape",
    )


def _size(shape: list) -> str:
    return "x".join("any" if d is None else str(d) for d in shape[:2]) + f" with {shape[2]} channels"


def _converter_layers(converter, folder: Path, path: str) -> list:
    """The converter's scale and offset as one built-in Rescaling in float32 (the saved model then needs no
    keras-hub for its preprocessing), or none where they change nothing."""
    import keras
    import numpy as np

    scale = 1.0 if converter.scale is None else converter.scale
    offset = 0.0 if converter.offset is None else converter.offset
    for name, value in (("scale", scale), ("offset", offset)):
        size = np.size(value)
        if size not in (1, 3):
            raise ConfigError(
                f"preset {folder}'s ImageConverter has a {name} of {size} values; expected one number or one per "
                "RGB channel (3)",
                path=path,
            )
    if np.all(np.asarray(scale) == 1.0) and np.all(np.asarray(offset) == 0.0):
        return []
    return [
        keras.layers.Rescaling(
            _number_or_list(scale), offset=_number_or_list(offset), name="preset_preprocessing", dtype="float32"
        )
    ]


def _number_or_list(value) -> float | list[float]:
    """One number, or one per channel: as Rescaling takes them (and its config saves them)."""
    import numpy as np

    values = np.asarray(value, dtype="float64").reshape(-1)
    return float(values[0]) if values.size == 1 else values.tolist()
