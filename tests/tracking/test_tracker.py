"""The MLflow tracker (dltool.tracking.tracker) against real stores: a sqlite file and an `mlflow server`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import artifacts, steps, tiny_config

from dltool.errors import TrainingError, TrainingInterrupted
from dltool.training.observer import Observer, Observers

pytestmark = pytest.mark.slow

EXPECTED_ARTIFACTS = {"config.yaml", "metrics.json", "history.csv", "train.log", "curves.png", "predictions.png"}


def _train(config, root, **kwargs):
    from dltool.commands.train import train

    return train(config, runs_root=root / "runs", **kwargs)


@pytest.fixture(scope="module")
def tracked(mlflow_uri, client, tmp_path_factory):
    """One COMPLETED 3-epoch run logged to the sqlite store, and its MLflow run."""
    config = tiny_config(f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: tracker}}}}\n")
    run = _train(config, tmp_path_factory.mktemp("tracked"))
    return run, client.get_run(run.info["tracking"]["mlflow"]["run_id"])


def test_run_json_records_the_mlflow_run(tracked, mlflow_uri, client):
    run, logged = tracked
    record = run.info["tracking"]["mlflow"]
    experiment = client.get_experiment_by_name("tracker")
    assert record == {
        "uri": mlflow_uri,
        "experiment": "tracker",
        "experiment_id": experiment.experiment_id,
        "run_id": logged.info.run_id,
        "synced": True,
        "model_uri": record["model_uri"],  # tests/tracking/test_mlflow_model.py loads it
    }
    assert record["model_uri"].startswith("models:/m-")
    assert logged.info.status == "FINISHED" and logged.info.run_name == run.id


def test_parameters_and_tags(tracked):
    run, logged = tracked
    params = logged.data.params
    assert params["train.optimizer.learning_rate"] == "0.1"
    assert params["model.layers.0.Dense.units"] == "1"
    assert params["train.metrics"] == '["mae"]'
    assert params["tracking.mlflow.experiment"] == "tracker"
    tags = logged.data.tags
    assert tags["dltool.run_id"] == run.id
    assert tags["dltool.status"] == "COMPLETED"
    assert tags["dltool.config_name"] == "tracked"
    assert tags["dltool.backend"] == run.info["versions"].get("backend", "tensorflow")
    assert tags["dltool.version"]


def test_every_epoch_at_its_step_then_the_final_figures(tracked, client):
    run, logged = tracked
    history = [line.split(",") for line in run.file("history.csv").read_text().splitlines()]
    loss_column = history[0].index("loss")
    for key in ("loss", "mae", "val_loss", "val_mae", "learning_rate", "epoch_seconds"):
        assert steps(client, logged.info.run_id, key) == [1, 2, 3], key
    logged_loss = [m.value for m in sorted(client.get_metric_history(logged.info.run_id, "loss"), key=lambda m: m.step)]
    assert logged_loss == pytest.approx([float(row[loss_column]) for row in history[1:]])
    metrics = json.loads(run.file("metrics.json").read_text())
    assert logged.data.metrics["test_loss"] == pytest.approx(metrics["test"]["loss"])
    assert logged.data.metrics["test_mae"] == pytest.approx(metrics["test"]["mae"])
    assert logged.data.metrics["final_val_loss"] == pytest.approx(metrics["validation"]["loss"])
    assert steps(client, logged.info.run_id, "test_loss") == [3]


def test_the_run_folders_files_as_artifacts(tracked, client):
    run, logged = tracked
    assert artifacts(client, logged.info.run_id) == EXPECTED_ARTIFACTS
    local = client.download_artifacts(logged.info.run_id, "metrics.json", str(run.path.parent))
    assert json.loads(open(local).read()) == json.loads(run.file("metrics.json").read_text())


class _StopAfter(Observer):
    """Stops the run after epoch ``stop``; notes the MLflow run's status at each epoch's end."""

    def __init__(self, client, stop: int | None = None):
        self.client, self.stop, self.seen = client, stop, []
        self.run = None

    def on_run_created(self, run) -> None:
        self.run = run

    def on_epoch_end(self, row: dict) -> None:
        run_id = (self.run.info.get("tracking") or {}).get("mlflow", {}).get("run_id")
        if run_id:  # a resumed run: the tracker's thread marks its MLflow run RUNNING again, soon
            deadline = time.monotonic() + 10
            while self.client.get_run(run_id).info.status != "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.05)
            self.seen.append(self.client.get_run(run_id).info.status)
        if self.stop is not None and int(row["epoch"]) == self.stop:
            from dltool.training.observer import StopRequested

            raise StopRequested("stopped by the test")


def test_an_interrupted_run_is_killed_and_resume_continues_the_same_mlflow_run(mlflow_uri, client, tmp_path):
    from dltool.commands.resume import resume

    config = tiny_config(
        f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: resumed-run}}}}\n", ["train.epochs=4"]
    )
    stopper = _StopAfter(client, stop=2)
    with pytest.raises(TrainingInterrupted) as caught:
        _train(config, tmp_path, observer=stopper)
    run = caught.value.run
    run_id = run.info["tracking"]["mlflow"]["run_id"]
    stopped = client.get_run(run_id)
    assert (stopped.info.status, stopped.data.tags["dltool.status"]) == ("KILLED", "INTERRUPTED")
    assert steps(client, run_id, "loss") == [1, 2]
    assert "train.log" in artifacts(client, run_id)

    watcher = _StopAfter(client)
    resumed = resume(run.id, runs_root=tmp_path / "runs", observer=watcher)
    assert resumed.info["tracking"]["mlflow"]["run_id"] == run_id  # the same MLflow run, not a new one
    assert watcher.seen == ["RUNNING", "RUNNING"]  # epochs 3 and 4, logged while it was RUNNING again
    finished = client.get_run(run_id)
    assert (finished.info.status, finished.data.tags["dltool.status"]) == ("FINISHED", "COMPLETED")
    assert steps(client, run_id, "loss") == [1, 2, 3, 4]  # no step twice
    assert steps(client, run_id, "test_loss") == [4]
    assert len(client.search_runs([finished.info.experiment_id], f"tags.`dltool.run_id` = '{run.id}'")) == 1


class _Breaks(Observer):
    def on_epoch_end(self, row: dict) -> None:
        raise RuntimeError("disk on fire")


def test_a_failing_run_ends_failed(mlflow_uri, client, tmp_path):
    config = tiny_config(f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: failing}}}}\n")
    with pytest.raises(TrainingError, match="disk on fire"):
        _train(config, tmp_path, observer=_Breaks())
    (logged,) = client.search_runs([client.get_experiment_by_name("failing").experiment_id])
    assert (logged.info.status, logged.data.tags["dltool.status"]) == ("FAILED", "FAILED")
    assert {"config.yaml", "train.log"} <= artifacts(client, logged.info.run_id)


def test_observers_pass_every_hook_to_each_in_order():
    heard = []

    class Ear(Observer):
        def __init__(self, name):
            self.name = name

        def on_epoch_end(self, row):
            heard.append((self.name, row["epoch"]))

        def on_run_failed(self, run, reason):
            heard.append((self.name, reason))

    both = Observers(Ear("a"), Ear("b"))
    both.on_epoch_end({"epoch": 1})
    both.on_run_failed(None, "why")
    both.on_batch_end(1, None)  # a hook neither overrides: the base's no-op
    assert heard == [("a", 1), ("b", 1), ("a", "why"), ("b", "why")]


def test_an_observer_that_stops_the_run_does_not_keep_the_epoch_from_the_others():
    from dltool.training.observer import StopRequested

    heard = []

    class Stops(Observer):
        def on_epoch_end(self, row):
            raise StopRequested("pruned")

    class Ear(Observer):
        def on_epoch_end(self, row):
            heard.append(row["epoch"])

    with pytest.raises(StopRequested, match="pruned"):
        Observers(Stops(), Ear()).on_epoch_end({"epoch": 2})
    assert heard == [2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(folder, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:``port`` with its store in ``folder``, once it answers /health."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination", str(folder / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120  # measured: 25-40 s on two busy cores
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            pytest.fail("mlflow server did not answer /health within 120 s")
        time.sleep(0.5)


def _stop(server: subprocess.Popen, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(server.pid, sig)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


class _KillsTheServer(Observer):
    """Kills the MLflow server at the end of epoch 1, once the tracker has created the MLflow run: the store goes
    away mid-run."""

    def __init__(self, server, client):
        self.server, self.client, self.run = server, client, None

    def on_run_created(self, run) -> None:
        self.run = run

    def on_epoch_end(self, row: dict) -> None:
        if int(row["epoch"]) != 1:
            return
        experiment = self.client.get_experiment_by_name("tracked").experiment_id
        deadline = time.monotonic() + 20
        while not self.client.search_runs([experiment], f"tags.`dltool.run_id` = '{self.run.id}'"):
            assert time.monotonic() < deadline, "the tracker did not create its MLflow run within 20 s"
            time.sleep(0.05)
        _stop(self.server, signal.SIGKILL)


@pytest.mark.subprocess
def test_a_real_mlflow_server_and_one_that_dies_mid_run(tmp_path, capsys):
    from mlflow import MlflowClient

    from dltool.tracking.sync import sync_run

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    try:
        run = _train(tiny_config(), tmp_path, tracking_uri=uri)  # `dltool train --mlflow URI`
        record = run.info["tracking"]["mlflow"]
        assert (record["uri"], record["synced"], record["experiment"]) == (uri, True, "tracked")
        client = MlflowClient(tracking_uri=uri)
        logged = client.get_run(record["run_id"])
        assert logged.info.status == "FINISHED" and logged.data.tags["dltool.run_id"] == run.id
        assert steps(client, record["run_id"], "val_loss") == [1, 2, 3]
        assert artifacts(client, record["run_id"]) == EXPECTED_ARTIFACTS
        # MLflow's own "View run ... at URL" lines, written to stdout when a run ends on a server, are kept out of
        # dltool's output.
        assert "View run" not in capsys.readouterr().out

        # The server dies after epoch 1: the run completes, with one warning line, not synced.
        cut = _train(tiny_config(), tmp_path, tracking_uri=uri, observer=_KillsTheServer(server, client))
        assert cut.info["status"] == "COMPLETED"
        cut_record = cut.info["tracking"]["mlflow"]
        assert cut_record["synced"] is False and cut_record["run_id"]
        warnings = [line for line in cut.file("train.log").read_text().splitlines() if "warning: MLflow" in line]
        assert len(warnings) == 1 and "`dltool runs sync" in warnings[0]

        # Back up: sync completes the same MLflow run.
        server = _start_server(tmp_path, port)
        done = sync_run(cut)
        assert (done["run_id"], done["already_synced"]) == (cut_record["run_id"], False)
        completed = client.get_run(cut_record["run_id"])
        assert (completed.info.status, completed.data.tags["dltool.status"]) == ("FINISHED", "COMPLETED")
        for key in ("loss", "val_loss", "test_loss"):
            assert steps(client, cut_record["run_id"], key) == ([3] if key == "test_loss" else [1, 2, 3]), key
        assert artifacts(client, cut_record["run_id"]) == EXPECTED_ARTIFACTS
        assert cut.info["tracking"]["mlflow"]["synced"] is True
    finally:
        _stop(server)
