"""Ctrl-C during training: the process is gone within 2 s, the run is INTERRUPTED and resumable (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from e2e_support import REPO

from dltool.keras_io import load_model_safely
from dltool.runs import INTERRUPTED, Run
from dltool.training.checkpoints import read_state
from dltool.training.interrupts import InterruptGuard

STOP_SECONDS = 2.0  # the promise: from the signal to the end of the process

# configs/mnist_cnn.yaml on 10,000 random 28x28 images, an epoch of about 3 s on 2 cores. steps_per_execution
# above the 141 steps of an epoch makes each epoch one call into TensorFlow: a stop that waited for the running
# call to end would wait for the end of the epoch, which is what Ctrl-C did on mnist_cnn with its 32-batch calls.
SAMPLES = 10_000
OVERRIDES = ["train.steps_per_execution=1000", "train.epochs=4", "train.batch_size=64"]


def _random_digits(path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (SAMPLES, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, SAMPLES, dtype=np.uint8)
    np.savez(path, x_train=images, y_train=labels, x_test=images[:100], y_test=labels[:100])


def _wait_for_state(runs, timeout: float = 120) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in runs.glob("*/checkpoints/state.json"):
            return Run(state.parent.parent)
        time.sleep(0.05)
    raise AssertionError("training never reached its first checkpoint")


@pytest.mark.subprocess
@pytest.mark.slow
def test_ctrl_c_in_epoch_2_exits_within_2_seconds_interrupted_and_resumable(tmp_path):
    _random_digits(tmp_path / "digits.npz")
    sets = [arg for value in [f"data.path={tmp_path / 'digits.npz'}", *OVERRIDES] for arg in ("--set", value)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dltool",
            "train",
            str(REPO / "configs/mnist_cnn.yaml"),
            *sets,
            "--runs-dir",
            str(tmp_path / "runs"),
            "-q",
        ],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = _wait_for_state(tmp_path / "runs")  # epoch 1 is checkpointed: epoch 2 starts now
    time.sleep(0.5)
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    seconds = time.monotonic() - signalled

    assert process.returncode == 130, stderr
    assert seconds < STOP_SECONDS, f"Ctrl-C took {seconds:.2f} s to end the process"
    assert "Traceback" not in stderr
    assert (
        f"interrupted by SIGINT after 1 completed epoch(s); resume from epoch 1 with: dltool train --resume {run.id}"
    ) in stderr
    assert json.loads(run.file("run.json").read_text())["status"] == INTERRUPTED
    state = read_state(run, INTERRUPTED)
    assert state["epoch"] == 1 and [row["epoch"] for row in state["history"]] == [1]
    # the checkpoint holds the end of epoch 1, not the half-done step that the stop cancelled
    model = load_model_safely(run.file(state["model"]))
    steps_per_epoch = -(-int(SAMPLES * 0.9) // 64)  # validation: 0.1
    assert int(model.optimizer.iterations.numpy()) == steps_per_epoch


def test_first_signal_asks_to_stop_and_the_second_stops_at_once():
    previous_handler = signal.getsignal(signal.SIGINT)
    previous_wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_wakeup_fd)
    with InterruptGuard() as guard:
        assert not guard.requested()
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not guard.requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert guard.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is previous_handler
    assert signal.set_wakeup_fd(previous_wakeup_fd) == previous_wakeup_fd
