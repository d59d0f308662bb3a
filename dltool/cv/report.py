"""What `dltool cv` reports, as plain data (what --json prints and cv.json holds): each fold, and the mean,
standard deviation and 95 % interval of every test metric over the completed folds."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import DltoolError
from ..fileio import atomic_write_json
from ..runs import Run

RESULT = "cv.json"
STATES = {"COMPLETE": "COMPLETED", "RUNNING": "RUNNING", "WAITING": "WAITING"}


def fold_of(trial) -> tuple[int, int] | None:
    """(fold, repeat) of a trial, from its parameters or (still waiting) its enqueued ones; None: no fold."""
    params = trial.params or trial.system_attrs.get("fixed_params") or {}
    if "fold" not in params or "repeat" not in params:
        return None
    return int(params["fold"]), int(params["repeat"])


def counted(trial) -> bool:
    """Whether a trial's fold is done: its run completed, or failed on its own (not stopped, not died)."""
    state = trial.state.name
    return fold_of(trial) is not None and (state == "COMPLETE" or (state == "FAIL" and "error" in trial.user_attrs))


def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof 1) and the 95 % interval of the mean by Student's t over ``values``
    (one score per fold); std and interval are None for a single value."""
    import numpy as np
    from scipy import stats

    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def _status(trial) -> tuple[str, str | None]:
    attrs = trial.user_attrs
    if trial.state.name == "FAIL":
        if "error" in attrs:
            return "FAILED", attrs["error"]
        if "stale" in attrs:
            return "DIED", attrs["stale"]
        return "INTERRUPTED", attrs.get("interrupted")
    return STATES.get(trial.state.name, trial.state.name), None


def fold_row(trial, runs_root: Path) -> dict:
    """One fold's trial as plain data: fold, repeat, status, run id, reason, and its run's test metrics."""
    number, repeat = fold_of(trial)
    status, reason = _status(trial)
    run_id = trial.user_attrs.get("run_id")
    test = {}
    if status == "COMPLETED" and run_id:
        try:
            metrics = Run.resolve(run_id, Path(runs_root)).read_json("metrics.json")
            test = {
                k: float(v)
                for k, v in (metrics.get("test") or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        except DltoolError as exc:  # a run deleted since: the fold shows why it has no figures
            reason = str(exc)
    return {"fold": number, "repeat": repeat, "status": status, "run": run_id, "reason": reason, "test": test}


def report(cv) -> dict:
    """The cv as plain data: settings, one row per fold (its deciding trial) and each test metric's summary."""
    latest: dict = {}
    for trial in cv.study.get_trials(deepcopy=False):
        fold = fold_of(trial)
        if fold is not None and (counted(trial) or not (fold in latest and counted(latest[fold]))):
            latest[fold] = trial  # the counted trial of a fold, else its latest
    root = Path(cv.settings["runs_dir"])
    rows = [
        fold_row(latest[f], root) if f in latest else {"fold": f[0], "repeat": f[1], "status": "MISSING"}
        for f in cv.folds
    ]
    completed = [r for r in rows if r["status"] == "COMPLETED" and r["test"]]
    names = list(dict.fromkeys(k for r in completed for k in r["test"]))
    metrics = {name: summarize([r["test"][name] for r in completed if name in r["test"]]) for name in names}
    settings = cv.settings
    return {
        "id": cv.id,
        "folder": str(cv.folder),
        "experiment": settings["experiment"],
        "folds": settings["folds"],
        "repeats": settings["repeats"],
        "seed": settings["seed"],
        "group": settings.get("group"),
        "planned": len(cv.folds),
        "done": sum(r["status"] in ("COMPLETED", "FAILED") for r in rows),
        "completed": len(completed),
        "failed": sum(r["status"] == "FAILED" for r in rows),
        "metrics": metrics,
        "rows": rows,
    }


def write_result(cv) -> dict:
    """Write cv.json into the cv folder (atomically) and return it."""
    result = report(cv)
    atomic_write_json(Path(cv.folder) / RESULT, result)
    return result


def compare(results: list[dict]) -> dict:
    """Several cvs' results side by side: per test metric, each cv's summary (None where it lacks the metric)."""
    names = list(dict.fromkeys(name for result in results for name in result["metrics"]))
    return {
        "cvs": [
            {k: r[k] for k in ("id", "experiment", "folds", "repeats", "planned", "completed", "failed")}
            for r in results
        ],
        "metrics": {name: [r["metrics"].get(name) for r in results] for name in names},
    }
