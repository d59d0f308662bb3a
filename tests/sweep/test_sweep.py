"""dltool sweep: the sweep file, samplers, trials as runs, failures, pruning, kill -9 and --resume (issue 12)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import IRIS_CONFIG, REPO, run_cli

pytest.importorskip("optuna", reason="sweeps need optuna: pip install -e '.[sweep]'")

from dltool.errors import ConfigError, DltoolError  # noqa: E402
from dltool.sweep.spec import load_sweep  # noqa: E402


def write_sweep(folder: Path, body: str, experiment: str = IRIS_CONFIG, epochs: int = 1) -> Path:
    """A sweep file over the iris config (``epochs`` epochs) in ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "iris.yaml").write_text(experiment.replace("epochs: 5", f"epochs: {epochs}"))
    path = folder / "sweep.yaml"
    path.write_text("experiment: iris.yaml\n" + body)
    return path


# --------------------------------------------------------------------------- the sweep file (no TensorFlow)
def test_a_grid_sweep_counts_its_own_trials(tmp_path):
    path = write_sweep(
        tmp_path,
        "method: grid\nparameters:\n  train.batch_size: {choice: [8, 16, 32]}\n"
        "  model.layers[0].Dense.units: {choice: [4, 8]}\n",
    )
    spec, base = load_sweep(path)
    assert spec.trials == 6 and base.name == "iris-test"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "method: tpe\ntrials: 3\nparameters:\n  train.batch_size: {choise: [8, 16]}\n",
            "sweep.yaml:5: parameters.train.batch_size.choise: unknown key 'choise'; did you mean 'choice'?",
        ),
        (
            "method: tpe\ntrials: 3\nparameters:\n  model.layers[0].Dense.unitz: {choice: [4, 8]}\n",
            "sweep.yaml:5: parameters.model.layers[0].Dense.unitz: unknown argument 'unitz' for Dense; did you mean 'units'? "
            "(with model.layers[0].Dense.unitz=4)",
        ),
        (
            "method: tpe\ntrials: 3\nparameters:\n  train.epochs: {int: [0, 3]}\n",
            "sweep.yaml:5: parameters.train.epochs: expected an integer >= 1, received 0; epochs: 0 goes with a fine_tune "
            "phase, which then starts at once (with train.epochs=0)",
        ),
        (
            "method: tpe\ntrials: 3\nparameters:\n  model.layers[7].Dense.units: {choice: [4]}\n",
            "sweep.yaml:5: parameters.model.layers[7].Dense.units: no list item [7] at model.layers[7]",
        ),
        (
            "method: grid\nparameters:\n  train.optimizer.learning_rate: {loguniform: [0.001, 0.1]}\n",
            "grid needs choice: [...] for every parameter; train.optimizer.learning_rate has loguniform",
        ),
        ("method: random\nparameters:\n  train.batch_size: {choice: [8]}\n", "method random needs trials: N"),
        (
            "objective: {metric: test_accuracy, goal: max}\ntrials: 2\nparameters:\n  train.batch_size: {choice: [8]}\n",
            "sweep.yaml:2: objective: objective.metric 'test_accuracy' would tune on the test split",
        ),
        (
            "mehtod: tpe\ntrials: 2\nparameters:\n  train.batch_size: {choice: [8]}\n",
            "sweep.yaml:2: mehtod: unknown key 'mehtod'; did you mean 'method'?",
        ),
        (
            "trials: 2\nparameters:\n  train.optimizer.learning_rate: {loguniform: [0, 0.1]}\n",
            "sweep.yaml:4: parameters.train.optimizer.learning_rate: loguniform: expected low > 0 (a log scale), received 0",
        ),
    ],
)
def test_bad_sweep_files_are_refused_before_any_trial(tmp_path, body, message):
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, body))
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "sweep.yaml"))


def test_a_base_config_that_validates_on_its_test_split_is_refused_for_a_val_objective(tmp_path):
    experiment = IRIS_CONFIG.replace("validation: 0.2", "validation: test")
    path = write_sweep(tmp_path, "method: tpe\ntrials: 2\nparameters:\n  train.batch_size: {choice: [8]}\n", experiment)
    with pytest.raises(ConfigError, match="would tune on the test split; hold out part of the training data"):
        load_sweep(path)
    path.write_text(path.read_text() + "  data.validation: {choice: [0.1]}\n")
    assert load_sweep(path)[0].trials == 2  # a held-out split from the sweep's own parameters is fine


