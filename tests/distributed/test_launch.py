"""`dltool launch`: one run trained by 2 loopback processes on the JAX backend (gloo on CPU), as CI runs it:
the accuracy of one process, the same weights on both workers, one run folder, and a worker killed mid-run
failing the run within 60 s, which `--resume` then completes (issue 14)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import REPO, run_cli

# find_spec, not importorskip: importing JAX at collection would cost the fast loop 1.5 s for slow tests only
pytestmark = [
    pytest.mark.slow,
    pytest.mark.jax,
    pytest.mark.subprocess,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX: pip install -e '.[jax]'"),
]

DIGITS = str(REPO / "configs" / "digits_mlp.yaml")


def _only_run(root: Path) -> Path:
    runs = [path for path in (root / "runs").iterdir() if path.is_dir()]
    assert len(runs) == 1, runs  # worker 0 owns the one run folder; the others add only workers/<i>.log
    return runs[0]


def _test_accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["test"]["accuracy"]


def _final_weights(log: Path) -> str:
    return re.search(r"final weights ([0-9a-f]{16})", log.read_text()).group(1)


@pytest.mark.multiprocess
def test_two_processes_train_digits_to_the_accuracy_of_one_with_the_same_weights(tmp_path):
    alone, together = tmp_path / "alone", tmp_path / "together"
    alone.mkdir(), together.mkdir()
    single = run_cli("train", DIGITS, "--backend", "jax", "--quiet", cwd=alone)
    assert single.returncode == 0, single.stderr
    launched = run_cli("launch", "-n", "2", DIGITS, "--backend", "jax", "--quiet", cwd=together)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "[Gloo]" not in launched.stdout + launched.stderr  # the runtime's chatter stays out of the display
    assert "data parallel over 2 devices in 2 processes" in launched.stdout
    run = _only_run(together)
    assert abs(_test_accuracy(run) - _test_accuracy(_only_run(alone))) <= 0.01
    assert sorted(path.name for path in (run / "workers").iterdir()) == ["1.log"]
    assert _final_weights(run / "train.log") == _final_weights(run / "workers" / "1.log")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "COMPLETED" and info["processes"] == 2 and info["versions"]["backend"] == "jax"


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _worker(launcher: int, index: int) -> int:
    for child in _children(launcher):
        arguments = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if arguments[arguments.index(b"--process-id") + 1] == str(index).encode():
            return child
    raise AssertionError(f"worker {index} not found among {_children(launcher)}")


@pytest.mark.multiprocess
def test_a_killed_worker_fails_the_run_within_60_s_and_resume_completes_it(tmp_path):
    epochs = 40
    overrides = ["--set", f"train.epochs={epochs}", "--set", "train.callbacks.early_stopping=null"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "dltool", "launch", "-n", "2", DIGITS, "--backend", "jax", "--quiet", *overrides],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        log = None
        while time.monotonic() < deadline:
            logs = list((tmp_path / "runs").glob("*/train.log"))
            if logs and "epoch 3/" in logs[0].read_text():
                log = logs[0]
                break
            assert launcher.poll() is None, launcher.communicate()
            time.sleep(0.1)
        assert log is not None, "the run did not reach epoch 3 within 120 s"
        os.kill(_worker(launcher.pid, 1), signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    run = log.parent
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "FAILED", info
    assert time.monotonic() - killed <= 60
    assert info["error"].startswith("worker 1 of 2 stopped"), info["error"]
    assert launcher.returncode == 1 and "launch: worker" in stderr
    assert f"dltool launch -n 2 --resume {run.name}" in stderr

    refused = run_cli("train", "--resume", run.name, cwd=tmp_path)  # one process cannot take a 2-process run over
    assert refused.returncode != 0 and "trained in 2 process(es) and is resumed in 1" in refused.stderr

    resumed = run_cli("launch", "-n", "2", "--resume", run.name, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "COMPLETED" and info["epochs_done"] == epochs
    assert info["resumes"][0]["previous_status"] == "FAILED"
    assert len((run / "history.csv").read_text().splitlines()) == epochs + 1
    assert _only_run(tmp_path) == run


def test_launch_refuses_tensorflow_before_starting_any_worker(tmp_path):
    refused = run_cli("launch", "-n", "2", DIGITS, "--backend", "tensorflow", cwd=tmp_path)
    assert refused.returncode == 2
    assert "keras-team/keras/issues/20585" in refused.stderr and not (tmp_path / "runs").exists()
