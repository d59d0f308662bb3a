"""`export`: a run's model as a TF Serving SavedModel, an ONNX file or a LiteRT file, verified before it is kept.

The exported model takes raw samples (the run's preprocessing folded in
front, augmentation left out: :mod:`dltool.exporting.inference`). It is
written into a staging folder beside the output path, reloaded in its own
runtime, run on up to 256 samples of the run's test split (or ``data_file``)
and compared with model.keras applied as ``dltool predict`` applies it, element
by element as numpy.allclose does (:mod:`dltool.exporting.verify`). Only when
every output is within tolerance is it renamed into place and recorded in the
run's ``exports.json``; otherwise nothing is left at the path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..decision import run_threshold
from ..errors import DataError, ExportError, RunStateError, UsageError, VerificationError
from ..exporting import FORMATS, format_module
from ..exporting.runtimes import version_of
from ..exporting.verify import MAX_SAMPLES, compare, tolerance_for
from ..runs import Run, now_iso
from ..saved_run import SavedRun

EXPORTS = "exports.json"  # every verified export of a run, oldest first
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}


def model_name(saved: SavedRun) -> str:
    """The name clients call the model by (TF Serving's MODEL_NAME): the config's name, in URL-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", saved.config.name) or "model"


def export(
    ref: str | Run,
    fmt: str,
    *,
    output: str | Path | None = None,
    data_file: str | Path | None = None,
    checkpoint: str = "final",
    runs_root: str | Path | None = None,
    keep: list[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> dict:
    """Export a run's model as ``fmt`` (saved_model, onnx or litert), verify it, record it; return the record.

    ``output`` (default: the run's ``exports/`` folder) is, for saved_model, the
    base folder TF Serving is pointed at (the model goes to ``<name>/<version>/``
    inside it), and for onnx and litert the file, or a folder to write
    ``<name>.onnx`` / ``<name>.tflite`` into. ``data_file`` (default: the run's
    test split) gives the samples compared, ``keep`` (default none) names its CSV columns that are no inputs
    (an id) to ignore, as ``dltool predict --keep`` accepts them; ``checkpoint`` is final or best.
    Outputs pass when ``|got - expected| <= atol + rtol * |expected|``; ``rtol``
    and ``atol`` (default None: 1e-5 each, 1e-4 for recurrent layers and backbones) must be >= 0.
    Raises ExportError (exit 2) when the format cannot hold the model or its
    runtime is missing, VerificationError (exit 1) when the outputs differ.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format: expected {', '.join(FORMATS)}, received '{fmt}'")
    if keep and data_file is None:
        raise UsageError("--keep names columns of the --data file to ignore; give --data FILE too")
    tolerance_for(False, rtol, atol)  # a bad --rtol/--atol is refused before any work
    module = format_module(fmt)
    if hasattr(module, "require_runtime"):
        module.require_runtime()
    saved = SavedRun.open(ref, runs_root)
    target = _target(saved, fmt, output)
    raw, data = _samples(saved, data_file, keep or [])
    from ..exporting.inference import float32_copy, non_float32_layers, text_layers

    model = saved.load_model(checkpoint)
    trained_in = None
    if fmt != "saved_model" and non_float32_layers(model) and not text_layers(model):
        # ONNX and LiteRT hold no bfloat16/float16 ops: a mixed-precision run is exported as its float32 copy,
        # verified against that copy, and the record says how far the copy is from the model as trained.
        copy = float32_copy(model)
        if copy is not None:
            trained_in = {"policy": non_float32_layers(model)[0].rsplit("(", 1)[-1].rstrip(")"), "model": model}
            model = copy
    reason = module.refuse(model, saved.preprocessing)
    if reason:
        raise ExportError(reason)
    return _export_verified(saved, model, fmt, target, raw, data, checkpoint, (rtol, atol), trained_in)


def _target(saved: SavedRun, fmt: str, output: str | Path | None) -> Path:
    """Where the artifact goes (saved_model: the base folder); its parent folder must exist and be writable."""
    if output is None:
        folder = saved.run.file("exports")
        folder.mkdir(exist_ok=True)
        return folder / "saved_model" if fmt == "saved_model" else folder / f"{model_name(saved)}{SUFFIXES[fmt]}"
    path = Path(output)
    if fmt != "saved_model":
        if path.is_dir() or (not path.exists() and not path.suffix):
            path = path / f"{model_name(saved)}{SUFFIXES[fmt]}"
        elif path.suffix.lower() != SUFFIXES[fmt]:
            raise UsageError(f"-o {output}: a {fmt} file ends in {SUFFIXES[fmt]}; give such a file or a folder")
    elif path.exists() and not path.is_dir():
        raise UsageError(f"-o {output}: is a file; for saved_model give the folder TF Serving serves models from")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"-o {output}: the folder {parent} does not exist; create it first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"-o {output}: cannot write in {parent}")
    return path


def _samples(saved: SavedRun, data_file: str | Path | None, keep: list[str]) -> tuple[np.ndarray, str]:
    """Up to MAX_SAMPLES raw samples (as the data file holds them, ``keep`` columns ignored) and where they came
    from."""
    state = saved.preprocessing
    if data_file is None:
        from ..data.splits import raw_test_inputs

        try:
            raw = raw_test_inputs(saved.config, MAX_SAMPLES)
        except DataError as exc:
            raise RunStateError(
                f"cannot rebuild the run's test split to verify the export ({exc}); give --data FILE"
            ) from None
        where = "test split"
    else:
        from ..inputs import expand_inputs, inputs_for

        reader = inputs_for(state)
        reader.use, reader.keep = "export", tuple(keep)
        parts, count = [], 0
        for path in expand_inputs([data_file], reader):
            reader.check(path)
            for _, chunk in reader.read(path):
                parts.append(np.asarray(chunk)[: MAX_SAMPLES - count])
                count += len(parts[-1])
                if count >= MAX_SAMPLES:
                    break
            if count >= MAX_SAMPLES:
                break
        raw = np.concatenate(parts)
        where = str(Path(data_file).resolve())
    if state.add_channel_axis and raw.ndim == len(state.input_shape) + 1:
        raw = raw[..., 0]  # samples given with the channel axis: the exported model adds it itself
    if not len(raw):
        raise UsageError(f"{where}: holds no samples to verify the export on")
    return raw, where


def _reference_outputs(model, saved: SavedRun, raw: np.ndarray) -> np.ndarray:
    """model.keras on ``raw`` as `dltool predict` applies it: the run's saved preprocessing, then the model."""
    from ..inputs.base import preprocess
    from ..keras_io import as_model_input

    x = preprocess(saved.preprocessing, raw, lambda i: ("verification samples", i))
    return np.asarray(model.predict_on_batch(as_model_input(x)))


def _model_input(raw: np.ndarray, kind: str) -> np.ndarray:
    return np.asarray(raw, dtype=object if kind == "text" else np.float32)


def _export_verified(saved, model, fmt, target: Path, raw, data, checkpoint, figures, trained_in=None) -> dict:
    """Convert, verify against ``model``'s outputs on ``raw``, move into place, record. ``trained_in`` (a
    mixed-precision run exported as its float32 copy ``model``): {policy, model as trained}."""
    from ..exporting.inference import has_backbone, inference_model, is_recurrent, left_out_layers

    module = format_module(fmt)
    state = saved.preprocessing
    expected = _reference_outputs(model, saved, raw)
    from_trained = {}
    if trained_in is not None:
        gap = float(np.max(np.abs(expected - _reference_outputs(trained_in["model"], saved, raw)))) if len(raw) else 0.0
        from_trained = {"computes_in": "float32", "trained_in": trained_in["policy"], "max_abs_diff_from_trained": gap}
    tolerance = tolerance_for(is_recurrent(model) or has_backbone(model), *figures)
    inference = inference_model(model, state)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        artifact = staging / ("model" + SUFFIXES.get(fmt, ""))
        start = time.perf_counter()
        details = module.write(inference, artifact)
        exported = time.perf_counter()
        got = module.Runner(artifact).run(_model_input(raw, state.kind))
        comparison = compare(got, expected, tolerance, fmt)
        verified = time.perf_counter()
        if not comparison.passed:
            raise VerificationError(_failure(fmt, comparison, tolerance, len(raw), data, target))
        record = {
            "format": fmt,
            "runtime": module.RUNTIME,
            "runtime_version": version_of(module.RUNTIME),
            "max_abs_diff": comparison.max_abs_diff,
            "tolerance_used": comparison.used,  # the worst element's share of its allowed difference
            "rtol": tolerance.rtol,
            "atol": tolerance.atol,
            "samples": int(len(raw)),
            "data": data,
            "seconds": round(verified - exported, 3),
            "export_seconds": round(exported - start, 3),
            "checkpoint": checkpoint,
            "model_sha256": model_fingerprint(saved, checkpoint),  # `dltool predict` uses the export while it matches
            "input": {"shape": [None, *inference.input_shape[1:]], "dtype": str(inference.inputs[0].dtype)},
            "left_out": left_out_layers(model),
            "created": now_iso(),
            **from_trained,
            **details,
        }
        if fmt == "saved_model":
            record["example"] = _json_row(raw[0])
        record["path"] = str(_move_into_place(saved, fmt, target, staging, artifact, record))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _append_record(saved.run, {k: v for k, v in record.items() if k != "example"})
    return record


def _failure(fmt: str, c, tolerance, samples: int, data: str, target: Path) -> str:
    """The VerificationError message: how far off, the worst element, the figure allowed, how to loosen."""
    return (
        f"{fmt}: the exported model differs from model.keras by up to {c.max_abs_diff:.3g} on {samples} samples "
        f"({data}); worst at sample {c.sample} (from 0), output {c.output}: got {c.got:.9g}, expected {c.expected:.9g}, "
        f"allowed difference {c.allowed:.3g} (atol + rtol * |expected|, {tolerance}); nothing was written to "
        f"{target}; if such a difference is acceptable, loosen the check with --rtol/--atol"
    )


def model_fingerprint(saved: SavedRun, checkpoint: str) -> str:
    """SHA-256 of the model file an export was made from (model.keras or the best checkpoint)."""
    import hashlib

    from ..saved_run import CHECKPOINTS

    return hashlib.sha256(saved.run.file(CHECKPOINTS[checkpoint]).read_bytes()).hexdigest()


def _json_row(sample: np.ndarray):
    """One raw sample as JSON values (the row of a TF Serving request); float32 values in their shortest form."""
    sample = np.asarray(sample)
    if sample.dtype == np.float32:
        return np.vectorize(lambda v: float(str(v)), otypes=[float])(sample).tolist()
    return sample.astype(str).tolist() if sample.dtype.kind in "OUS" else sample.tolist()


def _sidecar(saved: SavedRun, record: dict) -> dict:
    """What a client needs beside the artifact: what goes in, what comes out, the class names, and a binary run's
    decision threshold (the artifact's outputs stay probabilities: the deployer applies it)."""
    state = saved.preprocessing
    threshold = run_threshold(saved.run.info)
    decision = (
        {
            "decision_threshold": threshold,
            "decision": f"label {state.class_names[1]} when the last output value (its probability) >= "
            f"decision_threshold, else {state.class_names[0]}",
        }
        if threshold is not None
        else {}
    )
    return {
        "run": saved.run.id,
        "model_name": model_name(saved),
        "task": state.task,
        "input": record["input"],
        "feature_names": state.feature_names,
        "class_names": state.class_names,
        "target_names": state.target_names,
        "outputs": "class probabilities, in the order of class_names"
        if state.task == "classification"
        else "predicted values",
        "preprocessing": "included: send raw values as in the training data",
        **decision,
    }


def _move_into_place(saved: SavedRun, fmt: str, target: Path, staging: Path, artifact: Path, record: dict) -> Path:
    """Write the class names and the sidecar beside the verified artifact and rename it all into place."""
    from ..fileio import apply_default_modes

    apply_default_modes(artifact)  # written in a 0700 folder by libraries with modes of their own
    sidecar = json.dumps(_sidecar(saved, record), indent=2) + "\n"
    labels = "".join(f"{name}\n" for name in saved.preprocessing.class_names or [])
    if fmt == "saved_model":
        (artifact / "dltool-export.json").write_text(sidecar, encoding="utf-8")
        if labels:
            (artifact / "labels.txt").write_text(labels, encoding="utf-8")
        folder = target / model_name(saved)
        folder.mkdir(parents=True, exist_ok=True)
        version = format_module(fmt).next_version(folder)
        final = folder / str(version)
        os.rename(artifact, final)  # refuses to replace a version folder that appeared meanwhile
        record["model_name"], record["version"] = model_name(saved), version
        return final.resolve()
    stem = target.with_suffix("")
    (staging / "sidecar.json").write_text(sidecar, encoding="utf-8")
    os.replace(staging / "sidecar.json", stem.with_name(stem.name + ".json"))
    if labels:
        (staging / "labels.txt").write_text(labels, encoding="utf-8")
        os.replace(staging / "labels.txt", stem.with_name(stem.name + ".labels.txt"))
    os.replace(artifact, target)
    return target.resolve()


def _append_record(run: Run, record: dict) -> None:
    """Add ``record`` to the run's exports.json (a list, oldest first; written atomically)."""
    try:
        records = run.read_json(EXPORTS) if run.file(EXPORTS).is_file() else []
    except Exception:  # noqa: BLE001  (an unreadable exports.json is started afresh, not a failed export)
        records = []
    run.write_json(EXPORTS, [*(records if isinstance(records, list) else []), record])


def serving_commands(record: dict) -> tuple[str, str]:
    """The `docker run` line that serves a saved_model export with TF Serving, and a `curl` request for it."""
    name = record["model_name"]
    base = Path(record["path"]).parent
    docker = (
        f"docker run -p 8501:8501 --mount type=bind,source={base},target=/models/{name} "
        f"-e MODEL_NAME={name} -t tensorflow/serving"
    )
    body = json.dumps({"instances": [record["example"]]}).replace("'", "'\\''")
    curl = f"curl -d '{body}' -X POST http://localhost:8501/v1/models/{name}:predict"
    return docker, curl
