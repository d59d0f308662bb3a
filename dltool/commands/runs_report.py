"""What `dltool runs`, `runs show` and `runs compare` report, as plain data (what --json prints). No Keras.

The CLI renders these dicts with :mod:`dltool.cli.display`; nothing here prints.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from ..errors import DltoolError, UsageError
from ..runs import Run, effective_status, list_runs

LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "hinge", "crossentropy")


def summarize(run: Run) -> dict:
    """One run as plain data: id, name, status (DIED for a dead RUNNING run), epochs, test metrics, times."""
    try:
        info = run.info
    except DltoolError as exc:
        return {"id": run.id, "name": None, "status": "UNREADABLE", "error": str(exc), "test": {}}
    metrics = read_json_or_none(run.file("metrics.json")) or {}
    return {
        "id": run.id,
        "name": info.get("name"),
        "status": effective_status(info),
        "epochs_done": info.get("epochs_done"),
        "epochs_planned": info.get("epochs_planned"),
        "test": metrics.get("test") or {},
        "validation": metrics.get("validation") or {},
        "best_epoch": metrics.get("best_epoch"),
        "duration_s": info.get("duration_s"),
        "started": info.get("started"),
        "ended": info.get("ended"),
        "error": info.get("error"),
        "device": info.get("device"),
        "backend": (info.get("versions") or {}).get("backend", "tensorflow" if info.get("versions") else None),
        "params": info.get("params"),
        "data": info.get("data"),  # split sizes, how the test split was drawn, streamed or not
        "path": str(run.path),
        **({"sweep": info["sweep"], "trial": info.get("trial")} if info.get("sweep") else {}),
        **({"cv": info["cv"], "fold": info.get("fold"), "repeat": info.get("repeat")} if info.get("cv") else {}),
        "expectations": info.get("expectations"),
        "expectations_met": info.get("expectations_met"),
    }


def read_json_or_none(path: Path):
    """A JSON file's contents, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2h', '3d', '45m', '1w' ago, or an ISO date/time such as 2026-11-24 or 2026-11-24T10:00."""
    now = now or datetime.now(timezone.utc)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: expected a duration such as 2h, 3d, 1w or a date such as 2026-11-24, received '{text}'"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (losses and errors)."""
    return any(word in metric for word in LOWER_IS_BETTER)


def select_runs(
    root: Path,
    *,
    status: str | None = None,
    name: str | None = None,
    since: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
    sweep: str | None = None,
    cv: str | None = None,
) -> list[dict]:
    """Summaries of the runs in ``root``, filtered (status, name glob or substring, since) and sorted.

    ``sort`` is a test metric (best first: ascending for losses and errors,
    descending otherwise); without it, runs are listed oldest first. ``sweep`` (an id or its prefix) keeps
    the trials of that sweep, ``cv`` the folds of that cross-validation.
    """
    rows = [summarize(run) for run in list_runs(root)]
    if sweep:
        rows = [r for r in rows if str(r.get("sweep") or "").startswith(sweep)]
    if cv:
        rows = [r for r in rows if str(r.get("cv") or "").startswith(cv)]
    if status:
        wanted = {s.strip().upper() for s in status.split(",")}
        rows = [r for r in rows if r["status"] in wanted]
    if name:
        pattern = name if any(c in name for c in "*?[") else f"*{name}*"
        rows = [r for r in rows if r["name"] and fnmatch.fnmatch(r["name"], pattern)]
    if since:
        cutoff = parse_since(since)
        rows = [r for r in rows if r["started"] and datetime.fromisoformat(r["started"]) >= cutoff]
    if sort:
        have = [r for r in rows if sort in r["test"]]
        if not have and rows:
            known = sorted({m for r in rows for m in r["test"]})
            raise UsageError(f"--sort: no run has a test metric '{sort}'; known: {', '.join(known) or 'none'}")
        have.sort(key=lambda r: r["test"][sort], reverse=not lower_is_better(sort))
        rows = have
    if limit:
        rows = rows[:limit] if sort else rows[-limit:]  # the best N, or the newest N
    return rows


