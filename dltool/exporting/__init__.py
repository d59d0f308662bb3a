"""Exporting a run's model: the inference model, one module per format, and the runtimes that reload them.

Formats: ``saved_model`` (TensorFlow Serving), ``onnx`` (ONNX Runtime), ``litert``
(LiteRT, formerly TensorFlow Lite). Each format module has the same four parts:
``RUNTIME`` (the package that runs the artifact), ``refuse(model, state)`` (the
reason a model cannot be exported, known before converting), ``write(model,
path)`` and ``Runner(path)`` (the artifact reloaded in its own runtime).
Nothing here imports TensorFlow until a function is called.
"""

from __future__ import annotations

FORMATS = ("saved_model", "onnx", "litert")


def format_module(fmt: str):
    """The module that writes and reloads ``fmt`` (one of FORMATS)."""
    from . import to_litert, to_onnx, to_saved_model

    return {"saved_model": to_saved_model, "onnx": to_onnx, "litert": to_litert}[fmt]
