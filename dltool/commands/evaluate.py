"""`evaluate`: a run's model on its own test split (or a given file), with per-class or regression metrics."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..metrics import ClassificationTotals, RegressionTotals
from ..probabilities import ProbabilityTotals
from ..runs import Run
from ..saved_run import CHECKPOINTS, SavedRun

EVALUATIONS = "evaluations"  # one file per evaluated data set (and checkpoint) inside the run
PLOT_KINDS = ("roc", "pr", "reliability")  # a classifier's evaluation plots: evaluations/<name>-<kind>.png


def evaluate(
    ref: str | Run,
    *,
    data_file: str | Path | None = None,
    runs_root: str | Path | None = None,
    checkpoint: str = "final",
    plots: bool = True,
    threshold: float | None = None,
) -> dict:
    """Evaluate a run's saved model; write and return the evaluation.

    Without ``data_file`` the run's test split is rebuilt deterministically
    from its saved config; with it, inputs and targets come from that file
    (.npz, .csv, .parquet, or for an images run a folder of class folders), read in
    bounded chunks and given the run's saved preprocessing. ``checkpoint`` is
    ``final`` (model.keras) or ``best`` (checkpoints/best.keras).

    Each data set keeps its own file, ``evaluations/<name>.json`` (``test`` for
    the run's own split, the file's stem otherwise, ``@best`` for the best
    checkpoint); ``evaluation.json`` is the latest of them.

    A classifier's report also has ``ranking`` (ROC AUC, PR AUC) and
    ``calibration`` (Brier score, ECE), which need every sample's scores: the
    labels (int32) and outputs (float32) are kept across chunks, (1 + outputs)
    x 4 bytes a sample (44 MB for a million samples of 10 classes). With
    ``plots`` (default True) the ROC, precision-recall and reliability plots are
    written beside the JSON, ``evaluations/<name>-roc.png``, ``-pr.png`` and
    ``-reliability.png``, and listed under ``plots``.

    A binary run's labels (per-class figures, confusion matrix, the operating point on the plots) use its
    decision threshold (``train.threshold``, else 0.5); ``threshold`` (default None) overrides it. The report's
    ``decision`` says which threshold and where it came from, with the accuracy, precision, recall and F1 of
    the positive class at it; ``compiled`` stays Keras's own metrics (a sigmoid's accuracy at 0.5).
    """
    saved = SavedRun.open(ref, runs_root)
    decision = saved.decision_threshold(threshold)
    totals = _totals(saved, decision)
    if data_file is not None:
        result = _evaluate_file(saved, Path(data_file), checkpoint, totals)
    else:
        result = _evaluate_test_split(saved, checkpoint, totals)
    result = {**result, "model": CHECKPOINTS[checkpoint]}
    name = _evaluation_name(saved.run, result["data"], data_file, checkpoint)
    result["name"] = name
    saved.run.file(EVALUATIONS).mkdir(exist_ok=True)
    if saved.is_classifier:
        _add_probability_report(saved, result, totals[-1], plots, decision)
        if decision is not None:
            result["decision"] = _decision_figures(saved, result["classification"], decision, threshold is not None)
    saved.run.write_json(f"{EVALUATIONS}/{name}.json", result)
    saved.run.write_json("evaluation.json", result)
    return result


def _decision_figures(saved: SavedRun, report: dict, value: float, overridden: bool) -> dict:
    """The threshold the labels used, where it came from, and the positive class's figures at it."""
    positive = saved.preprocessing.class_names[1]
    scores = report["per_class"][positive]
    return {
        "threshold": value,
        "source": "--threshold" if overridden else "train.threshold",
        "positive_class": positive,
        "accuracy": report["accuracy"],
        **{key: scores[key] for key in ("precision", "recall", "f1")},
    }


