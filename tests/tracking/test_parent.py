"""Sweeps and cvs as MLflow parent runs, their trials and folds nested child runs (dltool.tracking.parent), against
the session's sqlite store: in process, with worker processes, resumed, and a store that is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, artifacts, steps
from e2e_support import IRIS_CONFIG, REPO

pytest.importorskip("optuna", reason="sweeps need optuna: pip install -e '.[sweep]'")

from dltool.cv import run as cvs  # noqa: E402
from dltool.sweep import run as sweeps  # noqa: E402

pytestmark = pytest.mark.slow

SPACE = "trials: 3\nmethod: grid\nparameters:\n  train.batch_size: {choice: [8, 16, 32]}\n"


def write_sweep(folder: Path, experiment: str, tracking: str = "", space: str = SPACE) -> Path:
    """A 3-trial grid sweep over the tiny regression config (2 epochs), with ``tracking`` (a tracking section)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracked.yaml").write_text(TINY.replace("epochs: 3", "epochs: 2") + tracking)
    (folder / "sweep.yaml").write_text(f"name: {experiment}\nexperiment: tracked.yaml\n" + space)
    return folder / "sweep.yaml"


def family(client, experiment: str):
    """(the parent runs, the child runs) of ``experiment``, children by start time."""
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    return parents, [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def test_a_three_trial_sweep_is_one_parent_run_with_three_nested_children(tmp_path, mlflow_uri, client):
    path = write_sweep(tmp_path, "nested", f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: nested}}}}\n")
    sweep = sweeps.create_sweep(path, runs_root=tmp_path / "runs")
    with sweeps.tracked(sweep, runs_root=tmp_path / "runs") as parent:
        sweeps.work(sweep, runs_root=tmp_path / "runs")
    assert parent.problem is None
    parents, children = family(client, "nested")
    assert len(parents) == 1 and len(children) == 3
    top = parents[0]
    assert top.info.run_name == sweep.id and top.info.status == "FINISHED"
    assert top.data.tags["dltool.sweep_id"] == sweep.id and top.data.tags["dltool.kind"] == "sweep"
    assert top.data.params["method"] == "grid" and top.data.params["objective.metric"] == "val_loss"
    assert top.data.params["parameters.train.batch_size.choice"] == "[8, 16, 32]"
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {top.info.run_id}
    assert sorted(child.data.params["dltool.trial"] for child in children) == ["0", "1", "2"]
    assert sorted(child.data.params["train.batch_size"] for child in children) == ["16", "32", "8"]
    assert all(child.data.tags["dltool.sweep_id"] == sweep.id for child in children)
    # The best trial, as summary.json names it, tagged on the parent with its MLflow run; its objective a metric.
    best = json.loads((sweep.folder / "summary.json").read_text())["best"]
    best_child = next(child for child in children if child.data.params["dltool.trial"] == str(best["trial"]))
    assert top.data.tags["dltool.best_trial"] == str(best["trial"])
    assert top.data.tags["dltool.best_run_id"] == best["run"] == best_child.data.tags["dltool.run_id"]
    assert top.data.tags["dltool.best_mlflow_run_id"] == best_child.info.run_id
    assert top.data.metrics["best_val_loss"] == pytest.approx(best["objective"])
    assert "summary.json" in artifacts(client, top.info.run_id)
    record = json.loads((sweep.folder / "mlflow.json").read_text())
    assert record == {"uri": mlflow_uri, "experiment": "nested", "run_id": top.info.run_id}


def test_a_resumed_sweep_takes_up_its_parent_run_again(tmp_path, mlflow_uri, client):
    path = write_sweep(tmp_path, "resumed", f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: resumed}}}}\n")
    sweep = sweeps.create_sweep(path, runs_root=tmp_path / "runs")
    with sweeps.tracked(sweep, runs_root=tmp_path / "runs"):
        sweeps.work(sweep, runs_root=tmp_path / "runs", max_trials=1)  # stopped after one trial
    first, _ = family(client, "resumed")
    assert len(first) == 1 and first[0].info.status == "FINISHED"
    again = sweeps.open_sweep(sweep.id, runs_root=tmp_path / "runs")
    with sweeps.tracked(again, runs_root=tmp_path / "runs") as parent:
        assert client.get_run(parent.run_id).info.status == "RUNNING"
        sweeps.work(again, runs_root=tmp_path / "runs")
    parents, children = family(client, "resumed")
    assert [p.info.run_id for p in parents] == [first[0].info.run_id] == [parent.run_id]
    assert len(children) == 3 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.run_id}
    assert parents[0].info.status == "FINISHED"
    # The best objective once per session of the sweep: step 0 when it first ended, step 1 after the resume.
    assert steps(client, parent.run_id, "best_val_loss") == [0, 1]
    best = json.loads((again.folder / "summary.json").read_text())["best"]
    assert parents[0].data.metrics["best_val_loss"] == pytest.approx(best["objective"])


def test_an_interrupted_sweep_ends_its_parent_killed(tmp_path, mlflow_uri, client):
    from dltool.errors import TrainingInterrupted

    path = write_sweep(tmp_path, "killed", f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: killed}}}}\n")
    sweep = sweeps.create_sweep(path, runs_root=tmp_path / "runs")
    with pytest.raises(TrainingInterrupted), sweeps.tracked(sweep, runs_root=tmp_path / "runs"):
        raise TrainingInterrupted("interrupted", None)
    parents, children = family(client, "killed")
    assert len(parents) == 1 and not children
    assert parents[0].info.status == "KILLED" and parents[0].data.tags["dltool.status"] == "KILLED"


