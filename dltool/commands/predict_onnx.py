"""`dltool predict` through a run's verified ONNX export: tabular runs predicted with onnxruntime, no TensorFlow.

`dltool export RUN --format onnx` verifies the exported model against model.keras (rtol, atol 1e-5) and records it in
exports.json with the SHA-256 of the model file it came from. While that file is unchanged, predict can run
the ONNX model instead: the run's preprocessing is inside it, so it takes the raw CSV values; the import of
TensorFlow (4-5 s and ~650 MB) is skipped. Measured on 1M rows: 0.23x the pandas + model.predict script
(benchmarks/RESULTS-export.md).
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.preprocessing import Preprocessing
from ..errors import UsageError
from ..installation import pip_install
from ..runs import Run, runs_dir
from ..saved_run import CHECKPOINTS

RUNTIMES = ("auto", "keras", "onnx")


def verified_onnx(run: Run, checkpoint: str = "final") -> Path | None:
    """The run's newest verified ONNX export of ``checkpoint``'s model, if its file exists and that model file
    is unchanged since; else None."""
    import hashlib

    from .runs_report import read_exports

    model = run.file(CHECKPOINTS.get(checkpoint, "model.keras"))
    records = [
        r
        for r in read_exports(run)
        if r.get("format") == "onnx" and r.get("checkpoint", "final") == checkpoint and r.get("model_sha256")
    ]
    if not records or not model.is_file():
        return None
    fingerprint = hashlib.sha256(model.read_bytes()).hexdigest()
    for record in reversed(records):
        path = Path(record.get("path", ""))
        if record["model_sha256"] == fingerprint and path.is_file():
            return path
    return None


def choose_runtime(ref: str, runs_root, runtime: str = "auto", checkpoint: str = "final") -> str:
    """ "onnx" or "keras" for a `dltool predict` call, decided without TensorFlow.

    ``auto`` takes onnx for a tabular run (its inputs: CSV or .npy/.npz of numbers) with a usable verified ONNX
    export and onnxruntime installed; ``onnx`` insists (a clear error says what is missing); ``keras`` never.
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime: expected one of {', '.join(RUNTIMES)}, received '{runtime}'")
    if runtime == "keras":
        return "keras"
    run = Run.resolve(str(ref), runs_dir(runs_root))
    state = Preprocessing.from_dict(run.read_json("preprocessing.json"))
    problem = None
    if state.kind != "array" or state.add_channel_axis:
        problem = f"run {run.id} is not a tabular model (its inputs are {state.kind})"
    elif verified_onnx(run, checkpoint) is None:
        problem = (
            f"run {run.id} has no verified ONNX export of its current {checkpoint} model; make one with: "
            f"dltool export {run.id} --format onnx"
        )
    elif importlib.util.find_spec("onnxruntime") is None:
        problem = f"onnxruntime is not installed: {pip_install('export')}"
    if problem and runtime == "onnx":
        raise UsageError(f"--runtime onnx: {problem}")
    return "keras" if problem else "onnx"


def raw_inputs_state(state: Preprocessing) -> Preprocessing:
    """The preprocessing that reads raw values (the ONNX model applies the run's scale and standardization)."""
    return replace(state, scale=None, mean=None, std=None)


def onnx_model(path: Path):
    """(call, outputs): a function from raw float32 samples to the model's outputs, and the output width."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    width = session.get_outputs()[0].shape[-1]

    def call(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.asarray(x, dtype=np.float32)})[0]

    return call, int(width) if isinstance(width, int) else None
