"""`dltool sweep --workers N`: worker processes that join the sweep, each running trials until it is done.

A worker is `dltool sweep --join ID` in a process of its own: it imports TensorFlow once and runs trials
back to back. Workers are recycled (TensorFlow's memory only comes back with a new process), replaced when
killed, and stopped with the sweep process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from ..distributed import supervisor
from ..errors import TrainingError, TrainingInterrupted, UsageError
from ..runs import runs_dir
from ..tracking.settings import URI_ENV
from .report import progress, write_summary
from .sampler import sets_left
from .storage import STORAGE_ENV

# A worker process runs this many trials, then a fresh one takes over: TensorFlow keeps ~5 MB of every traced
# model until its process exits, and the new import (4-5 s) spread over 20 trials costs ~0.2 s each.
TRIALS_PER_WORKER = 20


def run_workers(
    sweep,
    workers: int,
    *,
    runs_root=None,
    storage_url: str | None = None,
    trials_per_worker: int | None = TRIALS_PER_WORKER,
    quiet: bool = False,
    on_worker_died: Callable[[int, int], None] | None = None,
) -> None:
    """Keep ``workers`` processes joining the sweep until it is done; each imports TensorFlow once and runs trials.

    With ``trials_per_worker`` (default TRIALS_PER_WORKER; None: never), a worker exits after that many trials
    and a fresh one takes its place: TensorFlow keeps about 5 MB of every model it traced
    (benchmarks/RESULTS-sweep.md), which only a new process gives back. A worker killed by a signal (``kill -9``,
    the OOM killer) is replaced too, and ``on_worker_died(pid, signal)`` is told; its trial is reclaimed and
    retried once by the next worker. Ctrl-C here asks every worker to stop cleanly.
    """
    if workers < 1:
        raise UsageError(f"--workers: expected a number >= 1, received {workers}")
    command = [sys.executable, "-m", "dltool", "sweep", "--join", sweep.id]
    command += ["--runs-dir", str(runs_dir(runs_root).resolve())]
    # The URL goes to the workers in their environment: on their command line, its password would show in `ps`.
    secrets = {STORAGE_ENV: storage_url} if storage_url else {}
    if sweep.mlflow_uri:  # --mlflow's URI, its password too (the study records it without)
        secrets[URI_ENV] = sweep.mlflow_uri
    environment = {**os.environ, **secrets} if secrets else None
    command += ["--trials-per-worker", str(trials_per_worker)] if trials_per_worker else []
    command += ["--quiet"] if quiet else []

    def start() -> subprocess.Popen:
        return supervisor.start_worker(command, env=environment)

    def unfinished(died: bool, live: int) -> bool:
        # Each live worker runs the next trial, a fresh one too before its trial shows: counting running trials
        # instead, two workers that retired together both got a successor for the last grid point, and one of
        # the two drew it as a duplicate (a FAIL trial in the study).
        # A dead worker's own trial still shows RUNNING until reclaimed: its set counts as free.
        done, _ = progress(sweep)
        return done + live < sweep.spec.trials and sets_left(sweep.study, sweep.spec, running=not died) != 0

    try:
        failed = supervisor.keep_workers(
            start,
            workers,
            unfinished=unfinished,
            recycle=bool(trials_per_worker),
            on_worker_died=on_worker_died,
        )
    except KeyboardInterrupt:
        write_summary(sweep)
        raise TrainingInterrupted(
            f"sweep {sweep.id} interrupted; finish it with: dltool sweep --resume {sweep.id}", None
        ) from None
    write_summary(sweep)
    if failed:
        raise TrainingError(
            f"{len(failed)} sweep worker(s) exited with an error (exit codes {failed}); "
            f"see their messages above; resume with: dltool sweep --resume {sweep.id}"
        )
