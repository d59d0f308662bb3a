"""dltool cv: folds as tagged runs, cv.json's summary, cv show, runs compare on cvs, kill -9 and --resume,
--workers, and the command's errors (issue 25)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import IRIS_CONFIG, REPO, run_cli
from typer.testing import CliRunner

pytest.importorskip("optuna", reason="cv needs optuna: pip install -e '.[sweep]'")

from dltool.cli.app import app  # noqa: E402
from dltool.cv.report import summarize  # noqa: E402

ENV = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def write_iris(folder: Path, epochs: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iris.yaml"
    path.write_text(IRIS_CONFIG.replace("epochs: 5", f"epochs: {epochs}"))
    return path


def test_the_summary_is_the_mean_the_sample_std_and_a_t_interval():
    summary = summarize([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["std"] == 1.0 and summary["n"] == 3
    # t(0.975, 2 degrees of freedom) = 4.3027; half width 4.3027 * 1 / sqrt(3)
    assert summary["ci95"] == pytest.approx([2 - 2.48414, 2 + 2.48414], abs=1e-4)
    assert summarize([0.5]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "1"], "--folds: expected a number >= 2, received 1"),
        ([], "--folds: give the number of folds, e.g. dltool cv CONFIG --folds 5"),
        (["--folds", "3", "--repeats", "0"], "--repeats: expected a number >= 1, received 0"),
        (
            ["--folds", "3", "--group", "patient"],
            "data: grouped folds need a csv or parquet source, received fold.group 'patient' with data.source "
            "'sklearn', which has no columns: leave out --group",
        ),
        (["--folds", "200"], "cannot cut 150 rows into 200 folds"),
    ],
)
def test_bad_cv_commands_are_refused_before_any_fold_trains(tmp_path, args, message):
    path = write_iris(tmp_path)
    result = CliRunner().invoke(app, ["cv", str(path), *args, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cvs").exists()


def test_cv_without_a_config_or_an_id_says_what_to_give(tmp_path):
    result = CliRunner().invoke(app, ["cv", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "give one of: a CONFIG to cross-validate with --folds K, --resume ID, --join ID" in result.output


def test_an_unknown_cv_id_is_named(tmp_path):
    result = CliRunner().invoke(app, ["cv", "show", "nope", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "no cv matches 'nope'" in result.output


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_three_fold_cv_trains_tagged_runs_and_reports_every_test_metric(tmp_path):
    path = write_iris(tmp_path)
    runs = tmp_path / "runs"
    result = run_cli("cv", str(path), "--folds", "3", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "fold 2/3 (repeat 1) COMPLETED" in result.stdout and "95 % interval" in result.stdout
    folder = next((tmp_path / "cvs").iterdir())
    saved = json.loads((folder / "cv.json").read_text())
    assert (saved["planned"], saved["done"], saved["completed"]) == (3, 3, 3)
    assert [(r["fold"], r["repeat"], r["status"]) for r in saved["rows"]] == [(n, 1, "COMPLETED") for n in (1, 2, 3)]
    accuracy = saved["metrics"]["accuracy"]
    scores = [r["test"]["accuracy"] for r in saved["rows"]]
    assert accuracy["mean"] == pytest.approx(sum(scores) / 3) and accuracy["n"] == 3
    assert accuracy["ci95"][0] <= accuracy["mean"] <= accuracy["ci95"][1]
    for row in saved["rows"]:
        info = json.loads((runs / row["run"] / "run.json").read_text())
        assert (info["cv"], info["fold"], info["repeat"], info["status"]) == (folder.name, row["fold"], 1, "COMPLETED")
        assert info["data"]["test"] == 50  # one fold of iris's 150 rows
    listed = run_cli("runs", "--cv", folder.name, "--json", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert sorted((r["cv"], r["fold"]) for r in json.loads(listed.stdout)) == [(folder.name, n) for n in (1, 2, 3)]
    shown = run_cli("cv", "show", folder.name, "--json", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert json.loads(shown.stdout)["metrics"] == saved["metrics"]

    second = run_cli("cv", str(path), "-k", "2", "-q", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert second.returncode == 0, second.stderr
    other = next(p.name for p in (tmp_path / "cvs").iterdir() if p.name != folder.name)
    compared = run_cli("runs", "compare", folder.name, other, "--json", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert compared.returncode == 0, compared.stderr
    table = json.loads(compared.stdout)
    assert [c["id"] for c in table["cvs"]] == [folder.name, other] and [c["folds"] for c in table["cvs"]] == [3, 2]
    assert table["metrics"]["accuracy"][0] == accuracy


def _wait_for(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _runs_with_an_epoch(runs: Path) -> int:
    return sum((p.parent / "history.csv").is_file() for p in runs.glob("*/run.json"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_of_the_cv_and_resume_completes_exactly_k_times_r_folds(tmp_path):
    import optuna

    from dltool.cv.report import counted, fold_of
    from dltool.cv.run import open_cv

    path = write_iris(tmp_path, epochs=20)
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "cv", str(path), "-k", "2", "-r", "2", "--runs-dir", str(runs)],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: _runs_with_an_epoch(runs) >= 2, 180, "the second fold's first epoch")
    process.send_signal(signal.SIGKILL)  # the cv process, in the middle of its second fold
    process.wait()
    cv_id = next((tmp_path / "cvs").iterdir()).name
    result = run_cli("cv", "--resume", cv_id, "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    study = open_cv(cv_id, runs_root=runs).study
    done = [fold_of(t) for t in study.get_trials() if counted(t)]
    assert sorted(done) == [(1, 1), (1, 2), (2, 1), (2, 2)]  # each fold once
    assert [t.state for t in study.get_trials()].count(optuna.trial.TrialState.COMPLETE) == 4
    died = [t for t in study.get_trials() if "stale" in t.user_attrs]
    assert len(died) == 1 and fold_of(died[0]) == (2, 1)
    saved = json.loads((tmp_path / "cvs" / cv_id / "cv.json").read_text())
    assert (saved["done"], saved["completed"]) == (4, 4)
    completed = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    tagged = sorted((i["fold"], i["repeat"]) for i in completed if i["status"] == "COMPLETED")
    assert tagged == [(1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.multiprocess
def test_two_workers_run_every_fold_once(tmp_path):
    path = write_iris(tmp_path)
    runs = tmp_path / "runs"
    result = run_cli("cv", str(path), "-k", "4", "--workers", "2", "--runs-dir", str(runs), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    saved = json.loads(next((tmp_path / "cvs").iterdir()).joinpath("cv.json").read_text())
    assert (saved["done"], saved["completed"]) == (4, 4)
    infos = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert sorted(i["fold"] for i in infos) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_stops_the_fold_cleanly_and_resume_runs_it_again(tmp_path):
    path = write_iris(tmp_path, epochs=100)
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "cv", str(path), "-k", "2", "--runs-dir", str(runs)],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: _runs_with_an_epoch(runs) >= 1, 180, "the first fold's first epoch")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    cv_id = next((tmp_path / "cvs").iterdir()).name
    assert f"cv {cv_id} interrupted; finish it with: dltool cv --resume {cv_id}" in stderr
    (run_json,) = runs.glob("*/run.json")
    info = json.loads(run_json.read_text())
    assert (info["status"], info["cv"], info["fold"]) == ("INTERRUPTED", cv_id, 1)
    saved = json.loads((tmp_path / "cvs" / cv_id / "cv.json").read_text())
    assert saved["done"] == 0 and [r["status"] for r in saved["rows"]] == ["INTERRUPTED", "WAITING"]
    resumed = run_cli("cv", "--resume", cv_id, "-q", "--runs-dir", str(runs), cwd=tmp_path, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    saved = json.loads((tmp_path / "cvs" / cv_id / "cv.json").read_text())
    assert [(r["fold"], r["status"]) for r in saved["rows"]] == [(1, "COMPLETED"), (2, "COMPLETED")]


def _fold_pid(runs: Path) -> int | None:
    """The pid of a worker whose fold is RUNNING and has finished an epoch."""
    for path in runs.glob("*/run.json"):
        info = json.loads(path.read_text())
        if info.get("status") == "RUNNING" and (path.parent / "history.csv").is_file():
            return info["pid"]
    return None


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.multiprocess
def test_a_worker_killed_with_kill_9_is_replaced_and_its_fold_runs_again(tmp_path):
    path = write_iris(tmp_path, epochs=40)
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "cv", str(path), "-k", "3", "-w", "2", "-q", "--runs-dir", str(runs)],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.kill(_wait_for(lambda: _fold_pid(runs), 180, "a worker's first epoch"), signal.SIGKILL)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "died (signal 9); its fold runs again, a new worker takes over" in stderr
    saved = json.loads(next((tmp_path / "cvs").iterdir()).joinpath("cv.json").read_text())
    assert (saved["done"], saved["completed"]) == (3, 3)
    completed = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert sorted(i["fold"] for i in completed if i["status"] == "COMPLETED") == [1, 2, 3]
