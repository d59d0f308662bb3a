"""keep_workers: how many workers it starts, and what it tells the caller when one exits (no processes: fakes)."""

from __future__ import annotations

import itertools

from dltool.distributed import supervisor


class FakeWorker:
    """A worker that runs for ``polls`` looks of the supervisor, then exits with ``code``."""

    pids = itertools.count(1000)

    def __init__(self, polls: int, code: int = 0):
        self.pid, self.polls, self.code, self.returncode = next(self.pids), polls, code, None

    def poll(self):
        if self.returncode is None and self.polls <= 0:
            self.returncode = self.code
        return self.returncode

    def tick(self) -> None:
        self.polls -= 1


def run(monkeypatch, lifetimes: list[int], unfinished, workers: int, started=None) -> list[FakeWorker]:
    """keep_workers over fake workers whose lifetimes (in polls) are taken in order as they start."""
    started = [] if started is None else started
    lives = iter(lifetimes)

    def start():
        started.append(FakeWorker(next(lives)))
        return started[-1]

    monkeypatch.setattr(supervisor, "pause", lambda: [worker.tick() for worker in started])
    assert supervisor.keep_workers(start, workers, unfinished=unfinished, recycle=True) == []
    return started


def test_two_workers_that_retire_together_get_one_successor_when_one_task_is_left(monkeypatch):
    asked, started = [], []

    def unfinished(died, live):  # 3 tasks; a worker does one, then retires (as --trials-per-worker 1)
        asked.append((died, live))
        done = sum(worker.returncode is not None for worker in started)
        return done + live < 3

    run(monkeypatch, [1, 1, 1, 1], unfinished, workers=2, started=started)
    # The first exited worker is asked about with the other counted out (it exited too): one successor starts;
    # the second is asked about with that successor running: none. Counting running tasks, both got one.
    assert asked == [(False, 0), (False, 1), (False, 0)] and len(started) == 3


def test_a_worker_that_retires_while_another_runs_is_asked_about_with_that_one_live(monkeypatch):
    asked = []

    def unfinished(died, live):
        asked.append((died, live))
        return False

    run(monkeypatch, [1, 3], unfinished, workers=2)
    assert asked == [(False, 1), (False, 0)]
