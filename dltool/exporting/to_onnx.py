"""ONNX through Keras's ``model.export(format="onnx")`` (tf2onnx on TensorFlow), reloaded in ONNX Runtime."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.preprocessing import Preprocessing
from ..errors import ExportError
from ..keras_io import INPUT_NAME
from .inference import non_float32_layers, text_layers
from .runtimes import first_line, quiet_converters, require

RUNTIME = "onnxruntime"


def refuse(model, state: Preprocessing) -> str | None:
    """Why ONNX cannot hold this model (raw-text layers, a policy other than float32), or None."""
    texts = text_layers(model)
    if texts:
        return (
            f"onnx: {texts[0]} (the model's raw-text input) becomes TensorFlow string ops (StaticRegexReplace, "
            "StringSplit, lookup tables) that ONNX Runtime has no kernels for; export this run as saved_model"
        )
    others = non_float32_layers(model)
    if others:
        return f"onnx: the ONNX export needs a float32 model; layer {others[0]} computes in another dtype policy"
    return None


def require_runtime() -> None:
    """Import the converter and the runtime now, so a missing one is said before any work."""
    require("tf2onnx", "tf2onnx", "ONNX export")
    require("onnx", "onnx", "ONNX export")
    require("onnxruntime", "onnxruntime", "ONNX verification")


def write(model, path: Path) -> dict:
    """Write ``model`` to ``path`` (.onnx); returns the opset the file declares."""
    import onnx
    import tensorflow as tf

    # An explicit signature: Keras infers one only for a model that has been called, which this one has not.
    spec = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype, name=INPUT_NAME)
    with quiet_converters():
        try:
            model.export(str(path), format="onnx", verbose=False, input_signature=[spec])
        except Exception as exc:  # noqa: BLE001  (what tf2onnx raises varies; the reason is kept in one line)
            raise ExportError(f"onnx: tf2onnx could not convert the model: {first_line(exc)}") from None
    declared = onnx.load(str(path), load_external_data=False).opset_import
    opset = next((o.version for o in declared if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset}


class Runner:
    """The .onnx file at ``path`` in an ``onnxruntime.InferenceSession`` on the CPU."""

    def __init__(self, path: Path):
        import onnxruntime

        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  (an op ONNX Runtime lacks: say which)
            ops = sorted(set(re.findall(r"No Op registered for (\w+)", str(exc))))
            reason = f"it has no kernel for {', '.join(ops)}" if ops else first_line(exc)
            raise ExportError(f"onnx: ONNX Runtime cannot load the converted model: {reason}") from None
        self.input_name = self._session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self.input_name: x})[0]
