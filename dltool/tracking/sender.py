"""A background sender: training hands each epoch's metrics to a queue and never waits on the network."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .store import METRICS_PER_BATCH, describe_failure

_END = object()
# At most one call to the store per this many seconds while training: an epoch of a small model takes 0.1 s, and
# each call (sqlite's write in this process, or the request a server on the same machine answers) takes CPU from
# the fit. One call a second still cost a 4 s fit 7-11 % on 2 cores (benchmarks/RESULTS-tracking.md).
SEND_EVERY_S = 5.0


class MetricSender:
    """A daemon thread that runs ``start()`` (opening the MLflow run: network calls too), then drains a queue of
    (key, value, step) lists into ``send`` (MLflow's log_batch).

    What piled up while a call was out, or in the SEND_EVERY_S since the last one, goes in the next call, up to 1000
    metrics each; ``close`` sends what is left at once. After the first failure
    (the server is away) nothing more is sent: ``error`` says why, and `dltool runs sync` sends the rest later.
    """

    def __init__(self, send: Callable[[list], None], start: Callable[[], None] | None = None):
        self._send, self._start = send, start
        self._finish: Callable[[], None] | None = None
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self.started = threading.Event()  # set once ``start()`` returned or failed
        self.error: str | None = None
        self._thread = threading.Thread(target=self._drain, name="dltool-mlflow-sender", daemon=True)
        self._thread.start()

    def put(self, measured: list[tuple[str, float, int]]) -> None:
        """Queue metrics to send; returns at once."""
        if measured:
            self._queue.put(measured)

    def close(self, timeout: float, finish: Callable[[], None] | None = None) -> bool:
        """Send what is queued, then run ``finish`` (the end's uploads) unless a call failed, waiting at most
        ``timeout`` seconds in all; whether everything was dealt with in that time."""
        self._finish = finish
        self._closing.set()
        self._queue.put(_END)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _drain(self) -> None:
        if self._start is not None:
            try:
                self._start()
            except Exception as exc:  # noqa: BLE001  (the store away at the start: nothing is sent)
                self.error = describe_failure(exc)
        self.started.set()
        done = False
        while not done:
            batch: list = []
            item = self._queue.get()
            while True:
                if item is _END:
                    done = True
                    break
                batch.extend(item)
                if len(batch) >= METRICS_PER_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch and self.error is None:
                began = time.monotonic()
                try:
                    self._send(batch)
                except Exception as exc:  # noqa: BLE001  (a store away or refusing: the run goes on, unsynced)
                    self.error = describe_failure(exc)
                if not done:
                    self._closing.wait(SEND_EVERY_S - (time.monotonic() - began))
        if self._finish is not None and self.error is None:
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001  (as for the metrics: `dltool runs sync` sends it later)
                self.error = describe_failure(exc)