@pytest.mark.parametrize(
    "config, lines",
    [
        ("digits_mlp.yaml", ["model.layers[0].Dense.units: {choice: [32, 64, 128]}", "metric: val_accuracy"]),
        (
            "mnist_mlp.yaml",
            ["model.layers[1].Dense.units: {choice: [64, 128, 256]}", "data.validation: {choice: [0.1]}"],
        ),
        ("lstm_forecaster.yaml", ["model.layers[0].LSTM.units: {choice: [16, 32, 64]}", "metric: val_loss, goal: min"]),
        ("linear_regression.yaml", ["data.validation: {choice: [0.2]}", "metric: val_loss"]),
        (
            "cats_vs_dogs_xception.yaml",
            ["train.fine_tune.learning_rate: {loguniform: [1.0e-6, 1.0e-4]}", "metric: val_accuracy"],
        ),
    ],
)
def test_init_sweep_writes_a_sweep_file_that_validates(tmp_path, config, lines):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    target = tmp_path / "sweeps" / "tune.yaml"
    target.parent.mkdir()
    result = CliRunner().invoke(app, ["init", "sweep", str(target), "--experiment", str(REPO / "configs" / config)])
    assert result.exit_code == 0, result.output
    assert f"run it with: dltool sweep {target}" in result.output
    text = target.read_text()
    assert all(line in text for line in lines), text
    spec, _ = load_sweep(target)
    assert spec.method == "tpe" and "train.optimizer.learning_rate" in spec.parameters


