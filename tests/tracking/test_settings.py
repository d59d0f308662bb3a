"""Which store a run is logged to, and the refusals before any run folder exists (dltool.tracking.settings)."""

from __future__ import annotations

import sys

import pytest

from dltool.config import config_from_text
from dltool.errors import ConfigError
from dltool.tracking.settings import (
    absolute_sqlite,
    check_tracking,
    fail_fast,
    password_free,
    tracking_settings,
)
from dltool.training.observer import Observer

BASE = """
name: tiny
data: {source: synthetic, n_samples: 32, weights: 2, bias: 1}
model: {input_shape: [1], layers: [{Dense: {units: 1}}]}
train: {loss: mse, epochs: 1}
"""


def _config(extra: str = ""):
    return config_from_text(BASE + extra, source="tiny.yaml")


def test_no_tracking_unless_asked():
    assert tracking_settings(_config()) is None


def test_the_uri_comes_from_the_option_then_the_config_then_the_record_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config("tracking: {mlflow: true}\n")
    default = tracking_settings(config)
    assert default.uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # MLflow 3's default, made absolute
    assert default.experiment == "tiny" and default.run_id is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_settings(config).uri == "http://tracking.example:5000"
    recorded = {"uri": "http://recorded:5000", "experiment": "old", "run_id": "abc"}
    resumed = tracking_settings(config, recorded=recorded)
    assert (resumed.uri, resumed.experiment, resumed.run_id) == ("http://recorded:5000", "old", "abc")
    assert tracking_settings(_config(), recorded=recorded).experiment == "old"  # tracked by --mlflow before
    named = _config("tracking: {mlflow: {uri: 'http://config:5000', experiment: exp}}\n")
    assert tracking_settings(named).uri == "http://config:5000"
    assert tracking_settings(named, override_uri="sqlite:////srv/m.db").uri == "sqlite:////srv/m.db"
    assert tracking_settings(_config(), override_uri="http://cli:5000").experiment == "tiny"


def test_a_recorded_uri_without_its_password_is_not_used(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://me:secret@db/mlflow")
    recorded = {"uri": "postgresql://me:***@db/mlflow", "run_id": "abc"}
    assert tracking_settings(_config(), recorded=recorded).uri == "postgresql://me:secret@db/mlflow"


def test_uris_shown_without_passwords_and_sqlite_files_made_absolute(tmp_path, monkeypatch):
    assert password_free("postgresql://me:secret@db:5432/mlflow") == "postgresql://me:***@db:5432/mlflow"
    assert password_free("http://host:5000") == "http://host:5000"
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite("sqlite:///sub/m.db") == f"sqlite:///{tmp_path.resolve()}/sub/m.db"
    assert absolute_sqlite("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_sqlite("http://host:5000") == "http://host:5000"


def test_network_calls_fail_fast_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    fail_fast()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


def test_missing_mlflow_is_refused_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    check_tracking(_config())  # not asked: nothing to refuse
    with pytest.raises(ConfigError) as caught:
        check_tracking(_config("tracking: {mlflow: true}\n"))
    message = str(caught.value)
    assert message.startswith("tiny.yaml:6: tracking.mlflow: logging the run to MLflow needs MLflow, which is not")
    assert "pip install" in message and "tracking]" in message and message.endswith("(or: pip install mlflow)")
    with pytest.raises(ConfigError) as caught:
        check_tracking(_config(), override_uri="sqlite:///m.db")
    assert str(caught.value).startswith(
        "--mlflow sqlite:///m.db (logging the run to MLflow) needs MLflow, which is not installed: pip install"
    )


def test_train_refuses_before_any_run_folder_exists(monkeypatch, tmp_path):
    from dltool.commands.train import train

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match="needs MLflow, which is not installed"):
        train(_config("tracking: {mlflow: {experiment: x}}\n"), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "tracking: {mlflow: {url: 'http://h:5000'}}\n",
            "tiny.yaml:6: tracking.mlflow.url: unknown key 'url'; did you mean 'uri'?",
        ),
        ("tracking: {mlflow: {experiment: ''}}\n", "tiny.yaml:6: tracking.mlflow.experiment:"),
        ("tracking: {wandb: true}\n", "tiny.yaml:6: tracking.wandb: unknown key 'wandb'"),
    ],
)
def test_config_errors_by_text(extra, message):
    with pytest.raises(ConfigError) as caught:
        _config(extra)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.subprocess
