"""Dynamic batching: samples of concurrent requests merged into one model call, as TF Serving's batching does.

Requests queue their samples; one asyncio task takes up to ``max_batch`` of them,
waiting at most ``wait_ms`` after the first for more to arrive, and runs the
model on a single worker thread so the event loop keeps accepting requests
meanwhile. A request larger than ``max_batch`` is split into pieces that are
batched like any other. ``max_batch=1`` calls the model once per sample: no
merging (the baseline of the benchmark).

The wait ends early once no request is on its way: the server announces each
request it is reading (:meth:`DynamicBatcher.arriving`), so a lone client is
not kept waiting for companions that cannot come, while under load the batch
still fills with the requests being read. A lone request (nothing queued, no
model call running, no other request being read) is not batched at all: the
model is called at once on the event loop, which saves the hand-over to the
worker thread and back (about 0.1 ms per request, measured), and blocks nothing
that could have joined it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

INLINE_MAX_S = 0.002  # the hand-over to the worker thread costs about 0.1 ms: worth saving on calls this short


@dataclass
class _Piece:
    x: np.ndarray
    done: asyncio.Future


class DynamicBatcher:
    """Merge concurrent ``predict`` calls into model calls of at most ``max_batch`` samples."""

    def __init__(
        self,
        call: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int = 64,
        wait_ms: float = 5.0,
        observe: Callable[[int, float], None] | None = None,
    ):
        """``call`` runs the model on a batch (on the worker thread); ``observe(batch size, seconds)`` per call."""
        self.call, self.max_batch, self.wait = call, max(1, int(max_batch)), max(0.0, wait_ms) / 1000
        self.observe = observe
        self._pieces: collections.deque[_Piece] = collections.deque()
        self._queued = 0  # samples in _pieces
        self._work = asyncio.Event()  # set when pieces are queued: the idle batcher task wakes
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dltool-model")
        self._task: asyncio.Task | None = None
        self._arriving = 0  # requests being read that will bring samples
        self._calling = False  # a model call is running
        self._hopeful = 0  # lone-looking requests giving the others read in the same turn a chance to show up
        self._last_call_s = float("inf")  # the latest model call's duration: a long one is never made inline
        # The forming batch's wait: resolved once it need not wait longer. One future per batch, resolved once,
        # rather than an Event the batch re-awaits after every request read (asyncio.wait_for makes a Task each
        # time): under load that was one wake-up of the batcher per request.
        self._waking: asyncio.Future | None = None

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap the reading of a request that will call :meth:`predict`: the batch being formed waits for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1  # its samples are queued (or it failed): a waiting batch may go now
            self._wake_if_complete()

    def start(self) -> None:
        """Start taking batches (call from the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dltool-batcher")

    async def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs for the samples ``x``, computed in whichever batches they join."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        if self._alone(len(x)):
            self._hopeful += 1
            try:
                await asyncio.sleep(0)  # requests read in the same turn of the event loop run their steps first
            finally:
                self._hopeful -= 1
            if self._alone(len(x)):
                return self._call(x)
        loop = asyncio.get_running_loop()
        pieces = [_Piece(x[i : i + self.max_batch], loop.create_future()) for i in range(0, len(x), self.max_batch)]
        self._pieces.extend(pieces)
        self._queued += len(x)
        self._idle.clear()
        self._work.set()
        self._wake_if_complete()
        if len(pieces) == 1:  # the common case; gather() would add a future of its own per request
            return await pieces[0].done
        return np.concatenate(await asyncio.gather(*(p.done for p in pieces)))

    async def stop(self) -> None:
        """Answer every queued sample, then stop the task and the worker thread."""
        if self._task is not None and not self._task.done():
            await self._idle.wait()  # set once the queue is empty and no call is running
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def _call(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs for ``x``, observed (on whichever thread calls it)."""
        started = time.perf_counter()
        y = self.call(x)
        self._last_call_s = time.perf_counter() - started
        if self.observe is not None:
            self.observe(len(x), self._last_call_s)
        return y

    def _alone(self, samples: int) -> bool:
        """Whether a request of ``samples`` is best answered by calling the model at once, on the event loop:
        no request is queued, being read or hoping the same, no call is running, and calls are short enough
        (INLINE_MAX_S) that the event loop, blocked meanwhile, delays nobody noticeably."""
        return not (self._pieces or self._calling or self._arriving or self._hopeful) and (
            samples <= self.max_batch and self._last_call_s <= INLINE_MAX_S
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pieces:
                self._idle.set()
                self._work.clear()
                await self._work.wait()
            if self.max_batch > 1 and self.wait > 0:
                await self._gather_more(loop.time() + self.wait)
            batch = self._take()
            x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
            self._calling = True
            try:
                y = await loop.run_in_executor(self._executor, self._call, x)
            except Exception as exc:  # noqa: BLE001  (the requests of this batch get the error, the server goes on)
                for piece in batch:
                    if not piece.done.done():
                        piece.done.set_exception(exc)
                continue
            finally:
                self._calling = False
            start = 0
            for piece in batch:
                if not piece.done.done():  # a client that went away cancelled its future
                    piece.done.set_result(y[start : start + len(piece.x)])
                start += len(piece.x)

    def _must_wait(self) -> bool:
        """Whether the forming batch should wait on: a request is on its way and the batch is not full."""
        return bool(self._arriving) and self._queued < self.max_batch

    def _wake_if_complete(self) -> None:
        if self._waking is not None and not self._waking.done() and not self._must_wait():
            self._waking.set_result(None)

    async def _gather_more(self, deadline: float) -> None:
        """Wait until ``max_batch`` samples are queued, no request is on its way, or ``deadline`` passes."""
        if not self._must_wait():
            return
        loop = asyncio.get_running_loop()
        self._waking = waking = loop.create_future()
        timer = loop.call_at(deadline, _resolve, waking)
        try:
            await waking
        finally:
            timer.cancel()
            self._waking = None

    def _take(self) -> list[_Piece]:
        """The queued pieces that fit in one call (always at least one)."""
        batch = [self._pieces.popleft()]
        rows = len(batch[0].x)
        while self._pieces and rows + len(self._pieces[0].x) <= self.max_batch:
            piece = self._pieces.popleft()
            batch.append(piece)
            rows += len(piece.x)
        self._queued -= rows
        return batch


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
