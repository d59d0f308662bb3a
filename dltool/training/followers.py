"""A run trained in several processes: what process 0 does besides a one-process run, and what the others do.

Every process runs the same steps in the same order (each step on the shared model is a collective all of
them must join); process 0 alone records, checkpoints, tests and saves. Processes 1 to N-1 ("followers")
write no run file: their output goes to their observer (the command line sends it to ``workers/<i>.log``).
Alone (:data:`~dltool.distributed.LOCAL`), each of these steps does what one process needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..backend import device_count
from ..config import ExperimentConfig
from ..distributed import group as groups
from ..distributed.group import ProcessGroup, weights_digest
from ..distributed.launcher import write_run_id
from ..errors import TrainingError
from ..runs import FAILED, Run, log_time
from .checkpoints import checkpointed_epoch
from .observer import Observer


def tell_the_others(run: Run, group: ProcessGroup) -> None:
    """Process 0: the other processes (and `dltool launch`) learn which run they train."""
    group.share_run(run.id)
    write_run_id(run.id)


def share_out(run: Run | None, config: ExperimentConfig, data, group: ProcessGroup) -> None:
    """Each process keeps its share of every training and validation batch (the test split stays whole, for
    process 0 to test alone); the splits first become multiples of all processes' devices. Process 0 (``run``
    given) logs the shares."""
    devices = device_count(config.train.devices) * group.size
    share = data.keep_share(group.size, group.rank, devices, config.train.batch_size)
    if run is not None:
        left = ", ".join(f"{n} {split} sample(s)" for split, n in data.left_out.items())
        run.append_log(
            f"{log_time()} {group.size} processes, {share}"
            + (f"; left out so batches split evenly: {left}" if left else "")
        )


def lost_workers(reason: str, group: ProcessGroup) -> str:
    """A failed collective's reason, naming the workers that stopped (known once their heartbeats time out)."""
    missing = group.missing_processes()
    if not missing:
        return f"a worker stopped ({reason})"
    return f"{_workers(missing, group)} stopped (no heartbeat for {groups.HEARTBEAT_SECONDS} s): {reason}"


def _workers(numbers: list[int], group: ProcessGroup) -> str:
    """'worker 1 of 2', 'worker 1, 3 of 4'."""
    return f"worker {', '.join(str(number) for number in numbers)} of {group.size}"


def watch_workers(run: Run, group: ProcessGroup) -> Callable[[], None]:
    """Process 0 of several, while it trains: a worker that gives no sign of life for HEARTBEAT_SECONDS (stopped,
    hung, or cut off from this machine, its sockets still open) ends the run FAILED, naming it, and this process.

    Ending the process is the only way out: its main thread waits in a collective that will never complete.
    Returns ``stop``, for when training ends here (well or not).
    """

    def silent(workers: list[int]) -> None:
        reason = (
            f"{_workers(workers, group)} gave no sign of life for {groups.HEARTBEAT_SECONDS} s "
            "(stopped, hung, or cut off from worker 0)"
        )
        done = checkpointed_epoch(run)
        run.finish(FAILED, error=reason)
        run.append_log(
            f"FAILED: {reason}" + (f"; resume from epoch {done} with: {resume_command(run, group)}" if done else "")
        )
        os._exit(1)

    return group.watch_the_others(silent)


def resume_command(run: Run, group: ProcessGroup) -> str:
    """How to resume ``run``: with `dltool launch` when it trains in several processes."""
    if group.size > 1:
        return f"dltool launch -n {group.size} --resume {run.id}"
    return f"dltool train --resume {run.id}"


def follow(
    run: Run,
    config,
    data,
    model,
    observer=None,
    *,
    group: ProcessGroup,
    initial_epoch: int = 0,
    restore: dict | None = None,
    fine_tune_from: int | None = None,
) -> Run:
    """Processes 1 to N-1: train this process's share (``data`` as :func:`share_out` left it) of ``run`` in
    step with process 0; return the run once training ends here.

    A collective that fails (process 0 or another worker stopped) raises TrainingError naming this worker.
    """
    from .fitting import fit_phases

    if observer is None:
        observer = Observer()
    observer.on_run_created(run)
    done = group.give_signs_of_life()
    try:
        fit_phases(
            model,
            config,
            data,
            observer=observer,
            initial_epoch=initial_epoch,
            restore=restore or {},
            fine_tune_from=fine_tune_from,
            group=group,
        )
        done()
    except TrainingError as exc:
        raise TrainingError(f"worker {group.rank} of run {run.id}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (a failed collective: another process stopped)
        if data.failure is not None:  # a streamed file that cannot be read: its own message, not TensorFlow's
            raise TrainingError(f"worker {group.rank} of run {run.id} stopped: {data.failure}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = "another process stopped; " if group.looks_like_lost_peer(exc) else ""
        raise TrainingError(
            f"worker {group.rank} of run {run.id} stopped: {cause}{type(exc).__name__}: {first}"
        ) from exc
    observer.on_worker_finished(weights_digest(model))
    return run
