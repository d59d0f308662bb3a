"""A sweep or a cv as one MLflow parent run, its trials or folds nested under it as child runs.

The process that starts or resumes the sweep (or cv) opens the parent run; the children are opened by the trials'
own trackers (:mod:`.tracker`), in whatever worker process runs them, from the parent's id that the sweep records
in its study. A store that is away costs one warning (the caller shows :attr:`ParentRun.problem`): nothing more is
sent to it, and the trials train on.
"""

from __future__ import annotations

import math
from pathlib import Path

from .record import TAG_STATUS, flatten_params
from .settings import Nesting, TrackingSettings
from .store import Store, describe_failure

TAG_KIND = "dltool.kind"  # sweep or cv
PARENT_STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


class ParentRun:
    """The MLflow run of sweep or cv ``group_id`` (``kind``: 'sweep' or 'cv') in the store ``settings`` names."""

    def __init__(self, settings: TrackingSettings, kind: str, group_id: str):
        self.settings, self.kind, self.group_id = settings, kind, group_id
        self.id_tag = f"dltool.{kind}_id"
        self.run_id: str | None = None
        self.store: Store | None = None
        self.problem: str | None = None  # the first failure; nothing more is sent after it
        self._warned = False

    @property
    def warning(self) -> str | None:
        """The one line to show when the store failed, else None."""
        if self.problem is None:
            return None
        return (
            f"MLflow at {self.settings.shown_uri} failed ({self.problem}); the {self.kind} goes on, its "
            f"{'trials' if self.kind == 'sweep' else 'folds'} try to log on their own and `dltool runs sync` "
            "sends them later"
        )

    def take_warning(self) -> str | None:
        """:attr:`warning` the first time it is asked for after a failure, else None: one line per sweep or cv."""
        if self.problem is None or self._warned:
            return None
        self._warned = True
        return self.warning

    def open(self, recorded_run_id: str | None, params: dict) -> str | None:
        """Take up the parent run ``recorded_run_id`` (a resumed sweep), else the one tagged with this sweep's id,
        else create it; mark it RUNNING and log ``params`` (flattened). Returns its id, None if the store failed."""
        try:
            store = Store(self.settings.uri)
            tags = {"mlflow.runName": self.group_id, self.id_tag: self.group_id, TAG_KIND: self.kind}
            found = store.find_run(recorded_run_id)
            if found is None or found.data.tags.get(self.id_tag) != self.group_id:
                experiment_id = store.experiment_id(self.settings.experiment)
                found = store.find_tagged_with(experiment_id, self.id_tag, self.group_id)
            if found is None:
                self.run_id = store.create_run(store.experiment_id(self.settings.experiment), tags)
                logged: dict = {}
            else:
                self.run_id, logged = found.info.run_id, dict(found.data.params)
                store.set_tags(self.run_id, tags)
                store.set_running(self.run_id)
            store.set_tags(self.run_id, {TAG_STATUS: "RUNNING"})
            store.log_params(self.run_id, flatten_params(params), logged)
            self.store = store
        except Exception as exc:  # noqa: BLE001  (the store away: one warning, the trials train on)
            self._fail(exc)
            return None
        return self.run_id

    def end(
        self,
        status: str,
        *,
        tags: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        artifacts: list[Path] = (),
    ) -> None:
        """Log ``tags``, the finite ``metrics`` (at step 0, or one step past those a resumed run logged before)
        and ``artifacts``, then end the run: ``status`` is 'completed' (FINISHED), 'interrupted' (KILLED) or
        'failed' (FAILED). Nothing is sent after a failure."""
        if self.store is None or self.problem is not None:
            return
        try:
            if tags:
                self.store.set_tags(self.run_id, tags)
            finite = {k: float(v) for k, v in (metrics or {}).items() if _finite(v)}
            # Step 0 the first time the run ends, the next step after each resume: one value per session of the
            # sweep or cv in the metric's history, never two at one step.
            logged = self.store.logged_steps(self.run_id, finite)
            step = 1 + max((max(steps) for steps in logged.values() if steps), default=-1)
            self.store.log_metrics(self.run_id, [(key, value, step) for key, value in finite.items()])
            self.store.log_artifacts(self.run_id, [path for path in artifacts if Path(path).is_file()])
            final = PARENT_STATUS[status]
            self.store.set_tags(self.run_id, {TAG_STATUS: final})
            self.store.end(self.run_id, final)
        except Exception as exc:  # noqa: BLE001  (the sweep has ended already: tracking must not change that)
            self._fail(exc)

    def record(self) -> dict:
        """What the sweep or cv folder records: the store (without a password), experiment and parent run id."""
        return {
            "uri": self.settings.shown_uri,
            "experiment": self.settings.experiment,
            "run_id": self.run_id,
            **({"error": self.problem} if self.problem else {}),
        }

    def _fail(self, exc: BaseException) -> None:
        if self.problem is None:
            self.problem = describe_failure(exc)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- a sweep or cv (anything with an Optuna ``study``, a ``folder``, an ``id`` and a ``base`` config)
STUDY_ATTR = "mlflow"  # the study's user attribute: the parent run, for every process that runs trials
RECORD = "mlflow.json"  # the same in the sweep's or cv's folder


def open_parent(group, kind: str, params: dict, override_uri: str | None = None) -> ParentRun | None:
    """The parent run of sweep or cv ``group`` when its base config asks for MLflow, or ``override_uri``
    (`--mlflow`), or it was tracked before (a resumed sweep: the same parent is taken up again); else None.

    Its id goes into the study (worker processes nest their trials under it) and the folder's mlflow.json.
    Raises ConfigError when MLflow is asked for but not installed.
    """
    from ..fileio import atomic_write_json
    from .settings import check_tracking, tracking_settings

    recorded = dict(group.study.user_attrs.get(STUDY_ATTR) or {})
    settings = tracking_settings(group.base, override_uri=override_uri, recorded=recorded)
    if settings is None:
        return None
    check_tracking(group.base, override_uri if override_uri is not None else recorded.get("uri"))
    parent = ParentRun(settings, kind, group.id)
    parent.open(recorded.get("run_id"), params)
    record = parent.record()
    if parent.run_id is None and recorded.get("run_id"):
        record["run_id"] = recorded["run_id"]  # the store away now: the parent recorded before is still the one
    group.study.set_user_attr(STUDY_ATTR, record)
    atomic_write_json(Path(group.folder) / RECORD, record)
    return parent


def child_tracking(group, kind: str, tags: dict[str, str], params: dict[str, str], uri: str | None = None):
    """(tracking URI, :class:`Nesting`) for a trial or fold run of ``group`` (``kind``: 'sweep' or 'cv'), with its
    own ``tags`` and ``params`` (the trial or fold number): (None, None) when the group is not
    tracked. ``uri`` is the store's full URI where this process knows it (`--mlflow` given here); a worker reads
    the study's, or $MLFLOW_TRACKING_URI when that one had a password (left out of what is recorded)."""
    from .settings import default_uri

    recorded = group.study.user_attrs.get(STUDY_ATTR)
    if not recorded:
        return None, None
    if uri is None:
        uri = recorded["uri"] if ":***@" not in recorded["uri"] else default_uri()
    run_id = recorded.get("run_id")
    nesting = Nesting(run_id, {f"dltool.{kind}_id": group.id, **tags}, params) if run_id else None
    return uri, nesting