def test_a_store_that_is_away_costs_one_warning_and_the_sweep_completes(tmp_path):
    away = "http://127.0.0.1:9"  # the discard port: nothing listens there
    path = write_sweep(
        tmp_path, "away", space="trials: 1\nmethod: grid\nparameters:\n  train.batch_size: {choice: [8]}\n"
    )
    sweep = sweeps.create_sweep(path, runs_root=tmp_path / "runs")
    with sweeps.tracked(sweep, mlflow_uri=away, runs_root=tmp_path / "runs") as parent:
        sweeps.work(sweep, runs_root=tmp_path / "runs")
    assert parent.take_warning() == (
        "MLflow at http://127.0.0.1:9 failed (connection refused); the sweep goes on, its trials try to log on "
        "their own and `dltool runs sync` sends them later"
    )
    assert parent.take_warning() is None  # once
    summary = json.loads((sweep.folder / "summary.json").read_text())
    assert summary["trials_done"] == 1 and summary["best"] is not None


@pytest.mark.subprocess
def test_sweep_workers_nest_their_trials_under_one_parent(tmp_path, mlflow_uri, client):
    path = write_sweep(tmp_path, "workers", "tracking: {mlflow: {experiment: workers}}\n")  # the store: --mlflow's
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "dltool", "sweep", str(path), "--workers", "2", "--mlflow", mlflow_uri]
    done = subprocess.run(
        [*command, "--runs-dir", str(tmp_path / "runs"), "-q"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    parents, children = family(client, "workers")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.data.params["dltool.trial"] for c in children) == ["0", "1", "2"]
    # Each trial trained in a worker process, which read the parent's id from the study and recorded it.
    assert len({c.data.tags["dltool.run_id"] for c in children}) == 3
    for child in children:
        record = json.loads((tmp_path / "runs" / child.data.tags["dltool.run_id"] / "run.json").read_text())
        assert record["tracking"]["mlflow"]["parent_run_id"] == parents[0].info.run_id
        assert record["tracking"]["mlflow"]["synced"] is True
    assert parents[0].data.tags["dltool.best_mlflow_run_id"] in {c.info.run_id for c in children}


def test_a_three_fold_cv_is_one_parent_run_with_the_folds_nested_and_the_summary_logged(tmp_path, mlflow_uri, client):
    config = tmp_path / "iris.yaml"
    tracking = f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: folds}}}}\n"
    config.write_text(IRIS_CONFIG.replace("epochs: 5", "epochs: 1") + tracking)
    cv = cvs.create_cv(config, 3, runs_root=tmp_path / "runs")
    with cvs.tracked(cv) as parent:
        cvs.work(cv, runs_root=tmp_path / "runs")
    assert parent.problem is None
    parents, children = family(client, "folds")
    assert len(parents) == 1 and len(children) == 3
    top = parents[0]
    assert top.info.run_name == cv.id and top.info.status == "FINISHED"
    assert top.data.tags["dltool.cv_id"] == cv.id and top.data.tags["dltool.kind"] == "cv"
    assert top.data.params["folds"] == "3" and top.data.params["repeats"] == "1"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {top.info.run_id}
    assert sorted(c.data.params["dltool.fold"] for c in children) == ["1", "2", "3"]
    result = json.loads((cv.folder / "cv.json").read_text())
    for name in ("loss", "accuracy"):
        summary = result["metrics"][name]
        assert top.data.metrics[f"{name}_mean"] == pytest.approx(summary["mean"])
        assert top.data.metrics[f"{name}_std"] == pytest.approx(summary["std"])
        assert top.data.metrics[f"{name}_ci95_low"] == pytest.approx(summary["ci95"][0])
        assert top.data.metrics[f"{name}_ci95_high"] == pytest.approx(summary["ci95"][1])
    assert "cv.json" in artifacts(client, top.info.run_id)


def test_runs_sync_nests_a_trial_that_was_not_synced_under_its_parent(tmp_path, mlflow_uri, client):
    from conftest import tiny_config

    from dltool.commands.train import train
    from dltool.tracking.parent import ParentRun
    from dltool.tracking.settings import Nesting, TrackingSettings
    from dltool.tracking.sync import sync_run

    parent = ParentRun(TrackingSettings(mlflow_uri, "tracked"), "sweep", "synced-sweep")
    assert parent.open(None, {"trials": 1}) is not None
    nesting = Nesting(parent.run_id, {"dltool.sweep_id": "synced-sweep", "dltool.trial": "0"}, {"dltool.trial": "0"})
    # The trial's store away while it trained (the discard port): its run is not synced.
    run = train(tiny_config(), runs_root=tmp_path / "runs", tracking_uri="http://127.0.0.1:9", tracking_parent=nesting)
    assert run.info["tracking"]["mlflow"]["synced"] is False
    done = sync_run(run, uri=mlflow_uri)
    child = client.get_run(done["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.run_id
    assert child.data.tags["dltool.sweep_id"] == "synced-sweep" and child.data.params["dltool.trial"] == "0"
    assert child.data.tags["dltool.run_id"] == run.id