def _add_probability_report(
    saved: SavedRun, result: dict, scores: ProbabilityTotals, plots: bool, threshold: float | None = None
) -> None:
    """Ranking and calibration into the classification report, and (with ``plots``) their plots into the run."""
    result["classification"].update(scores.report())
    name = result["name"]
    if plots:
        from ..plots import write_evaluation_plots

        labels, outputs = scores.arrays()
        written = write_evaluation_plots(
            saved.run.file(EVALUATIONS),
            name,
            labels,
            outputs,
            saved.preprocessing.class_names,
            result["classification"]["calibration"],
            f"{saved.config.name} ({saved.run.id}) on {name}: {result['samples']} samples",
            threshold,
        )
        result["plots"] = [f"{EVALUATIONS}/{file}" for file in written]
    for kind in PLOT_KINDS:  # an earlier evaluation's plot of this name that this one did not draw is stale
        stale = f"{EVALUATIONS}/{name}-{kind}.png"
        if stale not in result.get("plots", []):
            saved.run.file(stale).unlink(missing_ok=True)


def _evaluation_name(run: Run, data: str, data_file, checkpoint: str) -> str:
    """'test', or the data file's stem (with a short hash when another file of that stem was evaluated)."""
    suffix = "" if checkpoint == "final" else f"@{checkpoint}"
    if data_file is None:
        return "test" + suffix
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(data_file).stem or "data")
    previous = run.file(f"{EVALUATIONS}/{stem}{suffix}.json")
    if previous.is_file():
        try:
            same = json.loads(previous.read_text(encoding="utf-8")).get("data") == data
        except (OSError, ValueError):
            same = False
        if not same:
            stem += "-" + hashlib.sha1(data.encode()).hexdigest()[:6]
    return stem + suffix


def _totals(saved: SavedRun, threshold: float | None = None) -> list:
    """What each chunk is added to: confusion counts (at a binary run's decision ``threshold``) and kept scores
    for a classifier, running sums for regression."""
    if not saved.is_classifier:
        return [RegressionTotals()]
    names = saved.preprocessing.class_names
    return [ClassificationTotals(names, threshold), ProbabilityTotals(names)]


def _outputs(model, saved: SavedRun, x: np.ndarray) -> np.ndarray:
    from ..keras_io import as_model_input, inference_batch_size

    return model.predict(as_model_input(x), batch_size=inference_batch_size(saved.config.train.batch_size), verbose=0)


def _evaluate_test_split(saved: SavedRun, checkpoint: str, totals: list) -> dict:
    """The test split rebuilt from the run's config (in memory, or read chunk by chunk when the run streamed it,
    so memory stays bounded)."""
    from ..data import open_test_split
    from ..training.fitting import evaluate_data

    data = open_test_split(saved.config, saved.preprocessing)
    model = saved.load_model(checkpoint)
    try:
        compiled = evaluate_data(model, saved.config, data)
    except Exception:
        if data.failure is None:
            raise
        raise data.failure from None  # a streamed file that cannot be read: its own message, not TensorFlow's
    result: dict = {
        "run": saved.run.id,
        "data": "test split of the run's config" + (" (streamed)" if data.streamed else ""),
        "samples": data.sizes()["test"],
        "compiled": compiled,
    }
    for x, y in data.test_chunks():
        outputs = _outputs(model, saved, x)
        for total in totals:
            total.add(y, outputs)
    result[totals[0].name] = totals[0].report()
    return result


def _evaluate_file(saved: SavedRun, path: Path, checkpoint: str, totals: list) -> dict:
    """A labelled file, read in bounded chunks twice: once for the report, once through Keras for compiled metrics."""
    from ..inputs import inputs_for
    from ..training.fitting import evaluate_data

    labelled = inputs_for(saved.preprocessing).labelled(path)  # refuses an unusable file before the model loads
    model = saved.load_model(checkpoint)
    source = str(path.resolve())
    width = int(model.output_shape[-1] or 1)
    samples = 0
    for x, y in labelled.chunks():
        if not saved.is_classifier and y.shape[1] != width:
            raise InputError(
                f"{source}: expected {width} target value(s) per sample (the model's outputs), received {y.shape[1]}"
            )
        outputs = _outputs(model, saved, x)
        for total in totals:
            total.add(y, outputs)
        samples += len(x)
    try:
        compiled = evaluate_data(model, saved.config, labelled)
    except Exception:
        if labelled.failure is None:
            raise
    if labelled.failure is not None:  # the file changed between the two reads: its own message, not TensorFlow's
        raise labelled.failure
    return {
        "run": saved.run.id,
        "data": source,
        "samples": samples,
        "compiled": compiled,
        totals[0].name: totals[0].report(),
    }
