"""dltool's own Keras layers, registered for saving: a run's model.keras names them, and every loader registers
them first (:func:`dltool.keras_io.load_model_safely` imports this module).

Imports Keras at module level: only Keras-side code imports this module, and only inside functions.
"""

from __future__ import annotations

import keras

PACKAGE = "dltool"  # the registered names are "dltool>ClassName"
SOFTMAX, SIGMOID = "softmax", "sigmoid"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemperatureScaling(keras.layers.Layer):
    """A classifier's last activation with its logits divided by one temperature: softmax(z / T), or sigmoid(z / T)
    for a single output (Guo et al. 2017, "On Calibration of Modern Neural Networks"). It takes the logits: the
    layer before it has lost its own softmax or sigmoid (see :mod:`dltool.training.calibration`). T > 1 softens
    over-confident probabilities, T < 1 sharpens them; the order of the classes, and so the predicted class, never
    changes.

    ``temperature`` (a float > 0) is part of the layer's config, not a weight: the layer adds no parameters, and a
    model that ends in it has the weights of the model without it. ``kind``: "softmax" (default) or "sigmoid". The
    layer computes in float32 (dtype "float32" by default), also under a mixed-precision policy.
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
        """The calibrated probabilities of logits ``inputs``."""
        scaled = keras.ops.cast(inputs, "float32") / self.temperature
        return keras.ops.sigmoid(scaled) if self.kind == SIGMOID else keras.ops.softmax(scaled, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature, "kind": self.kind}
