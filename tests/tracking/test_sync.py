"""`dltool runs sync` (dltool.tracking.sync): a run trained while its store was away, pushed later, once."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import TINY, artifacts, steps
from typer.testing import CliRunner

from dltool.cli.app import app

pytestmark = pytest.mark.slow

ENV = {"NO_COLOR": "1", "COLUMNS": "250"}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.fixture(scope="module")
def unsynced(tmp_path_factory):
    """A run trained by `dltool train --mlflow URI` with its MLflow server away (a closed port on loopback), and
    what the command printed."""
    from dltool.runs import Run

    folder = tmp_path_factory.mktemp("unsynced")
    config = folder / "tracked.yaml"
    config.write_text(TINY)
    uri = f"http://127.0.0.1:{_closed_port()}"
    code, text = _cli("train", str(config), "--mlflow", uri, "--runs-dir", str(folder / "runs"), "--quiet")
    assert code == 0, text
    return Run.resolve("latest", folder / "runs"), folder / "runs", uri, text


def test_a_store_away_costs_one_warning_line_and_the_run_completes(unsynced):
    run, root, uri, printed = unsynced
    assert run.info["status"] == "COMPLETED"
    assert [line for line in printed.splitlines() if "MLflow" in line] == [
        f"warning: MLflow: not synced to {uri} (connection refused); send it with: dltool runs sync {run.id}"
    ]
    warnings = [line for line in run.file("train.log").read_text().splitlines() if "MLflow" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        f"warning: MLflow at {uri} failed (connection refused); training goes on and the run is not synced: "
        f"`dltool runs sync {run.id}` sends it later"
    )
    record = run.info["tracking"]["mlflow"]
    assert record == {
        "uri": uri,
        "experiment": "tracked",
        "experiment_id": None,
        "run_id": None,
        "synced": False,
        "error": "connection refused",
    }
    code, text = _cli("runs", "show", run.id, "--runs-dir", str(root))
    assert code == 0
    assert f"MLflow: not synced to {uri} (connection refused); send it with: dltool runs sync {run.id}" in text


def test_runs_sync_completes_the_record_once(unsynced, mlflow_uri, client):
    run, root, _, _ = unsynced
    code, text = _cli("runs", "sync", run.id, "--mlflow", mlflow_uri, "--runs-dir", str(root))
    assert code == 0, text
    record = run.info["tracking"]["mlflow"]
    assert record["synced"] is True and record["uri"] == mlflow_uri
    run_id = record["run_id"]
    assert text.startswith(f"run {run.id}: synced to MLflow run {run_id} (experiment {record['experiment_id']}) at ")
    assert text.rstrip().endswith(f"metric values, 6 artifacts, the model {record['model_uri']}")
    logged = client.get_run(run_id)
    assert (logged.info.status, logged.data.tags["dltool.status"]) == ("FINISHED", "COMPLETED")
    assert logged.data.params["train.optimizer.learning_rate"] == "0.1"
    for key in ("loss", "val_loss", "mae", "epoch_seconds"):
        assert steps(client, run_id, key) == [1, 2, 3], key
    metrics = json.loads(run.file("metrics.json").read_text())
    assert logged.data.metrics["test_loss"] == pytest.approx(metrics["test"]["loss"])
    assert artifacts(client, run_id) == {
        "config.yaml", "metrics.json", "history.csv", "train.log", "curves.png", "predictions.png",
    }  # fmt: skip

    # Again: nothing is logged, and --all finds nothing left to sync.
    code, text = _cli("runs", "sync", run.id, "--runs-dir", str(root))
    assert code == 0, text
    assert (
        text.strip()
        == f"run {run.id}: already synced, MLflow run {run_id} (experiment {record['experiment_id']}) at {mlflow_uri}"
    )
    assert steps(client, run_id, "loss") == [1, 2, 3]
    assert _cli("runs", "sync", "--all", "--runs-dir", str(root)) == (
        0,
        f"no runs to sync in {root}: every tracked run that has ended is synced\n",
    )
    code, text = _cli("runs", "show", run.id, "--runs-dir", str(root))
    assert f"MLflow: synced, run {run_id} in experiment {record['experiment_id']} at {mlflow_uri}" in text

    # A record marked unsynced (its end never reached the store) is completed in place: same MLflow run, no step
    # twice, no parameter logged again (MLflow refuses a changed one).
    run.update_info(tracking={"mlflow": {**record, "synced": False}})
    code, text = _cli("runs", "sync", "--all", "--runs-dir", str(root))
    assert code == 0, text
    assert f"synced to MLflow run {run_id} " in text and ": 0 metric values" in text
    assert steps(client, run_id, "loss") == [1, 2, 3]
    assert len(client.search_runs([record["experiment_id"]], f"tags.`dltool.run_id` = '{run.id}'")) == 1
    # A record without the MLflow run id (the process died before run.json said it): found by its dltool.run_id tag.
    run.update_info(tracking={"mlflow": {**record, "run_id": None, "synced": False}})
    code, text = _cli("runs", "sync", run.id, "--runs-dir", str(root))
    assert code == 0 and f"synced to MLflow run {run_id} " in text and ": 0 metric values" in text
    assert len(client.search_runs([record["experiment_id"]], f"tags.`dltool.run_id` = '{run.id}'")) == 1
    assert run.info["tracking"]["mlflow"]["run_id"] == run_id


def test_sync_refuses_what_it_cannot_do(unsynced, tmp_path):
    run, root, uri, _ = unsynced
    code, text = _cli("runs", "sync", "--runs-dir", str(root))
    assert (code, text.strip()) == (2, "error: give the runs to sync or --all (not both)")
    code, text = _cli("train", "--resume", run.id, "--mlflow", uri, "--runs-dir", str(root))
    assert code == 2 and "nor can --expect, --deterministic, --devices or --mlflow" in text
    closed = f"http://127.0.0.1:{_closed_port()}"
    code, text = _cli("runs", "sync", run.id, "--mlflow", closed, "--runs-dir", str(root))
    assert code == 1
    assert text.strip() == (
        f"error: run {run.id}: MLflow at {closed} failed (connection refused); the run folder is unchanged: "
        f"run `dltool runs sync {run.id}` again when the store is back"
    )
