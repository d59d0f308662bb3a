"""What `dltool sweep show` reports, as plain data (what --json prints), and the sweep's summary and plots."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import TrainingError
from ..fileio import atomic_write_json
from ..runs import Run

STATES = {"COMPLETE": "COMPLETED", "FAIL": "FAILED", "PRUNED": "PRUNED", "RUNNING": "RUNNING", "WAITING": "WAITING"}
RANK = {"COMPLETED": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAILED": 4}


def objective_value(run: Run, metric: str) -> float:
    """The objective of a COMPLETED run from its metrics.json (validation for val_*, else training; never test)."""
    metrics = run.read_json("metrics.json")
    split, key = ("validation", metric[4:]) if metric.startswith("val_") else ("train", metric)
    value = (metrics.get(split) or {}).get(key)
    if value is None:
        raise TrainingError(
            f"objective.metric '{metric}' is not in {run.id}'s metrics.json ({split}: "
            f"{', '.join(metrics.get(split) or {}) or 'none'})"
        )
    if not math.isfinite(float(value)):
        raise TrainingError(f"objective.metric '{metric}' is {value} in run {run.id}")
    return float(value)


def counted(trial) -> bool:
    """Whether a finished trial counts toward `trials` (stopped or dead workers' trials do not)."""
    state = trial.state.name
    if state in ("COMPLETE", "PRUNED"):
        return True
    return state == "FAIL" and "error" in trial.user_attrs  # failed on its own, not stopped or died


def progress(sweep) -> tuple[int, int]:
    """(trials done, trials running now) of a :class:`dltool.sweep.run.Sweep`."""
    trials = sweep.study.get_trials(deepcopy=False)
    return sum(counted(t) for t in trials), sum(t.state.name == "RUNNING" for t in trials)


def trial_row(trial, sweep) -> dict:
    """One trial as plain data: number, status, parameters, objective, epochs, run id, reason."""
    status = STATES.get(trial.state.name, trial.state.name)
    attrs = trial.user_attrs
    reason = attrs.get("error") or attrs.get("stale") or attrs.get("interrupted") or attrs.get("duplicate")
    if status == "PRUNED":
        reason = f"pruned at epoch {trial.last_step}" if trial.last_step is not None else "pruned"
    return {
        "trial": trial.number,
        "status": status,
        "params": sweep.sample_view(trial.params),
        "objective": trial.value,
        "epochs": trial.last_step,
        "run": attrs.get("run_id"),
        "reason": reason,
        **({"retry_of": attrs["retry_of"]} if "retry_of" in attrs else {}),
        **({"fold_values": attrs["fold_values"], "runs": attrs.get("runs")} if "fold_values" in attrs else {}),
    }


def ranked_rows(sweep) -> list[dict]:
    """Every trial, best first: completed by objective, then pruned, running, waiting, failed."""
    rows = [trial_row(t, sweep) for t in sweep.study.get_trials(deepcopy=False)]
    sign = -1.0 if sweep.spec.objective.goal == "max" else 1.0
    return sorted(
        rows,
        key=lambda r: (
            RANK.get(r["status"], 5),
            sign * r["objective"] if r["objective"] is not None else 0.0,
            r["trial"],
        ),
    )


def report(sweep) -> dict:
    """The sweep as plain data: its spec, counts, ranked trials and the best run."""
    rows = ranked_rows(sweep)
    done, running = progress(sweep)
    best = next((r for r in rows if r["status"] == "COMPLETED"), None)
    return {
        "id": sweep.id,
        "folder": str(sweep.folder),
        "experiment": sweep.base.name,
        "method": sweep.spec.method,
        "objective": sweep.spec.objective.model_dump(),
        "trials_planned": sweep.spec.trials,
        "trials_done": done,
        "running": running,
        "counts": {s: sum(r["status"] == s for r in rows) for s in RANK if any(r["status"] == s for r in rows)},
        "best": best,
        "rows": rows,
    }


def write_summary(sweep) -> dict:
    """Write summary.json into the sweep folder (every worker does after each trial; atomic) and return it."""
    summary = report(sweep)
    atomic_write_json(Path(sweep.folder) / "summary.json", summary)
    return summary


def write_plots(sweep, summary: dict) -> list[str]:
    """objective.png (objective by trial, best so far) and parameters.png (each parameter against the objective).

    Completed trials only: a pruned trial's last value is from an unfinished run.
    """
    from ..plots import scatter_panels

    done = sorted((r for r in summary["rows"] if r["status"] == "COMPLETED"), key=lambda r: r["trial"])
    if not done:
        return []
    metric, goal = summary["objective"]["metric"], summary["objective"]["goal"]
    trials = [r["trial"] for r in done]
    values = [r["objective"] for r in done]
    best = [max(values[: i + 1]) if goal == "max" else min(values[: i + 1]) for i in range(len(values))]
    folder = Path(sweep.folder)
    scatter_panels(
        [
            {
                "title": f"{metric} by trial ({goal})",
                "x": trials,
                "y": values,
                "xlabel": "trial",
                "ylabel": metric,
                "line": best,
                "line_label": "best so far",
            }
        ],
        folder / "objective.png",
        f"sweep {sweep.id}",
    )
    panels = []
    for key, parameter in sweep.spec.parameters.items():
        xs = [r["params"].get(key) for r in done]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        panels.append(
            {
                "title": key,
                "x": xs if numeric else [str(x) for x in xs],
                "y": values,
                "xlabel": key,
                "ylabel": metric,
                "log_x": parameter.kind == "loguniform",
            }
        )
    scatter_panels(panels, folder / "parameters.png", f"sweep {sweep.id}: parameters against {metric}")
    return ["objective.png", "parameters.png"]
