"""Worker processes started and watched by a parent: `dltool launch`'s training processes and the sweep's workers.

A worker runs in its own session (a terminal's Ctrl-C reaches the parent only, which decides what each worker
is told) and is sent SIGTERM by Linux when the parent dies, so no orphan trains on after a ``kill -9``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

POLL_SECONDS = 0.2  # how often the parent looks at its workers


def die_with_parent() -> None:
    """In a worker, before exec: SIGTERM it when the parent process dies (Linux), so no orphan trains on.

    Workers run in their own session, so they would otherwise outlive a ``kill -9`` of their parent.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a worker outliving its killed parent finishes its work, which is safe


def start_worker(command: list[str], *, env=None, stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``command`` in a session of its own, to die with this process."""
    return subprocess.Popen(
        command, env=env, stdout=stdout, stderr=stderr, start_new_session=True, preexec_fn=die_with_parent
    )


@contextmanager
def signals_forwarded_to(worker: subprocess.Popen) -> Iterator[None]:
    """While inside, Ctrl-C and SIGTERM sent to this process go to ``worker`` instead."""

    def forward(signum, frame):
        if worker.poll() is None:
            worker.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ask_to_stop(workers: list[subprocess.Popen]) -> None:
    """Ask each worker once to stop cleanly (SIGINT: its run INTERRUPTED) and wait; a second Ctrl-C here asks
    again, which a worker takes as "stop at once", as `dltool train` does."""
    for attempt in range(2):
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
        try:
            for worker in workers:
                worker.wait()
            return
        except KeyboardInterrupt:
            if attempt == 1:
                raise


def end(workers: list[subprocess.Popen], grace_seconds: float = 5) -> None:
    """SIGTERM every worker still running, then SIGKILL those that do not stop within ``grace_seconds``."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def keep_workers(
    start: Callable[[], subprocess.Popen],
    workers: int,
    *,
    unfinished: Callable[[bool, int], bool],
    recycle: bool = False,
    on_worker_died: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Keep ``workers`` processes from ``start()`` running while work is left; return the failed exit codes.

    ``unfinished(died, live)`` says whether work is left for one more worker; ``died``: a worker was just killed by
    a signal (``kill -9``, the OOM killer), whose own task still shows as running until the caller reclaims it;
    ``live``: how many other workers still run (a fresh one may not have taken its task yet). A killed worker is
    replaced (``on_worker_died(pid, signal)`` is told), at most ``3 * workers`` times in all, so a task that
    always kills its worker ends as an error; with ``recycle``, a worker that exits 0 while work is left is
    replaced by a fresh one. Ctrl-C here asks every worker to stop cleanly and is raised again.
    """
    children, failed, replacements = [start() for _ in range(workers)], [], 0
    try:
        while children:
            pause()
            for child in [c for c in children if c.poll() is not None]:
                children.remove(child)
                if child.returncode < 0 and child.returncode != -signal.SIGINT:
                    if on_worker_died is not None:
                        on_worker_died(child.pid, -child.returncode)
                    left = unfinished(True, live(children))
                    if left and replacements < 3 * workers:
                        replacements += 1
                        children.append(start())
                    elif left:
                        failed.append(child.returncode)
                elif child.returncode != 0:
                    failed.append(child.returncode)
                elif recycle and unfinished(False, live(children)):
                    children.append(start())
    except KeyboardInterrupt:
        ask_to_stop(children)
        raise
    return failed


def live(children: list[subprocess.Popen]) -> int:
    """How many of ``children`` still run (one that exited counts out before its turn in the loop comes)."""
    return sum(child.poll() is None for child in children)


def pause() -> None:
    """Wait a moment before looking at the workers again."""
    time.sleep(POLL_SECONDS)
