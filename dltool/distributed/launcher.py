"""`dltool launch -n N`: N local `dltool train` processes that train one run together (JAX, over loopback).

Worker 0 shows its display on this terminal and owns the run folder; workers 1 to N-1 write only
``workers/<i>.log`` in it. When one worker fails, the others stop within :data:`STOP_SECONDS` (the JAX
runtime sees the lost peer; the launcher ends whoever is left), and a run that worker 0 could not mark
itself is marked FAILED here, naming the worker that stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write_text
from ..runs import FAILED, RUNNING, Run, runs_dir
from . import supervisor

RUN_FILE_ENV = "DLTOOL_LAUNCH_RUN_FILE"  # worker 0 writes its run id there (see ProcessGroup.share_run)
STOP_SECONDS = 60  # after a worker fails, the others get this long to stop by themselves


@dataclass
class LaunchResult:
    """How the workers ended: their exit codes, the run they trained, and the first that failed."""

    exit_codes: list[int]
    run_id: str | None = None
    failed_worker: int | None = None
    early_output: dict[int, str] = field(default_factory=dict)  # stderr of workers that failed before the run

    @property
    def exit_code(self) -> int:
        """Worker 0's exit code if it failed (2 for bad input, 130 for Ctrl-C, ...), else 1 if any failed."""
        if self.exit_codes[0] > 0:
            return self.exit_codes[0]
        return 0 if all(code == 0 for code in self.exit_codes) else 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def describe_exit(code: int) -> str:
    """'was killed by SIGKILL' or 'exited with code 1'."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch(count: int, train_args: list[str], *, runs_root: str | Path | None = None) -> LaunchResult:
    """Run ``dltool train *train_args`` in ``count`` processes on this machine, joined over loopback.

    Ctrl-C and SIGTERM are passed to worker 0, which stops the run as a single `dltool train` would; the
    others stop when it does. Returns once every worker has ended.
    """
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="dltool-launch-")
    run_file = Path(scratch.name) / "run-id"
    workers: list[subprocess.Popen] = []
    early: list = []
    try:
        for index in range(count):
            env = {
                **os.environ,
                RUN_FILE_ENV: str(run_file),
                # The coordinator listens on loopback only, not on every interface (JAX's default).
                "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
            }
            command = [sys.executable, "-m", "dltool", "train", *train_args]
            command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count), "--process-id", str(index)]
            if runs_root is not None:
                command += ["--runs-dir", str(runs_root)]
            output = None if index == 0 else open(Path(scratch.name) / f"{index}.err", "w+b")  # noqa: SIM115
            early.append(output)
            # In a session of its own: a terminal's Ctrl-C reaches the launcher, which tells worker 0.
            workers.append(
                supervisor.start_worker(command, env=env, stdout=subprocess.DEVNULL if index else None, stderr=output)
            )
        failed = _supervise(workers)
        codes = [worker.returncode for worker in workers]
        run_id = run_file.read_text(encoding="utf-8").strip() if run_file.is_file() else None
        result = LaunchResult(codes, run_id, failed)
        for index, output in enumerate(early):
            if output is not None and codes[index] != 0:
                output.seek(0)
                result.early_output[index] = output.read().decode(errors="replace")
        if run_id and failed is not None:
            _mark_failed(Run(runs_dir(runs_root) / run_id), failed, codes[failed], count)
        return result
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for output in early:
            if output is not None:
                output.close()
        scratch.cleanup()


def _supervise(workers: list[subprocess.Popen]) -> int | None:
    """Wait for every worker, passing stop signals to worker 0; end the rest STOP_SECONDS after a failure.

    Returns the first worker that failed, or None.
    """
    failed: int | None = None
    deadline: float | None = None
    with supervisor.signals_forwarded_to(workers[0]):
        while any(worker.poll() is None for worker in workers):
            for index, worker in enumerate(workers):
                if failed is None and worker.returncode not in (None, 0):
                    failed, deadline = index, time.monotonic() + STOP_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                supervisor.end(workers)
            supervisor.pause()
    if failed is None:
        failed = next((i for i, worker in enumerate(workers) if worker.returncode != 0), None)
    return failed


def _mark_failed(run: Run, worker: int, code: int, count: int) -> None:
    """A run left RUNNING (worker 0 died, or was ended) becomes FAILED, naming the worker that stopped first."""
    if not run.file("run.json").is_file() or run.info.get("status") != RUNNING:
        return  # worker 0 recorded how the run ended
    reason = f"worker {worker} {describe_exit(code)}"
    run.finish(FAILED, error=reason)
    run.append_log(
        f"FAILED: {reason} (marked by dltool launch); resume with: dltool launch -n {count} --resume {run.id}"
    )


def write_run_id(run_id: str) -> None:
    """In worker 0 of a launch: tell the launcher which run it trains."""
    path = os.environ.get(RUN_FILE_ENV)
    if path:
        atomic_write_text(Path(path), run_id)
