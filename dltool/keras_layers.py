"""dltool's own Keras layers, registered for saving: a run's model.keras names them, and every loader registers
them first (:func:`dltool.keras_io.load_model_safely` imports this module).

Imports Keras at module level: only Keras-side code imports this module, and only inside functions.
"""

from __future__ import annotations

import keras
import numpy as np

PACKAGE = "dltool"  # the registered names are "dltool>ClassName"
SOFTMAX, SIGMOID = "softmax", "sigmoid"
# The smallest probability whose log is taken (float32's smallest normal number): a softmax output that
# underflowed to 0 gets log -87.3, far below any class that matters.
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
# A sigmoid output is kept below 1 - 2**-24 (the float32 number closest below 1), so that log(1 - p) is finite:
# a logit of at most 16.6, what float32 probabilities can tell apart.
SIGMOID_CEILING = 1.0 - 2.0**-24


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemperatureScaling(keras.layers.Layer):
    """Divide the logits behind a model's probabilities by one temperature: softmax(log(p) / T) for a softmax
    output, sigmoid(logit(p) / T) for a single sigmoid output (Guo et al. 2017, "On Calibration of Modern Neural
    Networks"). T > 1 softens over-confident probabilities, T < 1 sharpens them; the order of the classes, and so
    the predicted class, never changes.

    ``temperature`` (a float > 0) is part of the layer's config, not a weight: the layer adds no parameters, and a
    model that ends in it has the weights of the model without it. ``kind``: "softmax" or "sigmoid". The layer
    computes in float32 (dtype "float32" by default), also under a mixed-precision policy.
    """

    def __init__(self, temperature: float, kind: str = SOFTMAX, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, received {temperature!r}")
        if kind not in (SOFTMAX, SIGMOID):
            raise ValueError(f"kind must be '{SOFTMAX}' or '{SIGMOID}', received {kind!r}")
        self.temperature = float(temperature)
        self.kind = kind

    def call(self, inputs):
        """The recalibrated probabilities of ``inputs`` (probabilities, in the shape the model gave them)."""
        p = keras.ops.cast(inputs, "float32")
        if self.kind == SIGMOID:
            p = keras.ops.clip(p, PROBABILITY_FLOOR, SIGMOID_CEILING)
            logit = keras.ops.log(p) - keras.ops.log(1.0 - p)
            return keras.ops.sigmoid(logit / self.temperature)
        return keras.ops.softmax(keras.ops.log(keras.ops.maximum(p, PROBABILITY_FLOOR)) / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature, "kind": self.kind}
