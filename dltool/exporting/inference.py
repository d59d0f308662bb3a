"""The model an export writes: raw inputs in, the run's preprocessing folded in front, augmentation left out.

A client of an exported model sends feature values as they were in the
training file. The run's ``scale`` and ``standardize`` (its saved
:class:`~dltool.data.preprocessing.Preprocessing`) become two Rescaling
layers in front of the trained layers (x / scale, then (x - mean) / std), and the channel axis the
run adds to raw samples a Reshape. Random augmentation and dropout layers are
identity at inference; they are left out, because their random ops are what
converters cannot translate (ONNX: keras-team/keras#21346). The trained layers
themselves are shared with the loaded model, weights and all.
"""

from __future__ import annotations

import numpy as np

from ..data.preprocessing import Preprocessing
from ..keras_io import INPUT_NAME

# Layers whose output at inference (training=False) is their input: checked one by one in tests/exporting/test_export.py.
# RandomCrop is not here: at inference it resizes and crops to its size.
INFERENCE_IDENTITY_LAYERS = frozenset(
    {
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomContrast",
        "RandomBrightness",
        "RandomShear",
        "RandomHue",
        "RandomSaturation",
        "RandomSharpness",
        "RandomGrayscale",
        "RandomColorJitter",
        "RandomColorDegeneration",
        "RandomPosterization",
        "RandomInvert",
        "RandomPerspective",
        "RandomElasticTransform",
        "RandomGaussianBlur",
        "RandomErasing",
        "AugMix",
        "RandAugment",
        "CutMix",
        "MixUp",
        "Solarization",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "ActivityRegularization",
    }
)
RECURRENT_LAYERS = frozenset(
    {"RNN", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
)
TEXT_LAYERS = frozenset({"TextVectorization", "StringLookup", "Hashing"})  # take strings: TensorFlow string ops


def layer_names(model) -> list[str]:
    """The class name of every layer of ``model``, nested ones (a Bidirectional's LSTM) included."""
    names = []
    for layer in model.layers:
        names.append(type(layer).__name__)
        for inner in ("layer", "forward_layer", "backward_layer"):
            if getattr(layer, inner, None) is not None:
                names.append(type(getattr(layer, inner)).__name__)
    return names


def is_recurrent(model) -> bool:
    """Whether the model has recurrent layers (their loops sum in another order in each runtime)."""
    return bool(RECURRENT_LAYERS & set(layer_names(model)))


def has_backbone(model) -> bool:
    """Whether a layer of ``model`` is a whole model itself: a pretrained backbone (a Backbone entry, built as one
    functional model), whose hundred-odd layers each runtime sums in its own order."""
    import keras

    return any(isinstance(layer, keras.Model) for layer in model.layers)


def text_layers(model) -> list[str]:
    """The layers that take raw strings (TextVectorization, ...), in order."""
    return [name for name in layer_names(model) if name in TEXT_LAYERS]


def non_float32_layers(model) -> list[str]:
    """'name (policy)' of each layer not computing in float32 (ONNX export needs float32 throughout)."""
    found = []
    for layer in model.layers:
        policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
        if policy not in ("float32", "string", "int32", "int64"):
            found.append(f"{layer.name} ({policy})")
    return found


def float32_copy(model):
    """A copy of a mixed-precision ``model`` that computes in float32, with its weights (which mixed precision keeps
    in float32): what ONNX and LiteRT can hold of such a run (their converters take no bfloat16 or float16 ops).
    None where a layer is a whole model itself (a backbone), which this does not rebuild."""
    import keras

    if has_backbone(model):
        return None

    def in_float32(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy


def raw_input_shape(state: Preprocessing) -> list[int]:
    """The shape of one raw sample: the model's input shape, less the channel axis the run adds to raw samples."""
    return list(state.input_shape[:-1]) if state.add_channel_axis else list(state.input_shape)


def inference_model(model, state: Preprocessing):
    """A functional model taking raw samples: the run's preprocessing in front of the trained layers (shared),
    random augmentation and dropout left out. Named after the trained model; its input is INPUT_NAME."""
    import keras

    dtype = "string" if state.kind == "text" else "float32"
    inputs = keras.Input(tuple(raw_input_shape(state)), dtype=dtype, name=INPUT_NAME)
    x = inputs
    if state.add_channel_axis:
        x = keras.layers.Reshape(tuple(state.input_shape), name="channel_axis")(x)
    if state.kind != "text" and state.scale is not None:
        x = keras.layers.Rescaling(1.0 / float(state.scale), name="scale", dtype="float32")(x)
    if state.kind != "text" and state.mean is not None:
        # (x - mean) / std as one Rescaling: a Normalization layer keeps mean and variance as captured tensors,
        # which tf2onnx turns into extra graph inputs instead of constants.
        mean, std = np.asarray(state.mean, dtype=np.float64), np.asarray(state.std, dtype=np.float64)
        x = keras.layers.Rescaling(
            scale=(1.0 / std).astype(np.float32).tolist(),
            offset=(-mean / std).astype(np.float32).tolist(),
            name="standardize",
            dtype="float32",
        )(x)
    for layer in model.layers:
        if type(layer).__name__ in INFERENCE_IDENTITY_LAYERS:
            continue
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def left_out_layers(model) -> list[str]:
    """The names of the layers :func:`inference_model` leaves out."""
    return [layer.name for layer in model.layers if type(layer).__name__ in INFERENCE_IDENTITY_LAYERS]