def test_mlflow_is_imported_only_when_a_run_is_tracked():
    import subprocess

    code = (
        "import sys, dltool.cli.app, dltool.commands.train, dltool.commands.resume, dltool.tracking.tracker, "
        "dltool.tracking.sync; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert shown.stdout.strip() == "[]", shown.stderr


def test_only_process_zero_gets_a_tracker():
    from dltool.distributed import LOCAL, ProcessGroup
    from dltool.tracking import tracking_observer
    from dltool.tracking.tracker import MlflowTracker
    from dltool.training.observer import Observer, Observers

    class Worker(ProcessGroup):
        size, rank = 2, 1

    display = Observer()
    config = _config("tracking: {mlflow: true}\n")
    both = tracking_observer(display, config, LOCAL)
    assert isinstance(both, Observers) and both.observers[0] is display
    assert isinstance(both.observers[1], MlflowTracker)
    assert tracking_observer(display, config, Worker()) is display  # another process trains alongside, silently
    assert tracking_observer(display, _config(), LOCAL) is display  # not asked


def test_a_tracker_touches_no_store_before_its_run_exists(monkeypatch, tmp_path):
    # It imports MLflow ahead, in a thread; a sqlite store (the default one here, in the current folder) is
    # created only once the run is: a run refused after the tracker was made leaves no mlflow.db behind.
    from dltool.distributed import LOCAL
    from dltool.tracking import tracking_observer

    monkeypatch.chdir(tmp_path)
    tracker = tracking_observer(Observer(), _config("tracking: {mlflow: true}\n"), LOCAL).observers[1]
    tracker._importing.join(60)
    assert "mlflow" in sys.modules
    assert list(tmp_path.iterdir()) == []


def test_what_runs_show_says_of_a_tracked_run():
    from dltool.cli.display.training import mlflow_line

    live = {"uri": "http://h:5000", "experiment": "tiny", "experiment_id": None, "run_id": None, "synced": False}
    assert mlflow_line("r1", live, "RUNNING") == "MLflow: logging to http://h:5000 (experiment tiny)"
    assert mlflow_line("r1", live, "DIED") == "MLflow: not synced to http://h:5000; send it with: dltool runs sync r1"
    away = {**live, "error": "connection refused"}
    assert mlflow_line("r1", away, "RUNNING") == (
        "MLflow: not synced to http://h:5000 (connection refused); send it with: dltool runs sync r1"
    )
    done = {**live, "experiment_id": "3", "run_id": "abc", "synced": True}
    assert mlflow_line("r1", done, "COMPLETED") == "MLflow: synced, run abc in experiment 3 at http://h:5000"
    trial = {**done, "parent_run_id": "p9", "parent_tags": {"dltool.sweep_id": "s"}}
    assert mlflow_line("r1", trial, "COMPLETED") == (
        "MLflow: synced, run abc in experiment 3 at http://h:5000, nested in run p9"
    )


def test_the_registered_model_name_from_the_config_or_a_resumed_runs_record():
    assert tracking_settings(_config("tracking: {mlflow: true}\n")).register is None
    named = tracking_settings(_config("tracking: {mlflow: {register: digits-classifier}}\n"))
    assert named.register == "digits-classifier"
    recorded = {"uri": "sqlite:////srv/m.db", "run_id": "abc", "registered": {"name": "old", "version": 3}}
    assert tracking_settings(_config(), recorded=recorded).register == "old"
    with pytest.raises(ConfigError) as caught:
        _config("tracking: {mlflow: {register: team/digits}}\n")
    assert str(caught.value) == (
        "tiny.yaml:6: tracking.mlflow.register: expected a registered model name without '/' or ':' (MLflow refuses "
        "them), received 'team/digits'"
    )
