"""The MLflow tracker: an Observer that logs a run to MLflow while it trains, and never stops it.

Parameters and tags go at the start, each epoch's metrics through a background queue (:mod:`.sender`), the final
figures when the run is tested, and the artifacts, a completed run's model (:mod:`.model`) and the end status
(FINISHED, FAILED, KILLED) when it ends. Any
MLflow or network failure is caught: the run trains on, train.log gets one warning line, and run.json's
``tracking.mlflow.synced`` is false until `dltool runs sync` completes the record.
"""

from __future__ import annotations

import threading

from ..config import ExperimentConfig, config_to_dict
from ..runs import COMPLETED, FAILED, INTERRUPTED, RUNNING, Run, log_time
from ..training.observer import Observer
from .record import (
    FINAL_STATUS,
    TAG_PARENT,
    TAG_STATUS,
    artifact_files,
    epoch_metrics,
    final_metrics,
    flatten_params,
    history_rows,
    metric_steps,
    run_tags,
)
from .sender import MetricSender
from .settings import TrackingSettings
from .store import Store, describe_failure

OPEN_WAIT_S = 15.0  # the longest the start of a fit waits for its MLflow run to be opened
FLUSH_SECONDS = 30.0  # the longest the end of a run waits for queued metrics to reach the store


class MlflowTracker(Observer):
    """Logs one run to the MLflow store ``settings`` names (continuing ``settings.run_id`` when it is set)."""

    def __init__(self, settings: TrackingSettings, config: ExperimentConfig):
        self.settings, self.config = settings, config
        self.run: Run | None = None
        self.store: Store | None = None
        self.run_id = settings.run_id
        self.experiment_id: str | None = None
        self.sender: MetricSender | None = None
        self.problem: str | None = None  # the first failure; nothing more is sent after it
        self.logged: dict[str, set[int]] = {}  # the steps of each metric the MLflow run had when it was opened
        self._warned = False
        self.model: dict = {}  # log_run_model's answer: the model's URI, its registered version or why not
        # MLflow's import takes 1-2 s of CPU: begun now, while the data loads and the model builds. Only the import:
        # the store is first touched when the run exists (a sqlite file created for a run that never starts, or
        # cut off by the process's exit mid-creation, would be left behind).
        self._importing = threading.Thread(target=_import_mlflow, name="dltool-mlflow-import", daemon=True)
        self._importing.start()

    # ---- hooks
    def on_run_created(self, run) -> None:
        self.run = run
        self._record(synced=False)
        # The MLflow run is opened (MLflow imported, the run created, its parameters logged) in the sender's thread,
        # and the fit waits for that, at most OPEN_WAIT_S: done during the first epochs, it took the interpreter
        # from the training loop and slowed a 5 s fit by 20-40 % (benchmarks/RESULTS-tracking.md). A store slower
        # than that is left to the sender, and training starts.
        self.sender = MetricSender(self._send, start=self._open)
        self.sender.started.wait(OPEN_WAIT_S)

    def on_epoch_end(self, row: dict) -> None:
        epoch = int(row["epoch"])
        if self.sender is not None:
            self.sender.put([(key, value, epoch) for key, value in epoch_metrics(row).items()])
        self._notice_sender()

    def on_tested(self, run, metrics: dict, expectations: list[dict]) -> None:
        if self.sender is not None:
            self.sender.put([(key, value, int(metrics["epochs"])) for key, value in final_metrics(metrics).items()])

    def on_run_completed(self, run, model, data) -> None:
        self._end(COMPLETED)

    def on_run_failed(self, run, reason: str) -> None:
        self._end(FAILED)

    def on_run_interrupted(self, run, reason: str) -> None:
        self._end(INTERRUPTED)

    # ---- the work (_open and _send run in the sender's thread)
    def _open(self) -> None:
        """Create the MLflow run (or take up the one a resumed run was logged in), log its parameters and tags, and
        the epochs before a resumed run's checkpoint that it lacks."""
        run = self.run
        self._importing.join()
        store = Store(self.settings.uri)
        info = run.info
        tags = run_tags(run, info, self.config.name, RUNNING)
        parent = self.settings.parent
        if parent is not None:  # a sweep's trial or a cv's fold: a child of the sweep's or cv's MLflow run
            tags.update({TAG_PARENT: parent.run_id, **parent.tags})
        taken = store.take_run(self.run_id, self.settings.experiment, run.id, tags)
        # Known from here on, so run.json names the MLflow run even if the store goes away in the next call.
        self.run_id, self.experiment_id = taken.run_id, taken.experiment_id
        if taken.existed:
            store.set_running(taken.run_id)
        params = flatten_params(config_to_dict(self.config))
        store.log_params(taken.run_id, {**params, **(parent.params if parent else {})}, taken.params)
        measured = metric_steps(history_rows(run)) if info.get("epochs_done") else []  # a resumed run's epochs
        store.log_missing_metrics(taken.run_id, measured, taken.steps)
        logged = {key: set(steps) for key, steps in taken.steps.items()}
        for key, _, step in measured:
            logged.setdefault(key, set()).add(step)
        self.logged = logged  # no (metric, step) twice: a resumed run's epochs after its checkpoint were logged
        self.store = store

    def _send(self, batch: list[tuple[str, float, int]]) -> None:
        fresh = [(key, value, step) for key, value, step in batch if step not in self.logged.get(key, ())]
        self.store.log_metrics(self.run_id, fresh)

    def _end(self, status: str) -> None:
        """Send what is queued, then the artifacts, a completed run's model, the status tag and the end status, all
        in the sender's thread within FLUSH_SECONDS; record whether all went."""
        if self.run is None:
            return
        try:
            if self.sender is not None:
                drained = self.sender.close(FLUSH_SECONDS, finish=lambda: self._finish(status))
                self._notice_sender()
                if not drained and self.problem is None:
                    self.problem = f"the run's record not all sent within {FLUSH_SECONDS:.0f} s"
        except Exception as exc:  # noqa: BLE001  (the run has ended already: tracking must not change that)
            self._fail(exc)
        try:
            self._warn_once()
            self._record(synced=self.problem is None)
        except OSError:
            pass

    def _finish(self, status: str) -> None:
        """The end's uploads (in the sender's thread, after the last metrics)."""
        if self.store is None:
            return
        self.store.log_artifacts(self.run_id, artifact_files(self.run))
        if status == COMPLETED:
            from .model import log_run_model

            self.model = log_run_model(self.store, self.run_id, self.run, self.settings.register)
            if self.model.get("register_error"):
                self.run.append_log(
                    f"{log_time()} warning: MLflow at {self.settings.shown_uri}: the model is logged but not "
                    f"registered as {self.settings.register} ({self.model['register_error']})"
                )
        self.store.set_tags(self.run_id, {TAG_STATUS: status})
        self.store.end(self.run_id, FINAL_STATUS[status])

    def _fail(self, exc: BaseException) -> None:
        if self.problem is None:
            self.problem = describe_failure(exc)

    def _notice_sender(self) -> None:
        if self.sender is not None and self.sender.error is not None and self.problem is None:
            self.problem = self.sender.error
        self._warn_once()

    def _warn_once(self) -> None:
        """One line in train.log for the first failure, however many epochs follow it."""
        if self.problem is None or self._warned or self.run is None:
            return
        self._warned = True
        self.run.append_log(
            f"{log_time()} warning: MLflow at {self.settings.shown_uri} failed ({self.problem}); training goes on "
            f"and the run is not synced: `dltool runs sync {self.run.id}` sends it later"
        )

    def _parent_record(self) -> dict:
        """The sweep's or cv's MLflow run this run is nested in, for run.json (`runs sync` nests it again)."""
        parent = self.settings.parent
        if parent is None:
            return {}
        return {"parent_run_id": parent.run_id, "parent_tags": parent.tags, "parent_params": parent.params}

    def _record(self, synced: bool) -> None:
        """run.json's ``tracking.mlflow``: the store (without a password), experiment, MLflow run id, synced."""
        record = {
            "uri": self.settings.shown_uri,
            "experiment": self.settings.experiment,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "synced": synced,
            **self._parent_record(),
            **self.model,
            **({"error": self.problem} if self.problem else {}),
        }
        self.run.update_info(tracking={"mlflow": record})


def _import_mlflow() -> None:
    try:
        import mlflow  # noqa: F401  (imported ahead: the sender's thread finds it in sys.modules)
    except ImportError:  # reported where the tracker needs it
        pass
