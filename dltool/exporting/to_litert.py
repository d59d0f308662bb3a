"""LiteRT (.tflite) with built-in ops only, reloaded in the standalone ``ai-edge-litert`` interpreter.

Keras's own LiteRT export lets the converter fall back on TensorFlow ops
(Flex, "Select TF ops"), which the standalone interpreter cannot run; dltool
converts with LiteRT's built-in ops only, so a model that would need Flex is
refused with the ops named instead of failing on the device. Recurrent layers
convert to built-in ops only with a fixed batch size: their .tflite takes one
sample per call.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.preprocessing import Preprocessing
from ..errors import ExportError
from ..keras_io import INPUT_NAME
from .inference import is_recurrent, text_layers
from .runtimes import first_line, quiet_converters, quiet_stderr, require

RUNTIME = "ai-edge-litert"
NO_FLEX = "which the standalone ai-edge-litert interpreter lacks (it has no Flex delegate)"


def refuse(model, state: Preprocessing) -> str | None:
    """Why LiteRT's built-in ops cannot hold this model (raw-text layers), or None."""
    texts = text_layers(model)
    if texts:
        return (
            f"litert: {texts[0]} (the model's raw-text input) needs TensorFlow string ops as Flex ops, {NO_FLEX}; "
            "export this run as saved_model"
        )
    return None


def require_runtime() -> None:
    """Import the interpreter now, so a missing one is said before any work."""
    require("ai_edge_litert.interpreter", "ai-edge-litert", "LiteRT verification")


def write(model, path: Path) -> dict:
    """Write ``model`` to ``path`` (.tflite) with built-in ops only; returns the fixed batch size (None: any)."""
    import tensorflow as tf

    batch = 1 if is_recurrent(model) else None
    spec = tf.TensorSpec((batch, *model.input_shape[1:]), model.inputs[0].dtype, name=INPUT_NAME)
    with quiet_converters():
        try:
            model.export(
                str(path),
                format="litert",
                verbose=False,
                input_signature=[spec],
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
            )
        except Exception as exc:  # noqa: BLE001  (the converter's error, reduced to the ops it names)
            ops = sorted(set(re.findall(r"'tf\.(\w+)' op", str(exc))))
            if ops:
                raise ExportError(
                    f"litert: the model needs TensorFlow ops {', '.join(ops)} (Flex), {NO_FLEX}"
                ) from None
            raise ExportError(f"litert: the LiteRT converter failed: {first_line(exc)}") from None
    return {"batch": batch}


class Runner:
    """The .tflite file at ``path`` in ai-edge-litert's Interpreter, called through its signature."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with quiet_stderr():
                self._interpreter = Interpreter(model_path=str(path))
            signatures = self._interpreter.get_signature_list()
            self._key = next(iter(signatures))
            self.input_name = signatures[self._key]["inputs"][0]
            self._runner = self._interpreter.get_signature_runner(self._key)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"litert: the interpreter cannot load the model: {first_line(exc)}") from None
        shape = self._interpreter.get_input_details()[0]["shape_signature"]
        self.batch = int(shape[0]) if len(shape) and shape[0] > 0 else None

    def run(self, x: np.ndarray) -> np.ndarray:
        step = self.batch or len(x)
        parts = []
        for start in range(0, len(x), step):
            try:
                with quiet_stderr():
                    outputs = self._runner(**{self.input_name: x[start : start + step]})
            except RuntimeError as exc:
                raise ExportError(f"litert: the interpreter cannot run the model: {first_line(exc)}") from None
            parts.append(next(iter(outputs.values())))
        return np.concatenate(parts)
