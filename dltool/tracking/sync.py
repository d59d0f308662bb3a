"""`dltool runs sync`: push a run folder's whole record to MLflow after the fact; nothing when it is there already.

A run logged while its store was away, or one trained without tracking, gets the same record a live run would
have had (:mod:`.record`): parameters, tags, every epoch's metrics from history.csv, the final and test figures,
the artifacts, a completed run's model (registered when the config asks) and its end status. An MLflow run the tracker started is completed in place: only the parameters
and metric steps it lacks are logged.
"""

from __future__ import annotations

from pathlib import Path

from ..config import config_from_text, config_to_dict
from ..errors import RunStateError, TrackingError
from ..runs import COMPLETED, RUNNING, Run, effective_status, list_runs, now_iso
from .model import log_run_model
from .record import (
    FINAL_STATUS,
    TAG_PARENT,
    TAG_RUN_ID,
    artifact_files,
    final_metrics,
    flatten_params,
    history_rows,
    metric_steps,
    run_tags,
)
from .settings import default_uri, require_mlflow, tracking_settings
from .store import Store, describe_failure


def recorded_tracking(run: Run) -> dict:
    """run.json's ``tracking.mlflow`` record (empty for a run that was never logged to MLflow)."""
    return (run.info.get("tracking") or {}).get("mlflow") or {}


def runs_to_sync(root: Path) -> list[Run]:
    """`--all`: every run that was tracked, is not synced, and has ended (a RUNNING run's tracker is still at it)."""
    found = []
    for run in list_runs(root):
        try:
            record = recorded_tracking(run)
            status = run.status
        except Exception:  # noqa: BLE001  (an unreadable run.json: `dltool runs` shows it as UNREADABLE)
            continue
        if record and not record.get("synced") and status != RUNNING:
            found.append(run)
    return found


def sync_run(run: Run, uri: str | None = None) -> dict:
    """Make the MLflow record of ``run`` complete; returns what was done.

    ``uri`` (default: the store the run recorded, else the config's, else $MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db). Returns {"run", "uri", "experiment_id", "run_id", "already_synced", "metrics" (values
    logged), "artifacts", "model" (:func:`~.model.log_run_model`'s answer; empty for a run that did not
    complete)}. Raises RunStateError for a RUNNING run, TrackingError when the store fails (the run
    folder is then unchanged).
    """
    require_mlflow("dltool runs sync", path=None)
    info = run.info
    status = effective_status(info)
    if status == RUNNING:
        raise RunStateError(f"run {run.id} is still RUNNING; sync it once it has ended (its tracker logs it meanwhile)")
    config = config_from_text(run.file("config.yaml").read_text(encoding="utf-8"), source=str(run.file("config.yaml")))
    recorded = recorded_tracking(run)
    settings = tracking_settings(config, override_uri=uri, recorded=recorded) or tracking_settings(
        config, override_uri=default_uri()
    )
    same_store = recorded.get("uri") == settings.shown_uri
    try:
        store = Store(settings.uri)
        found = store.find_run(recorded.get("run_id")) if same_store else None
        done = {"run": run.id, "uri": settings.shown_uri, "already_synced": False}
        if found is not None and found.data.tags.get(TAG_RUN_ID) == run.id and recorded.get("synced"):
            return {**done, "experiment_id": found.info.experiment_id, "run_id": found.info.run_id,
                    "already_synced": True, "metrics": 0, "artifacts": 0, "model": {}}  # fmt: skip
        tags = run_tags(run, info, config.name, status)
        parent = settings.parent
        nested = parent is not None and store.find_run(parent.run_id) is not None
        if nested:  # a sweep's trial or a cv's fold: a child of its parent run, when this store has that run
            tags.update({TAG_PARENT: parent.run_id, **parent.tags})
        taken = store.take_run(recorded.get("run_id") if same_store else None, settings.experiment, run.id, tags)
        experiment_id, run_id = taken.experiment_id, taken.run_id
        params = {**flatten_params(config_to_dict(config)), **(parent.params if nested else {})}
        store.log_params(run_id, params, taken.params)
        measured = metric_steps(history_rows(run))
        metrics = _read_metrics(run)
        if metrics:
            measured += [(key, value, int(metrics.get("epochs") or 0)) for key, value in final_metrics(metrics).items()]
        sent = store.log_missing_metrics(run_id, measured, taken.steps)
        files = artifact_files(run)
        store.log_artifacts(run_id, files)
        model = log_run_model(store, run_id, run, settings.register) if status == COMPLETED else {}
        store.end(run_id, FINAL_STATUS.get(status, "FAILED"))
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001  (MLflow's and the network's errors, as one message)
        raise TrackingError(
            f"run {run.id}: MLflow at {settings.shown_uri} failed ({describe_failure(exc)}); the run folder is "
            f"unchanged: run `dltool runs sync {run.id}` again when the store is back"
        ) from None
    record = {
        "uri": settings.shown_uri,
        "experiment": settings.experiment,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "synced": True,
        "synced_at": now_iso(),
        **{key: recorded[key] for key in ("parent_run_id", "parent_tags", "parent_params") if key in recorded},
        **model,
    }
    run.update_info(tracking={**(info.get("tracking") or {}), "mlflow": record})
    return {
        **done,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "metrics": sent,
        "artifacts": len(files),
        "model": model,
    }


def _read_metrics(run: Run) -> dict | None:
    import json

    try:
        return json.loads(run.file("metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
