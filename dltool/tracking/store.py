"""The MLflow calls dltool makes, through ``MlflowClient`` only (no fluent API: no global active run to clash with a
user's own, and several runs in one process stay apart). MLflow is imported when a Store is made."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .record import TAG_RUN_ID
from .settings import fail_fast

# MLflow's log_batch limits. MLflow 3's client splits a larger batch itself; dltool stays within them so that a
# call's size does not depend on the client version.
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


NETWORK_FAILURES = (  # what urllib3's retry report says, in words a user reads
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
    ("Temporary failure in name resolution", "unknown host"),
    ("Max retries exceeded", "unreachable"),
)


def describe_failure(exc: BaseException) -> str:
    """A short line for an MLflow or network error (MLflow's own runs to a paragraph of retry detail)."""
    text = str(exc).strip()
    for marker, words in NETWORK_FAILURES:
        if marker in text:
            return words
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@dataclass(frozen=True)
class Taken:
    """The MLflow run a dltool run is logged in: its ids, and what it has already (``existed``: it was there)."""

    run_id: str
    experiment_id: str
    params: dict[str, str]
    steps: dict[str, set[int]]
    existed: bool


class Store:
    """One MLflow tracking store (``uri``), as dltool writes to it."""

    def __init__(self, uri: str):
        fail_fast()
        # A new sqlite store announces its table creation at INFO, in the middle of the training display.
        # And logging a model says it validates its input example, with progress bars for files copied locally.
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration", "mlflow.pyfunc", "mlflow.models"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # Ending a run on a server writes two "View run ... at" lines straight to stdout, from the sender thread, into
        # the middle of dltool's own output (which already names the MLflow run); a user's own setting is kept.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if it does not exist (another process may create it first)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self._artifact_location(name))
        except MlflowException:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _artifact_location(self, experiment: str) -> str | None:
        """A sqlite store's artifacts beside its file (mlruns/<experiment>), not in whatever folder the run started
        from (MLflow's default, ./mlruns); a server's: its own default."""
        prefix = "sqlite:///"
        if not self.uri.startswith(prefix) or self.uri.endswith(":memory:"):
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", experiment)
        return str(Path(self.uri[len(prefix) :]).parent / "mlruns" / safe)

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> str:
        """A new RUNNING MLflow run with ``tags``; its id."""
        return self.client.create_run(experiment_id, tags=tags, run_name=tags.get("mlflow.runName")).info.run_id

    def find_run(self, run_id: str | None):
        """The MLflow run ``run_id`` (its RunInfo and data), or None when this store has no such run."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def find_tagged(self, experiment_id: str, dltool_run_id: str):
        """The MLflow run of experiment ``experiment_id`` tagged with dltool's run id (one a tracker started before
        its run.json could say so), or None."""
        return self.find_tagged_with(experiment_id, TAG_RUN_ID, dltool_run_id)

    def find_tagged_with(self, experiment_id: str, tag: str, value: str):
        """The MLflow run of experiment ``experiment_id`` whose tag ``tag`` is ``value`` (a sweep's parent run by
        its sweep id), or None."""
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1)
        return found[0] if found else None

    def take_run(self, run_id: str | None, experiment: str, dltool_run_id: str, tags: dict[str, str]) -> Taken:
        """The MLflow run of dltool run ``dltool_run_id``: ``run_id`` (as run.json recorded it) if this store has it,
        else the one tagged with the dltool run id in ``experiment`` (started before run.json could record it),
        else a new one. An existing run gets ``tags`` and says which parameters and metric steps it has."""
        found = self.find_run(run_id)
        if found is not None and found.data.tags.get(TAG_RUN_ID) != dltool_run_id:
            found = None  # another run's id (a store made anew): this run gets its own
        if found is None:
            experiment_id = self.experiment_id(experiment)
            found = self.find_tagged(experiment_id, dltool_run_id)
            if found is None:
                return Taken(self.create_run(experiment_id, tags), experiment_id, {}, {}, existed=False)
        taken_id = found.info.run_id
        self.set_tags(taken_id, tags)
        steps = self.logged_steps(taken_id, found.data.metrics.keys())
        return Taken(taken_id, found.info.experiment_id, dict(found.data.params), steps, existed=True)

    def set_running(self, run_id: str) -> None:
        """Mark a finished MLflow run RUNNING again (a resumed run continues in it)."""
        self.client.update_run(run_id, status="RUNNING")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_params(self, run_id: str, params: dict[str, str], logged: dict[str, str] | None = None) -> None:
        """Log ``params`` not in ``logged`` (a run's parameters cannot change once logged), 100 per call."""
        from mlflow.entities import Param

        missing = [Param(key, value) for key, value in params.items() if key not in (logged or {})]
        for start in range(0, len(missing), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=missing[start : start + PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, measured: list[tuple[str, float, int]]) -> None:
        """Log (key, value, step) triples, 1000 per call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value, step in measured]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_BATCH])

    def logged_steps(self, run_id: str, keys) -> dict[str, set[int]]:
        """{key: the steps already logged} for each metric ``key`` of the run."""
        return {key: {metric.step for metric in self.client.get_metric_history(run_id, key)} for key in keys}

    def log_missing_metrics(
        self, run_id: str, measured: list[tuple[str, float, int]], logged: dict[str, set[int]]
    ) -> int:
        """Log the (key, value, step) triples whose step ``logged`` (from :meth:`logged_steps`) lacks for that key;
        returns how many were logged."""
        missing = [(key, value, step) for key, value, step in measured if step not in logged.get(key, ())]
        self.log_metrics(run_id, missing)
        return len(missing)

    def log_artifacts(self, run_id: str, files: list[Path]) -> None:
        """Upload ``files`` to the run's artifacts (a file of the same name is replaced)."""
        for path in files:
            self.client.log_artifact(run_id, str(path))

    def end(self, run_id: str, status: str) -> None:
        """End the MLflow run: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)

    # ---- the run's model (dltool.tracking.model)
    def logged_model(self, run_id: str, name: str):
        """The READY logged model ``name`` of MLflow run ``run_id``, or None (none yet, or one whose upload broke
        off: it is logged anew)."""
        run = self.client.get_run(run_id)
        found = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
        )
        ready = [model for model in found if str(model.status) in ("READY", "LoggedModelStatus.READY")]
        return ready[0] if ready else None

    def create_logged_model(self, run_id: str, name: str, tags: dict[str, str]):
        """A new (PENDING) logged model ``name`` of MLflow run ``run_id``."""
        run = self.client.get_run(run_id)
        return self.client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=run_id, tags=tags, model_type="dltool"
        )

    def upload_logged_model(self, model_id: str, run_id: str, folder: Path) -> None:
        """Upload an MLflow model ``folder`` as logged model ``model_id``, mark it READY and list it among the
        run's outputs (where the UI and runs:/<run id>/<name> find it)."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        self.client.log_model_artifacts(model_id, str(folder))
        self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])

    def register(self, name: str, logged, run_id: str, tags: dict[str, str]) -> int:
        """Register ``logged`` (a LoggedModel) as a new version of ``name`` (created if need be) with ``tags``; the
        version number. A version registered from this MLflow run already is returned, not made again."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        for version in self.client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'"):
            return int(version.version)
        # The source is the artifacts' location: a models:/ URI would be resolved through MLflow's global
        # tracking URI, not this store's.
        version = self.client.create_model_version(
            name, source=logged.artifact_location, run_id=run_id, tags=tags, model_id=logged.model_id
        )
        return int(version.version)