def test_init_sweep_without_an_experiment_says_how(tmp_path):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    result = CliRunner().invoke(app, ["init", "sweep", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2
    assert "needs the config to tune: dltool init sweep --experiment CONFIG" in result.output
    assert not (tmp_path / "s.yaml").exists()


def test_a_database_password_is_left_out_of_what_is_written():
    from dltool.sweep.storage import url_without_password

    assert url_without_password("postgresql://bob:s3%40t@db.example:5432/opt?sslmode=require") == (
        "postgresql://bob@db.example:5432/opt?sslmode=require"
    )
    assert url_without_password("postgresql://bob:pw@[::1]/db") == "postgresql://bob@[::1]/db"
    assert url_without_password("postgresql://bob@host/db") == "postgresql://bob@host/db"


def test_a_missing_optuna_names_the_pip_command(monkeypatch):
    from dltool.sweep.storage import import_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(
        DltoolError,
        match=r'sweeps need Optuna, which is not installed: pip install -e "\.\[sweep\]" \(or: pip install optuna\)',
    ):
        import_optuna()


def _sampled(tmp_path, method: str, seed: int) -> list[dict]:
    """The parameters a fresh sweep samples for 12 trials, told a value that depends on them (no training)."""
    from dltool.sweep.run import create_sweep

    path = write_sweep(
        tmp_path,
        f"method: {method}\ntrials: 12\nseed: {seed}\nparameters:\n"
        "  train.optimizer.learning_rate: {loguniform: [0.0001, 0.1]}\n"
        "  model.layers[0].Dense.units: {int: [2, 64]}\n"
        "  train.batch_size: {choice: [8, 16, 32]}\n",
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    sampled = []
    for _ in range(12):
        trial = sweep.study.ask()
        params = sweep.sample(trial)
        sweep.study.tell(trial, params["train.optimizer.learning_rate"] * params["model.layers[0].Dense.units"])
        sampled.append(params)
    return sampled


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_random_and_tpe_are_reproducible_with_a_seed(tmp_path, method):
    first, again = _sampled(tmp_path / "a", method, 3), _sampled(tmp_path / "b", method, 3)
    assert first == again
    assert _sampled(tmp_path / "c", method, 4) != first


# --------------------------------------------------------------------------- trials that train (slow)
@pytest.mark.slow
def test_grid_runs_exactly_the_product_as_tagged_runs(tmp_path):
    from dltool.commands.runs_report import select_runs
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    units, batches = [4, 8], [16, 32]
    path = write_sweep(
        tmp_path,
        "method: grid\nobjective: {metric: val_accuracy, goal: max}\nparameters:\n"
        f"  model.layers[0].Dense.units: {{choice: {units}}}\n"
        f"  train.batch_size: {{choice: {batches}}}\n",
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    assert work(sweep, runs_root=tmp_path / "runs") == 4
    summary = write_summary(sweep)
    seen = sorted(
        (r["params"]["model.layers[0].Dense.units"], r["params"]["train.batch_size"]) for r in summary["rows"]
    )
    assert seen == sorted(itertools.product(units, batches))
    assert summary["trials_done"] == 4 and summary["counts"] == {"COMPLETED": 4}
    runs = select_runs(tmp_path / "runs", sweep=sweep.id)
    assert sorted(r["trial"] for r in runs) == [0, 1, 2, 3]
    assert {r["id"] for r in runs} == {r["run"] for r in summary["rows"]}
    assert (sweep.folder / "summary.json").is_file() and (sweep.folder / "study.journal").is_file()
    assert "experiment: experiment.yaml" in (sweep.folder / "sweep.yaml").read_text()


@pytest.mark.slow
def test_one_failing_trial_does_not_stop_the_others(tmp_path):
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    # 5 output units validate as a config, but iris has 3 classes: that trial fails before its run exists.
    path = write_sweep(tmp_path, "method: grid\nparameters:\n  model.layers[1].Dense.units: {choice: [5, 3]}\n")
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    work(sweep, runs_root=tmp_path / "runs")
    rows = {r["params"]["model.layers[1].Dense.units"]: r for r in write_summary(sweep)["rows"]}
    assert rows[3]["status"] == "COMPLETED"
    assert rows[5]["status"] == "FAILED"
    assert "the last layer has 5 outputs but the data has 3 classes" in rows[5]["reason"]


@pytest.mark.slow
def test_a_pruned_trial_stops_before_its_last_epoch(tmp_path):
    from dltool.runs import Run
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    path = write_sweep(
        tmp_path,
        "method: random\ntrials: 2\nobjective: {metric: val_accuracy, goal: max}\n"
        "pruner: {name: median, startup_trials: 1, warmup_epochs: 0}\nparameters:\n"
        "  train.optimizer.learning_rate: {choice: [0.05, 0.000001]}\n",
        epochs=4,
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    key = "train.optimizer.learning_rate"
    sweep.study.enqueue_trial({key: 0.05})  # a good trial first: the median the hopeless one is compared with
    sweep.study.enqueue_trial({key: 0.000001})
    work(sweep, runs_root=tmp_path / "runs")
    rows = {r["params"][key]: r for r in write_summary(sweep)["rows"]}
    assert rows[0.05]["status"] == "COMPLETED"
    pruned = rows[0.000001]
    assert pruned["status"] == "PRUNED" and pruned["epochs"] < 4
    info = Run(tmp_path / "runs" / pruned["run"]).info
    assert info["status"] == "INTERRUPTED" and info["error"].startswith("pruned after")


@pytest.mark.slow
def test_a_sweep_over_the_fine_tuning_learning_rate_trains_each_trial_at_its_rate(tmp_path):
    from e2e_support import BACKBONE_CONFIG, write_photos

    from dltool.runs import Run
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    photos = write_photos(tmp_path / "photos")
    experiment = BACKBONE_CONFIG.format(path=json.dumps(str(photos)), weights="none")
    key = "train.fine_tune.learning_rate"
    path = write_sweep(
        tmp_path,
        "method: grid\nobjective: {metric: val_accuracy, goal: max}\nparameters:\n"
        f"  {key}: {{choice: [0.001, 0.0001]}}\n",
        experiment=experiment,
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    assert work(sweep, runs_root=tmp_path / "runs") == 2
    rows = write_summary(sweep)["rows"]
    assert sorted(r["params"][key] for r in rows) == [0.0001, 0.001]
    for row in rows:
        assert row["status"] == "COMPLETED"
        run = Run(tmp_path / "runs" / row["run"])
        assert run.info["phases"][-1]["learning_rate"] == row["params"][key]
        *_, last = run.file("history.csv").read_text().splitlines()
        assert last.split(",")[1] == "2"  # the fine-tuning phase ran, at the trial's rate
        assert f"learning rate {row['params'][key]:g}" in run.file("train.log").read_text()


def _wait_for(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _running_run(runs: Path):
    """run.json of a RUNNING run that has finished an epoch, if there is one."""
    for path in runs.glob("*/run.json"):
        info = json.loads(path.read_text())
        if info.get("status") == "RUNNING" and (path.parent / "history.csv").is_file():
            return {**info, "folder": path.parent}
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").is_file() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.slow
def test_hyperband_prunes_hopeless_trials_at_its_rungs(tmp_path, monkeypatch):
    import optuna

    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    # Which bracket a trial lands in is a hash of the sweep id and the trial number; pin every trial to the
    # first (most aggressive) bracket so the test does not depend on the id.
    monkeypatch.setattr(optuna.pruners.HyperbandPruner, "_get_bracket_id", lambda self, study, trial: 0)
    path = write_sweep(
        tmp_path,
        "method: random\ntrials: 4\nobjective: {metric: val_accuracy, goal: max}\npruner: hyperband\n"
        "parameters:\n  train.optimizer.learning_rate: {choice: [0.05, 0.000001]}\n",
        epochs=9,
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    key = "train.optimizer.learning_rate"
    for value in (0.05, 0.05, 0.000001, 0.000001):
        sweep.study.enqueue_trial({key: value})
    work(sweep, runs_root=tmp_path / "runs")
    rows = sorted(write_summary(sweep)["rows"], key=lambda r: r["trial"])
    assert [r["status"] for r in rows[:2]] == ["COMPLETED", "COMPLETED"] and rows[0]["epochs"] == 9
    assert [r["status"] for r in rows[2:]] == ["PRUNED", "PRUNED"]
    assert all(r["epochs"] < 9 for r in rows[2:])  # stopped at a rung (1 or 3 epochs), not at the end


@pytest.mark.subprocess
@pytest.mark.slow
def test_kill_9_of_the_sweep_stops_its_worker_and_resume_ends_with_exactly_the_planned_trials(tmp_path):
    import optuna

    from dltool.sweep.run import open_sweep

    path = write_sweep(
        tmp_path,
        "method: random\ntrials: 3\nseed: 1\nparameters:\n  model.layers[0].Dense.units: {int: [4, 16]}\n",
        epochs=15,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "sweep", str(path), "--runs-dir", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    runs = tmp_path / "runs"
    second = _wait_for(
        lambda: len(list(runs.glob("*/run.json"))) >= 2 and _running_run(runs), 120, "the second trial's first epoch"
    )
    process.send_signal(signal.SIGKILL)  # the sweep process, in the middle of the second trial
    process.wait()
    # Its worker is told (SIGTERM) and stops cleanly: no orphan trains on, no run is left RUNNING.
    _wait_for(lambda: not _pid_alive(second["pid"]), 30, f"worker {second['pid']} to stop")
    assert json.loads((second["folder"] / "run.json").read_text())["status"] == "INTERRUPTED"
    sweep_id = next((tmp_path / "sweeps").iterdir()).name
    junit = tmp_path / "sweep.xml"
    result = run_cli(
        "sweep",
        "--resume",
        sweep_id,
        "--runs-dir",
        str(tmp_path / "runs"),
        "--junit",
        str(junit),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    import xml.etree.ElementTree as ElementTree

    cases = list(ElementTree.parse(junit).getroot().iter("testcase"))
    study = open_sweep(sweep_id, runs_root=tmp_path / "runs").study
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.COMPLETE) == 3
    assert len(cases) == len(study.trials)  # one testcase per trial, the stopped one included
    shown = run_cli("sweep", "show", sweep_id, "--json", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, env=env)
    assert json.loads(shown.stdout)["trials_done"] == 3


@pytest.mark.subprocess
@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_killed_and_resumed_two_worker_random_sweep_never_runs_a_parameter_set_twice(tmp_path):
    from dltool.sweep.report import counted
    from dltool.sweep.run import open_sweep

    path = write_sweep(
        tmp_path,
        "method: random\ntrials: 6\nseed: 0\nparameters:\n"
        "  train.optimizer.learning_rate: {loguniform: [0.001, 0.1]}\n  model.layers[0].Dense.units: {int: [4, 16]}\n",
        epochs=3,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "dltool", "sweep", "--workers", "2", "--runs-dir", str(runs)]
    process = subprocess.Popen(
        [*command, str(path)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def completed_runs():
        return sum(json.loads(p.read_text())["status"] == "COMPLETED" for p in runs.glob("*/run.json"))

    _wait_for(lambda: completed_runs() >= 3, 180, "three completed trials")
    process.send_signal(signal.SIGKILL)
    process.wait()
    sweep_id = next((tmp_path / "sweeps").iterdir()).name
    result = run_cli("sweep", "--resume", sweep_id, *command[4:], cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    trials = open_sweep(sweep_id, runs_root=runs).study.trials
    assert sum(counted(t) for t in trials) == 6
    done = [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 6 and len(set(done)) == 6, "a parameter set ran twice"


@pytest.mark.subprocess
@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_cleanly_and_leaves_it_resumable(tmp_path):
    path = write_sweep(
        tmp_path, "method: random\ntrials: 3\nparameters:\n  model.layers[0].Dense.units: {int: [4, 16]}\n", epochs=200
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "sweep", str(path), "--runs-dir", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/history.csv")):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    sweep_id = next((tmp_path / "sweeps").iterdir()).name
    assert f"sweep {sweep_id} interrupted; finish it with: dltool sweep --resume {sweep_id}" in stderr
    (run_json,) = (tmp_path / "runs").glob("*/run.json")
    info = json.loads(run_json.read_text())
    assert info["status"] == "INTERRUPTED" and info["sweep"] == sweep_id and info["trial"] == 0
    summary = json.loads((tmp_path / "sweeps" / sweep_id / "summary.json").read_text())
    assert summary["trials_done"] == 0 and summary["rows"][0]["status"] == "FAILED"
    assert summary["rows"][0]["reason"].startswith(f"run {run_json.parent.name} interrupted by SIGINT")


def cannot_run_postgres_here(reason: str) -> None:
    """Skip a PostgreSQL test with ``reason``; in CI (CI=true) fail instead, so a runner that lost PostgreSQL
    says so loudly rather than passing with the test skipped."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the PostgreSQL test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own on a loopback port, in a temporary folder (initdb + pg_ctl)."""
    import importlib.util
    import shutil
    import socket
    import tempfile

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        cannot_run_postgres_here("PostgreSQL's initdb and pg_ctl are not on PATH (Debian package postgresql)")
    if importlib.util.find_spec("psycopg2") is None:
        cannot_run_postgres_here("a PostgreSQL --storage needs psycopg2: pip install psycopg2-binary")
    folder = Path(tempfile.mkdtemp(prefix="dltool-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            cannot_run_postgres_here("running as root and no runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    password_file = folder / "password"
    password_file.write_text("s3cret:pw\n")  # a password that needs quoting in a URL; sweeps must not write it
    if as_user:
        shutil.chown(password_file, "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "dltool", f"--pwfile={password_file}", "--auth=scram-sha-256"]
        + ["-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {folder} -h 127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://dltool:s3cret%3Apw@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_postgresql_test_without_initdb_fails_in_ci_and_skips_elsewhere_saying_why(request, monkeypatch, ci, outcome):
    import shutil

    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as stopped:  # a skip must not pass as one
        request.getfixturevalue("postgres_url")
    assert stopped.type is outcome and "initdb and pg_ctl are not on PATH" in str(stopped.value)


@pytest.mark.subprocess
@pytest.mark.multiprocess
@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_share_a_postgresql_sweep_and_a_worker_killed_with_kill_9_is_replaced_and_retried_once(
    tmp_path, postgres_url
):
    import optuna

    path = write_sweep(
        tmp_path,
        "method: random\ntrials: 3\nparameters:\n  model.layers[0].Dense.units: {int: [4, 16]}\n",
        epochs=40,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "dltool", "sweep", str(path), "--workers", "2", "--storage", postgres_url]
    process = subprocess.Popen(
        [*command, "--runs-dir", str(runs)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    victim = _wait_for(lambda: _running_run(runs), 120, "a trial's first epoch")
    os.kill(victim["pid"], signal.SIGKILL)  # one worker, mid-trial: its trial stays RUNNING in the database
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode() + stdout.decode()
    assert f"worker {victim['pid']} died (signal 9)" in stderr.decode()
    sweep_id = next((tmp_path / "sweeps").iterdir()).name
    from dltool.sweep.storage import open_storage

    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(None, postgres_url)).trials
    (stale,) = [t for t in trials if "stale" in t.user_attrs]
    assert stale.state == optuna.trial.TrialState.FAIL and stale.user_attrs["run_id"] == victim["folder"].name
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == stale.number]  # retried once, same values
    assert retry.params == stale.params and retry.state == optuna.trial.TrialState.COMPLETE
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 3
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) >= 2  # both workers (and the replacement) took trials
    tags = sorted(json.loads(p.read_text())["trial"] for p in (tmp_path / "runs").glob("*/run.json"))
    assert tags == sorted(t.number for t in trials)  # one run per trial: none ran twice
    stored = (tmp_path / "sweeps" / sweep_id / "storage.txt").read_text()
    assert stored == postgres_url.replace(":s3cret%3Apw", "") + "\n"  # the password never reaches the disk
    # Another machine would join with the id and the URL alone: the study holds the sweep file and base config.
    joined = run_cli(
        "sweep",
        "show",
        sweep_id,
        "--storage",
        postgres_url,
        "--runs-dir",
        str(tmp_path / "elsewhere" / "runs"),
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert json.loads(joined.stdout)["trials_done"] == 3, joined.stderr


SHIPPED_SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: p.name)
def test_shipped_sweeps_validate_and_name_the_schema(path):
    import jsonschema
    import yaml

    spec, _ = load_sweep(path)
    assert spec.trials >= 1
    jsonschema.validate(
        yaml.safe_load(path.read_text()), json.loads((REPO / "dltool" / "resources" / "sweep.schema.json").read_text())
    )
    assert (
        path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../dltool/resources/sweep.schema.json"
    )


def test_the_shipped_sweep_schema_is_current():
    from dltool.sweep.spec import sweep_json_schema

    shipped = json.loads((REPO / "dltool" / "resources" / "sweep.schema.json").read_text())
    assert shipped == sweep_json_schema(), "regenerate: dltool sweep --schema > dltool/resources/sweep.schema.json"


@pytest.mark.subprocess
@pytest.mark.multiprocess
@pytest.mark.slow
def test_workers_share_the_journal_file_and_a_fresh_worker_replaces_a_retired_one(tmp_path):
    from dltool.sweep.run import open_sweep

    path = write_sweep(tmp_path, "method: grid\nparameters:\n  model.layers[0].Dense.units: {choice: [4, 6, 8]}\n")
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = run_cli(
        "sweep",
        str(path),
        "--workers",
        "2",
        "--trials-per-worker",
        "1",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.count(" COMPLETED ") == 3  # each worker prints its own trial
    study = open_sweep("latest", runs_root=tmp_path / "runs").study
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 3  # one trial per worker process
    assert len(list((tmp_path / "runs").glob("*/run.json"))) == 3
    shown = run_cli("sweep", "show", "latest", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, env=env)
    best = study.best_trial.user_attrs["run_id"]
    assert f"deploy it: dltool export {best} --format saved_model   |   dltool serve {best}" in shown.stdout


# --------------------------------------------------------------------------- draws: never the same set twice
def _draw_trials(sweep, count: int, *, stop_at: tuple = ()) -> None:
    """Run ``count`` trials of ``sweep`` the way `work` does, with an objective that trains nothing: the trial
    numbered in ``stop_at`` is stopped like a Ctrl-C'd one (FAILED, not counted); a duplicate is skipped."""
    from dltool.sweep.run import DuplicateDraw

    def objective(trial):
        params = sweep.sample(trial)
        if trial.number in stop_at:
            trial.set_user_attr("interrupted", "run interrupted by SIGINT")
            raise KeyboardInterrupt
        return float(sum(hash(json.dumps(v)) % 97 for v in params.values()))

    for _ in range(count):
        try:
            sweep.study.optimize(objective, n_trials=1)
        except (KeyboardInterrupt, DuplicateDraw):
            pass


def _completed(sweep) -> list[tuple]:
    trials = sorted(sweep.study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_resumed_sweep_never_draws_a_parameter_set_it_has_already_tried(tmp_path, method):
    from dltool.sweep.run import create_sweep, open_sweep

    body = (
        f"method: {method}\ntrials: 16\nseed: 3\nparameters:\n"
        "  train.optimizer.learning_rate: {loguniform: [0.0001, 0.1]}\n"
        "  train.batch_size: {choice: [8, 16]}\n"
    )
    sweep_id = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs").id
    # Processes that start again, each opening the sweep anew as a resumed sweep and its workers do,
    # one of their trials stopped mid-way each time.
    for count in [4, 3, 5, 6]:
        sweep = open_sweep(sweep_id, runs_root=tmp_path / "runs")
        _draw_trials(sweep, count, stop_at=(len(sweep.study.trials) + 1,))
    completed = _completed(sweep)
    assert len(completed) == 14
    assert len(set(completed)) == len(completed), "a parameter set completed twice"


def test_a_one_worker_sweep_gives_the_same_sets_with_its_seed_stopped_and_resumed_or_not(tmp_path):
    from dltool.sweep.run import create_sweep, open_sweep

    body = "method: random\ntrials: 6\nseed: 11\nparameters:\n  train.optimizer.learning_rate: {uniform: [0.01, 0.1]}\n"
    path = write_sweep(tmp_path, body)
    straight = create_sweep(path, runs_root=tmp_path / "runs")
    _draw_trials(straight, 6)
    again = create_sweep(path, runs_root=tmp_path / "runs")
    _draw_trials(again, 6)
    assert _completed(again) == _completed(straight)  # the same values in the same order
    stopped = create_sweep(path, runs_root=tmp_path / "runs")
    _draw_trials(stopped, 3, stop_at=(2,))  # trial 2 stopped by Ctrl-C: its values are drawn again on resume
    _draw_trials(open_sweep(stopped.id, runs_root=tmp_path / "runs"), 4)
    assert _completed(stopped) == _completed(straight)


def test_a_grid_sweep_completes_each_point_once_and_a_stopped_point_again(tmp_path):
    from dltool.sweep.run import create_sweep, open_sweep, space_used_up
    from dltool.sweep.sampler import sets_left

    body = "method: grid\nparameters:\n  train.batch_size: {choice: [8, 16, 32]}\n  model.layers[0].Dense.units: {choice: [4, 8]}\n"
    sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
    _draw_trials(sweep, 3, stop_at=(1,))
    _draw_trials(open_sweep(sweep.id, runs_root=tmp_path / "runs"), 2, stop_at=(4,))
    _draw_trials(open_sweep(sweep.id, runs_root=tmp_path / "runs"), 3)  # the 3 points still missing
    completed = _completed(sweep)
    assert len(completed) == 6 and len(set(completed)) == 6  # every point, once
    assert sets_left(sweep.study, sweep.spec) == 0 and space_used_up(sweep) is None  # 6 of 6 trials: no note


def test_a_discrete_space_smaller_than_trials_ends_the_sweep_when_every_set_ran(tmp_path):
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, space_used_up
    from dltool.sweep.sampler import sets_left

    body = "method: random\ntrials: 10\nparameters:\n  train.batch_size: {choice: [8, 16]}\n  model.layers[0].Dense.units: {int: [4, 6]}\n"
    sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
    _draw_trials(sweep, 10)
    completed = _completed(sweep)
    assert len(completed) == 6 and len(set(completed)) == 6
    assert sets_left(sweep.study, sweep.spec) == 0
    rows = [r for r in write_summary(sweep)["rows"] if r["status"] == "FAILED"]
    assert rows and all(r["reason"].startswith("skipped: the same values as trial ") for r in rows)
    assert space_used_up(sweep) == (
        f"every parameter set of the search space ran once (a set never runs twice), so sweep {sweep.id} "
        "ends with 6 of 10 trials"
    )


def test_two_workers_drawing_the_same_set_at_once_run_it_once(tmp_path):
    from dltool.sweep.run import DuplicateDraw, create_sweep

    body = "method: random\ntrials: 2\nparameters:\n  train.batch_size: {choice: [8]}\n"
    sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
    first, second = sweep.study.ask(), sweep.study.ask()
    assert first.relative_params == second.relative_params  # both drew before either holds its values
    assert sweep.sample(first) == {"train.batch_size": 8}
    with pytest.raises(DuplicateDraw):
        sweep.sample(second)
    assert (
        sweep.study.trials[second.number].user_attrs["duplicate"] == f"skipped: the same values as trial {first.number}"
    )


def test_two_trials_that_check_the_same_set_at_once_do_not_both_yield(tmp_path):
    from dltool.sweep.run import create_sweep
    from dltool.sweep.sampler import claim, first_duplicate

    body = "method: random\ntrials: 2\nparameters:\n  train.batch_size: {choice: [8]}\n"
    sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
    first, second = sweep.study.ask(), sweep.study.ask()
    for trial in (first, second):
        trial.suggest_categorical("train.batch_size", [8])  # both hold 8, neither has checked yet
    assert first_duplicate(sweep.study, first.number, first.params) is None  # the earlier one keeps it
    assert first_duplicate(sweep.study, second.number, second.params).number == first.number
    claim(second)  # had the later one checked and claimed it first, the earlier one would yield
    assert first_duplicate(sweep.study, first.number, first.params).number == second.number


def test_a_retry_whose_values_a_draw_took_meanwhile_is_skipped(tmp_path):
    from dltool.sweep.run import DuplicateDraw, create_sweep

    # A resumed worker drew the values of a dead worker's trial (its place given back) before another worker
    # enqueued that trial's retry: the retry yields, so the values run once.
    body = "method: random\ntrials: 3\nparameters:\n  train.batch_size: {choice: [8]}\n"
    sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
    drawn = sweep.study.ask()
    sweep.sample(drawn)
    sweep.study.enqueue_trial({"train.batch_size": 8}, user_attrs={"retry_of": 0})
    retry = sweep.study.ask()
    assert retry.user_attrs["retry_of"] == 0
    with pytest.raises(DuplicateDraw):
        sweep.sample(retry)


def test_grid_workers_drawing_at_once_take_different_points(tmp_path):
    from dltool.sweep.run import create_sweep

    # Three workers ask before any of them has set its values (CI once saw two grid workers collide here).
    # A random sweep's draws at once can still collide by chance: first_duplicate skips the later one.
    for seed in range(8):
        body = f"method: grid\nseed: {seed}\nparameters:\n  model.layers[0].Dense.units: {{choice: [4, 6, 8]}}\n"
        sweep = create_sweep(write_sweep(tmp_path, body), runs_root=tmp_path / "runs")
        trials = [sweep.study.ask() for _ in range(3)]
        [t.relative_params for t in trials]  # each draws now (Optuna draws on first use), none holds values yet
        drawn = [sweep.sample(t)["model.layers[0].Dense.units"] for t in trials]
        assert sorted(drawn) == [4, 6, 8], f"seed {seed}: {drawn}"


# --------------------------------------------------------------------------- objective.cv (issue 25)
@pytest.mark.parametrize(
    "body, message",
    [
        (
            "objective: {metric: val_accuracy, goal: max, cv: 3}\npruner: median\ntrials: 2\n"
            "parameters:\n  train.batch_size: {choice: [8]}\n",
            "pruner median stops a trial by its epochs, and a cv objective (objective.cv: 3) trains a run per fold: "
            "use pruner: none",
        ),
        (
            "objective: {metric: val_accuracy, goal: max, cv: 1}\ntrials: 2\nparameters:\n"
            "  train.batch_size: {choice: [8]}\n",
            "sweep.yaml:2: objective.cv: ",
        ),
    ],
)
def test_a_cv_objective_is_refused_with_a_pruner_or_one_fold(tmp_path, body, message):
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, body))
    assert message in str(caught.value)


def test_a_cv_objective_of_an_experiment_that_cannot_be_cross_validated_is_refused(tmp_path):
    series = (REPO / "configs" / "lstm_forecaster.yaml").read_text()
    (tmp_path / "series.yaml").write_text(
        series.replace("data/seasonal_series.csv", str(REPO / "configs" / "data" / "seasonal_series.csv"))
    )
    (tmp_path / "sweep.yaml").write_text(
        "experiment: series.yaml\nobjective: {metric: val_loss, cv: 3}\ntrials: 2\n"
        "parameters:\n  train.batch_size: {choice: [8, 16]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_sweep(tmp_path / "sweep.yaml")
    assert "sweep.yaml:2: objective.cv: the base experiment cannot be cross-validated: " in str(caught.value)
    assert "cross-validating a series would train on the future of its test windows" in str(caught.value)


@pytest.mark.slow
def test_a_cv_objective_trains_a_run_per_fold_and_scores_the_trial_by_their_mean(tmp_path):
    from dltool.commands.runs_report import select_runs
    from dltool.sweep.report import write_summary
    from dltool.sweep.run import create_sweep, work

    path = write_sweep(
        tmp_path,
        "method: grid\nobjective: {metric: val_accuracy, goal: max, cv: 2}\nparameters:\n"
        "  train.batch_size: {choice: [16, 32]}\n",
    )
    sweep = create_sweep(path, runs_root=tmp_path / "runs")
    assert work(sweep, runs_root=tmp_path / "runs") == 2
    summary = write_summary(sweep)
    assert summary["trials_done"] == 2
    for row in summary["rows"]:
        assert len(row["fold_values"]) == 2 and row["objective"] == pytest.approx(sum(row["fold_values"]) / 2)
        infos = [json.loads((tmp_path / "runs" / run / "run.json").read_text()) for run in row["runs"]]
        assert [(i["trial"], i["fold"], i["folds"]) for i in infos] == [(row["trial"], 1, 2), (row["trial"], 2, 2)]
        assert [i["data"]["test"] for i in infos] == [75, 75]  # each half of iris once the test split
    assert len(select_runs(tmp_path / "runs", sweep=sweep.id)) == 4
