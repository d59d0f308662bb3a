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
    _convert_erfc()
    with quiet_converters():
        try:
            model.export(str(path), format="onnx", verbose=False, input_signature=[spec])
        except Exception as exc:  # noqa: BLE001  (what tf2onnx raises varies; the reason is kept in one line)
            raise ExportError(f"onnx: tf2onnx could not convert the model: {first_line(exc)}") from None
    converted = onnx.load(str(path), load_external_data=False)
    _check_inputs(converted.graph)
    opset = next((o.version for o in converted.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset}


def _check_inputs(graph) -> None:
    """An ExportError where the converted graph asks for more than the model's input: tf2onnx leaves a tensor that
    a layer keeps outside its weights, captured from Python (keras-hub's ViT keeps its position ids so), as an
    input of the graph rather than a constant."""
    weights = {initializer.name for initializer in graph.initializer}
    extra = [i.name for i in graph.input if i.name != INPUT_NAME and i.name not in weights]
    if extra:
        layer = extra[0].rsplit("/", 2)[0] if extra[0].count("/") >= 2 else extra[0]
        raise ExportError(
            f"onnx: tf2onnx left a tensor of layer {layer} as an input of the converted model ({extra[0]}), beside "
            f"{INPUT_NAME}: the layer keeps it outside its weights; export this run as saved_model or litert"
        )


def _convert_erfc() -> None:
    """Teach tf2onnx TensorFlow's Erfc, as 1 - Erf (ONNX has Erf since opset 9, no Erfc): exact GELU computes it
    (Keras's gelu activation, the MLPs of keras-hub's ViT and DINOv2), and tf2onnx 1.17 has no conversion for it,
    so such models converted to files ONNX Runtime cannot load. Registered once per process, where tf2onnx has no
    Erfc of its own."""
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    if any("Erfc" in handlers for opset in tf_op.get_opsets().values() for handlers in opset):
        return

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            erf = node.output[0]
            complement = ctx.insert_new_node_on_output(
                "Sub", erf, name=utils.make_name(f"{node.name}_complement"), inputs=[one.output[0], erf]
            )
            ctx.copy_shape(erf, complement.output[0])


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
