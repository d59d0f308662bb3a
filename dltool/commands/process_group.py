"""A run trained in several processes: what process 0 does besides a one-process run, and what the others do.

Every process runs the same steps in the same order (each step on the shared model is a collective all of
them must join); process 0 alone records, checkpoints, tests and saves. Processes 1 to N-1 ("followers")
write no run file: their output goes to their observer (the command line sends it to ``workers/<i>.log``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import processes
from ..backend import device_count
from ..checkpoints import checkpointed_epoch
from ..config import ExperimentConfig
from ..errors import TrainingError
from ..observer import Observer
from ..runs import FAILED, Run, log_time
from ..session import even_splits


def tell_the_others(run: Run) -> None:
    """Process 0: the other processes (and `dltool launch`) learn which run they train."""
    from .launch import write_run_id

    processes.share_run(run.id)
    write_run_id(run.id)


def share_out(run: Run | None, config: ExperimentConfig, data) -> None:
    """Each process keeps its share of every training and validation batch (the test split stays whole, for
    process 0 to test alone); the splits first become multiples of all processes' devices. Process 0 (``run``
    given) logs the shares."""
    devices = device_count(config.train.devices) * processes.count()
    if hasattr(data, "x_train"):
        left_out = even_splits(data, devices, test=False)
        processes.keep_own_share(data, config.train.batch_size)
        share = f"{len(data.x_train)} training samples per process"
    else:  # streamed: every process reads the file and keeps its share of each batch as it goes
        left_out = data.share_batches(processes.count(), processes.index(), devices)
        share = f"{config.train.batch_size // processes.count()} rows of every batch per process, streamed"
    if run is not None:
        left = ", ".join(f"{n} {split} sample(s)" for split, n in left_out.items())
        run.append_log(
            f"{log_time()} {processes.count()} processes, {share}"
            + (f"; left out so batches split evenly: {left}" if left else "")
        )


def work_alone(model) -> None:
    """Process 0 of several: from here on it works on its own copy of the model (the others may be gone)."""
    if processes.count() > 1:
        processes.make_local(model)


def lost_workers(reason: str) -> str:
    """A failed collective's reason, naming the workers that stopped (known once their heartbeats time out)."""
    missing = processes.missing_processes()
    if not missing:
        return f"a worker stopped ({reason})"
    return f"{_workers(missing)} stopped (no heartbeat for {processes.HEARTBEAT_SECONDS} s): {reason}"


def _workers(numbers: list[int]) -> str:
    """'worker 1 of 2', 'worker 1, 3 of 4'."""
    return f"worker {', '.join(str(number) for number in numbers)} of {processes.count()}"


def watch_workers(run: Run) -> Callable[[], None]:
    """Process 0 of several, while it trains: a worker that gives no sign of life for HEARTBEAT_SECONDS (stopped,
    hung, or cut off from this machine, its sockets still open) ends the run FAILED, naming it, and this process.

    Ending the process is the only way out: its main thread waits in a collective that will never complete.
    Returns ``stop``, for when training ends here (well or not).
    """
    if processes.count() == 1:
        return lambda: None

    def silent(workers: list[int]) -> None:
        reason = (
            f"{_workers(workers)} gave no sign of life for {processes.HEARTBEAT_SECONDS} s "
            "(stopped, hung, or cut off from worker 0)"
        )
        done = checkpointed_epoch(run)
        run.finish(FAILED, error=reason)
        run.append_log(
            f"FAILED: {reason}" + (f"; resume from epoch {done} with: {resume_command(run)}" if done else "")
        )
        os._exit(1)

    return processes.watch_the_others(silent)


def resume_command(run: Run) -> str:
    """How to resume ``run``: with `dltool launch` when it trains in several processes."""
    if processes.count() > 1:
        return f"dltool launch -n {processes.count()} --resume {run.id}"
    return f"dltool train --resume {run.id}"


def follow(
    run: Run,
    config,
    data,
    model,
    observer=None,
    *,
    initial_epoch: int = 0,
    restore: dict | None = None,
) -> Run:
    """Processes 1 to N-1: train this process's share (``data`` as :func:`share_out` left it) of ``run`` in
    step with process 0; return the run once training ends here.

    A collective that fails (process 0 or another worker stopped) raises TrainingError naming this worker.
    """
    from ..fitting import fit

    if observer is None:
        observer = Observer()
    observer.on_run_created(run)
    done = processes.give_signs_of_life()
    try:
        fit(model, config, data, observer=observer, initial_epoch=initial_epoch, restore=restore or {})
        done()
    except TrainingError as exc:
        raise TrainingError(f"worker {processes.index()} of run {run.id}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (a failed collective: another process stopped)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = "another process stopped; " if processes.looks_like_lost_peer(exc) else ""
        raise TrainingError(
            f"worker {processes.index()} of run {run.id} stopped: {cause}{type(exc).__name__}: {first}"
        ) from exc
    observer.on_worker_finished(processes.weights_digest(model))
    return run
