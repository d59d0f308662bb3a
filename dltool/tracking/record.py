"""A run folder's record as MLflow sees it: parameters, tags, metrics by step and artifacts. No MLflow import.

The tracker (a live run) and `dltool runs sync` (a run pushed later) log the same names, so a run synced later
reads in MLflow exactly as one logged while it trained.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from .._version import __version__
from ..runs import COMPLETED, DIED, FAILED, INTERRUPTED, Run
from .settings import password_free

MAX_PARAM_VALUE = 500  # characters: MLflow's limit before 2.x servers raised it; every server takes this many
MAX_PARAM_KEY = 250
TRUNCATED = "...[truncated]"
ARTIFACTS = ("config.yaml", "metrics.json", "history.csv", "train.log")  # and every plot (*.png) in the folder
NOT_METRICS = ("epoch", "phase")  # history.csv columns that are the step or a label, not a measurement
FINAL_STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", INTERRUPTED: "KILLED", DIED: "FAILED"}

# Tag names: MLflow's run name, then dltool's own.
TAG_RUN_ID = "dltool.run_id"
TAG_STATUS = "dltool.status"
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own tag: the UI shows the run nested under that one


_INDEX = re.compile(r"\[(\d+)\]")
_REFUSED = re.compile(r"[^\w\-. :/]")


def flatten_params(config: dict) -> dict[str, str]:
    """The resolved config as MLflow parameters: ``{"train.optimizer.learning_rate": "0.05", ...}``.

    Nested keys are joined with dots; a list of plain values is one parameter in JSON (``[4]``), a list of
    mappings (model.layers) one key per entry and index (``model.layers.0.Dense.units``). Values longer than
    MLFLOW's 500 characters end in ``...[truncated]``. A tracking URI's password is never a parameter.
    """
    flat: dict[str, str] = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            for index, item in enumerate(value):
                visit(f"{prefix}.{index}", item)
        else:
            flat[param_key(prefix)] = _param_text(value)

    visit("", config)
    if flat.get("tracking.mlflow.uri") not in (None, "null"):
        flat["tracking.mlflow.uri"] = password_free(flat["tracking.mlflow.uri"])
    return flat


def param_key(path: str) -> str:
    """A dotted path as an MLflow parameter key: ``[0]`` as ``.0`` (a sweep's ``model.layers[0].Dense.units``
    names what the config's ``model.layers.0.Dense.units`` does), any other character MLflow refuses (it takes
    word characters, ``- . : /`` and spaces) as ``_``."""
    key = _INDEX.sub(r".\1", path)
    return _REFUSED.sub("_", key)[:MAX_PARAM_KEY]


def _param_text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_PARAM_VALUE:
        text = text[: MAX_PARAM_VALUE - len(TRUNCATED)] + TRUNCATED
    return text


def run_tags(run: Run, info: dict, config_name: str, status: str) -> dict[str, str]:
    """The tags of a run: its name in MLflow (the run id), dltool's run id and ``status``, config name, version,
    backend and device."""
    versions = info.get("versions") or {}
    return {
        "mlflow.runName": run.id,
        TAG_RUN_ID: run.id,
        TAG_STATUS: status,
        "dltool.config_name": config_name,
        "dltool.version": __version__,
        "dltool.backend": str(versions.get("backend") or "tensorflow"),
        **({"dltool.device": str(info["device"])} if info.get("device") else {}),
    }


def epoch_metrics(row: dict) -> dict[str, float]:
    """One history row's measurements (loss, val_loss, learning_rate, epoch_seconds, ...), finite numbers only."""
    metrics = {}
    for key, value in row.items():
        if key in NOT_METRICS or value in (None, ""):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            metrics[key] = number
    return metrics


def final_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json's final figures: ``test_<metric>``, ``final_<metric>``, ``final_val_<metric>`` and the fit's
    seconds (logged at the last epoch's step)."""
    final = {}
    for prefix, split in (("final_", "train"), ("final_val_", "validation"), ("test_", "test")):
        for key, value in (metrics.get(split) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                final[prefix + key] = float(value)
    if isinstance(metrics.get("fit_seconds"), (int, float)):
        final["fit_seconds"] = float(metrics["fit_seconds"])
    return final


def history_rows(run: Run) -> list[dict]:
    """history.csv's rows (empty when the run has none yet)."""
    path = run.file("history.csv")
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def metric_steps(rows: list[dict]) -> list[tuple[str, float, int]]:
    """(key, value, step) for every measurement of every row; the step is the row's epoch."""
    return [(key, value, int(float(row["epoch"]))) for row in rows for key, value in epoch_metrics(row).items()]


def artifact_files(run: Run) -> list[Path]:
    """The files of a run that go to MLflow as artifacts: config, metrics, history, log and the plots."""
    files = [run.file(name) for name in ARTIFACTS] + sorted(run.path.glob("*.png"))
    return [path for path in files if path.is_file()]