def read_history(run: Run) -> list[dict]:
    """history.csv as a list of rows with float values ([] when there is none yet)."""
    path = run.file("history.csv")
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(handle)
        ]


def read_config(run: Run) -> dict:
    """The run's resolved config as plain data."""
    try:
        return yaml.safe_load(run.file("config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def flatten(data, prefix: str = "") -> dict:
    """{'train.optimizer.name': 'adam', 'model.layers[0]': 'Flatten', ...}."""
    out: dict = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and any(isinstance(v, (dict, list)) for v in data):
        for index, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{index}]"))
    else:
        out[prefix] = data
    return out


def with_optimizer_defaults(config: dict) -> dict:
    """The config with the optimizer's Keras defaults filled in where it left them out (adam: learning_rate 0.001)."""
    from ..keras_catalog import load_catalog

    optimizer = (config.get("train") or {}).get("optimizer")
    if not isinstance(optimizer, dict):
        return config
    defaults = load_catalog().get("optimizer_defaults", {}).get(str(optimizer.get("name", "")).lower(), {})
    filled = {"name": optimizer.get("name"), **defaults, **{k: v for k, v in optimizer.items() if k != "name"}}
    return {**config, "train": {**config["train"], "optimizer": filled}}


def config_differences(configs: list[dict]) -> dict[str, list]:
    """Keys whose values differ between configs (missing shown as None), in config order.

    An optimizer argument a config left out counts as its Keras default, so a default is compared as a value.
    """
    flat = [flatten(with_optimizer_defaults(c)) for c in configs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1}


def sparkline(values: list[float | None], width: int = 40) -> str:
    """Values as a one-line chart of block characters (resampled to ``width``)."""
    blocks = "▁▂▃▄▅▆▇█"
    clean = [v for v in values if v is not None]
    if not clean:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    low, high = min(clean), max(clean)
    span = (high - low) or 1.0
    return "".join(" " if v is None else blocks[min(7, int((v - low) / span * 7.999))] for v in values)


def run_files(run: Run) -> dict[str, int]:
    """{path inside the run folder: size in bytes} of every file of the run."""
    return {str(p.relative_to(run.path)): p.stat().st_size for p in sorted(run.path.rglob("*")) if p.is_file()}


def read_evaluations(run: Run) -> dict[str, dict]:
    """{name: evaluation} of every data set `dltool evaluate` was run on (evaluations/<name>.json)."""
    found = {}
    for path in sorted(run.file("evaluations").glob("*.json")):
        evaluation = read_json_or_none(path)
        if isinstance(evaluation, dict):
            found[path.stem] = evaluation
    return found


def read_exports(run: Run) -> list[dict]:
    """The run's verified exports (exports.json, written by `dltool export`), oldest first; [] when none."""
    records = read_json_or_none(run.file("exports.json"))
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def show_run(run: Run) -> dict:
    """One run in full: its summary, its data's splits (as run.json records them: sizes, whether streamed, the
    cache), its backbone and its parameters trainable and frozen (per phase, with fine-tuning), its class weights
    (with train.class_weight), its resampling (with data.resample), its decision threshold (with
    train.threshold), its calibration (with train.calibrate), where it is tracked (MLflow: store, run id, synced or not), final metrics, config, per-epoch
    history, evaluations, exports and files."""
    info = _info_or_empty(run)
    return {
        **summarize(run),
        "data": info.get("data"),
        "backbone": info.get("backbone"),
        "parameters": info.get("parameters"),
        "phases": info.get("phases"),
        "class_weight": info.get("class_weight"),  # {"mode": balanced | given, "weights": {class: weight}}
        "resample": info.get("resample"),  # {"mode", "setting", "seed", "before": {class: n}, "after": {class: n}}
        "tracking": info.get("tracking"),  # {"mlflow": {"uri", "experiment_id", "run_id", "synced", ...}}
        "threshold": info.get("threshold"),  # {"value", "rule", "validation": {...}, "test": {...}}
        "calibration": info.get("calibration"),  # train.calibrate: the temperature, figures before and after
        "metrics": read_json_or_none(run.file("metrics.json")),
        "config": read_config(run),
        "history": read_history(run),
        "evaluations": read_evaluations(run),
        "exports": read_exports(run),
        "files": run_files(run),
    }


def compare_runs(runs: list[Run]) -> dict:
    """Several runs side by side: the config values that differ, test metrics, statuses, best epochs, durations."""
    if len(runs) < 2:
        raise UsageError("give at least two runs to compare")
    summaries = [summarize(r) for r in runs]
    metric_names: list[str] = []
    for s in summaries:
        metric_names += [m for m in s["test"] if m not in metric_names]
    return {
        "runs": [s["id"] for s in summaries],
        "config_differences": config_differences([read_config(r) for r in runs]),
        "test": {m: [s["test"].get(m) for s in summaries] for m in metric_names},
        "best_epoch": [s.get("best_epoch") for s in summaries],
        "status": [s["status"] for s in summaries],
        "duration_s": [s.get("duration_s") for s in summaries],
    }


def removable_runs(refs: list[str], root: Path, status: str | None = None) -> list[Run]:
    """The runs ``refs`` name, plus every run whose status is in ``status`` (e.g. FAILED or FAILED,DIED).

    Refuses any run that is still RUNNING (a live process writes into it), and a request that selects nothing.
    """
    from ..runs import RUNNING

    found = [Run.resolve(r, root) for r in refs]
    if status:
        wanted = {s.strip().upper() for s in status.split(",")}
        if RUNNING in wanted:
            raise UsageError("--status RUNNING: a live run cannot be deleted; a run whose process is gone is DIED")
        found += [
            run for run in list_runs(root) if effective_status(_info_or_empty(run)) in wanted and run not in found
        ]
    if not refs and not status:
        raise UsageError("give the runs to delete, or --status (e.g. --status FAILED)")
    live = [r for r in found if r.status == RUNNING]
    if live:
        raise UsageError(f"run {live[0].id} is still RUNNING; stop it before deleting it")
    return found


MAX_LABEL_DIFFERENCES = 3  # config values named in a plot legend entry


def run_labels(runs: list[Run]) -> dict[str, str]:
    """{run id: legend label}: the id and the config values that differ between the runs (the first few)."""
    differences = config_differences([read_config(r) for r in runs])
    labels = {}
    for index, run in enumerate(runs):
        shown = [f"{key.rsplit('.', 1)[-1]}={values[index]}" for key, values in differences.items() if key != "name"][
            :MAX_LABEL_DIFFERENCES
        ]
        labels[run.id] = run.id + (f" ({', '.join(shown)})" if shown else "")
    return labels


def _info_or_empty(run: Run) -> dict:
    try:
        return run.info
    except DltoolError:
        return {}


def plot_runs(refs: list[str], root: Path, output: Path, metrics: list[str] | None = None) -> list[str]:
    """Overlay the runs' curves into ``output`` (.png, .pdf, .svg, .jpg or .jpeg); return the metrics drawn."""
    from ..fileio import check_output_file
    from ..plots import overlay, plot_format

    check_output_file(output, "plot", "-o")  # an unusable path or an unknown suffix is refused before any run is read
    plot_format(output)
    found = [Run.resolve(r, root) for r in refs]
    histories = {r.id: read_history(r) for r in found}
    empty = [run_id for run_id, rows in histories.items() if not rows]
    if empty:
        raise UsageError(f"run {empty[0]} has no history yet")
    labels = run_labels(found)
    drawn = overlay({labels[r.id]: histories[r.id] for r in found}, output, metrics)
    if not drawn:
        raise UsageError(f"the runs share no metric{' named ' + ', '.join(metrics) if metrics else ''} to draw")
    return drawn
