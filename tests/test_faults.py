"""Faults: kill -9 and resume, Ctrl-C, SIGTERM, concurrent starts, hostile models, inputs and run ids."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from e2e_support import run_cli

from dltool.commands.resume import resume
from dltool.errors import RunNotFoundError, RunStateError
from dltool.runs import Run

pytestmark = pytest.mark.slow

# Epochs of ~50 ms: long enough to be killed in the middle of training, short enough for CI.
SLOW_CONFIG = """
name: slow
seed: 1
data: {source: synthetic, n_samples: 4000, n_features: 8, weights: 1, noise: {std: 0.1}, test: 0.1, validation: 0.1}
model: {input_shape: [8], layers: [{Dense: {units: 64, activation: relu}}, {Dense: {units: 1}}]}
train: {loss: mse, epochs: 16, batch_size: 8, steps_per_execution: 4,
        callbacks: {early_stopping: {patience: 15}, reduce_lr_on_plateau: {patience: 15}}}
"""


def _start_training(tmp_path, *extra) -> subprocess.Popen:
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW_CONFIG)
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dltool", "train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q", *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(tmp_path, epoch: int, timeout: float = 120) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in (tmp_path / "runs").glob("*/checkpoints/state.json"):
            try:
                if json.loads(state.read_text())["epoch"] >= epoch:
                    return Run(state.parent.parent)
            except (ValueError, OSError):
                pass  # never expected (atomic writes), but do not crash the wait on it
        time.sleep(0.1)
    raise AssertionError("training never reached the checkpoint")


def _history_epochs(run: Run) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader(run.file("history.csv").open())]


@pytest.mark.subprocess
def test_kill_9_mid_training_then_resume_finishes_with_continuous_history(tmp_path):
    process = _start_training(tmp_path)
    run = _wait_for_checkpoint(tmp_path, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    listed = json.loads(run_cli("runs", "--runs-dir", str(tmp_path / "runs"), "--json", cwd=tmp_path).stdout)
    assert listed[0]["status"] == "DIED"
    for path in run.path.rglob("*"):  # every file is whole: JSON parses, no temporary files left but at most one
        if path.suffix == ".json":
            json.loads(path.read_text())
    resumed = run_cli("train", "--resume", run.id, "--runs-dir", str(tmp_path / "runs"), "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads(run.file("run.json").read_text())
    assert info["status"] == "COMPLETED"
    assert info["resumes"][0]["previous_status"] == "DIED"
    assert _history_epochs(run) == list(range(1, 17))
    assert json.loads(run.file("metrics.json").read_text())["epochs"] == 16
    assert not run.file("checkpoints/state.json").exists()


@pytest.mark.subprocess
def test_ctrl_c_saves_interrupted_status_and_says_how_to_resume(tmp_path):
    process = _start_training(tmp_path)
    run = _wait_for_checkpoint(tmp_path, 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"dltool train --resume {run.id}" in stderr
    assert "Traceback" not in stderr
    info = json.loads(run.file("run.json").read_text())
    assert info["status"] == "INTERRUPTED"
    state = json.loads(run.file("checkpoints/state.json").read_text())
    # epochs finish faster than checkpoints are written (2 s apart): the last completed one is saved on Ctrl-C
    assert _history_epochs(run) == list(range(1, state["epoch"] + 1))
    assert set(state["callbacks"]) == {"early_stopping", "reduce_lr_on_plateau"}

    resumed = resume(run)  # in-process this time: same result as the CLI
    assert resumed.info["status"] == "COMPLETED"
    assert _history_epochs(run) == list(range(1, 17))


@pytest.mark.subprocess
def test_sigterm_exits_143_interrupted(tmp_path):
    process = _start_training(tmp_path)
    run = _wait_for_checkpoint(tmp_path, 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "interrupted by SIGTERM" in stderr
    assert json.loads(run.file("run.json").read_text())["status"] == "INTERRUPTED"


@pytest.mark.subprocess
@pytest.mark.multiprocess
def test_four_concurrent_starts_make_four_complete_runs(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(SLOW_CONFIG.replace("epochs: 16", "epochs: 2").replace("n_samples: 4000", "n_samples: 200"))
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dltool", "train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0, 0]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 4 and len({r.name for r in runs}) == 4
    for run_dir in runs:
        assert json.loads((run_dir / "run.json").read_text())["status"] == "COMPLETED"
        assert (run_dir / "model.keras").is_file()


def test_resuming_a_completed_run_is_refused(iris_run):
    with pytest.raises(RunStateError, match="is COMPLETED: there is nothing to resume"):
        resume(iris_run)


@pytest.mark.subprocess
def test_resume_with_overrides_is_refused(tmp_path, iris_run):
    result = run_cli("train", "--resume", str(iris_run.path), "--set", "train.epochs=9", cwd=tmp_path)
    assert result.returncode == 2
    assert "--set cannot change it" in result.stderr


def test_model_carrying_code_is_refused(tmp_path, iris_run):
    import keras

    copy = Run(tmp_path / "runs" / iris_run.id)
    shutil.copytree(iris_run.path, copy.path)
    hostile = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(3)])
    hostile.save(copy.file("model.keras"))
    from dltool.commands.evaluate import evaluate

    with pytest.raises(RunStateError, match=r"refused to load: the model contains code .*safe_mode=True"):
        evaluate(copy)


def test_run_references_never_leave_the_runs_folder(tmp_path, iris_run):
    root = tmp_path / "runs"
    root.mkdir()
    outside = tmp_path / "outside-20260101-000000-x-abcd"
    shutil.copytree(iris_run.path, outside)
    (root / "20260101-000000-x-abcd").symlink_to(outside)
    for ref in ("../outside-20260101-000000-x-abcd", "20260101-000000-x-abcd", "..", "/etc"):
        with pytest.raises(RunNotFoundError):
            Run.resolve(ref, root)


@pytest.mark.subprocess
def test_unwritable_runs_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = tmp_path / "tiny.yaml"
    config.write_text(SLOW_CONFIG)
    result = run_cli("train", str(config), "--runs-dir", str(blocker / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"runs folder {blocker / 'runs'} is not writable" in result.stderr
