"""Tracking: a run's record sent to an experiment tracker (MLflow) as it trains, or later with `dltool runs sync`.

One concept, seven rooms: :mod:`.settings` (which store, whether MLflow is installed; no MLflow import),
:mod:`.record` (what a run folder says, as parameters, tags, metrics and artifacts; no MLflow import),
:mod:`.store` (the MLflow client calls), :mod:`.model` (the run's model as an MLflow pyfunc model, whose
"models from code" file is :mod:`.pyfunc_model`) and, on top, :mod:`.tracker` (the observer that logs a live run),
:mod:`.sync` (a finished run pushed later) and :mod:`.parent` (a sweep or cv as a parent run, its trials or folds
nested under it). MLflow is imported only when a run asks for tracking.
"""

from __future__ import annotations

from .settings import check_tracking, tracking_settings

__all__ = ["check_tracking", "tracking_observer", "tracking_settings"]


def tracking_observer(
    observer, config, group, *, override_uri: str | None = None, recorded: dict | None = None, parent=None
):
    """``observer`` with an MLflow tracker beside it when ``config`` asks for MLflow, else ``observer`` itself.

    Only process 0 of ``group`` (a :class:`~dltool.distributed.ProcessGroup`) logs: it owns the run folder.
    ``recorded`` is run.json's ``tracking.mlflow`` record of a resumed run (its store and MLflow run id);
    ``parent`` (a :class:`~dltool.tracking.settings.Nesting`) nests the run in a sweep's or cv's MLflow run.
    """
    settings = tracking_settings(config, override_uri=override_uri, recorded=recorded, parent=parent)
    if settings is None or not group.is_leader:
        return observer
    from ..training.observer import Observers
    from .tracker import MlflowTracker

    return Observers(observer, MlflowTracker(settings, config))
