"""The dynamic batcher on its own: lone requests called at once on the event loop, concurrent ones merged."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from dltool.serving.batcher import INLINE_MAX_S, DynamicBatcher


class Model:
    """Doubles its inputs; records each call's batch size and the thread it ran on."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self.threads = delay, [], []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        return 2 * x


async def _serve(batcher: DynamicBatcher, work):
    batcher.start()
    try:
        return await work()
    finally:
        await batcher.stop()


def test_a_lone_request_is_answered_on_the_event_loop_once_calls_are_known_to_be_short():
    model = Model()
    batcher = DynamicBatcher(model, max_batch=64, wait_ms=50)

    async def work():
        answers = [await batcher.predict(np.full((1, 2), i, dtype=np.float32)) for i in range(3)]
        return answers

    started = time.perf_counter()
    answers = asyncio.run(_serve(batcher, work))
    assert time.perf_counter() - started < 1.0  # none waited the 50 ms for companions
    assert [a.tolist() for a in answers] == [[[0, 0]], [[2, 2]], [[4, 4]]]
    # The first call's duration is unknown, so it runs on the worker thread; the next ones, known short, do not.
    assert model.threads[0].startswith("dltool-model") and model.threads[1:] == ["MainThread", "MainThread"]


def test_a_model_slower_than_the_inline_limit_always_runs_on_the_worker_thread():
    model = Model(delay=INLINE_MAX_S * 5)
    batcher = DynamicBatcher(model, max_batch=64, wait_ms=1)

    async def work():
        for _ in range(3):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))

    asyncio.run(_serve(batcher, work))
    assert all(name.startswith("dltool-model") for name in model.threads)  # the event loop is never blocked long


def test_requests_that_come_together_are_merged_even_when_each_looks_alone():
    model = Model()
    batcher = DynamicBatcher(model, max_batch=64, wait_ms=5)

    async def work():
        await batcher.predict(np.zeros((1, 2), dtype=np.float32))  # the call's duration is now known: short
        model.calls.clear()
        # Eight requests read in the same turn of the event loop: none is queued yet when each checks, yet only
        # the first may think itself alone, and it then sees the others.
        samples = [np.full((1, 2), i, dtype=np.float32) for i in range(8)]
        return await asyncio.gather(*(batcher.predict(x) for x in samples))

    answers = asyncio.run(_serve(batcher, work))
    assert [a[0, 0] for a in answers] == [2 * i for i in range(8)]  # each got its own sample's answer
    assert sum(model.calls) == 8 and len(model.calls) < 8


def test_a_forming_batch_waits_for_a_request_being_read_and_not_longer():
    model = Model()
    batcher = DynamicBatcher(model, max_batch=64, wait_ms=2000)

    async def work():
        await batcher.predict(np.zeros((1, 2), dtype=np.float32))
        model.calls.clear()

        async def slow_reader():
            with batcher.arriving():
                await asyncio.sleep(0.05)  # still reading its body when the first request is queued
            return await batcher.predict(np.ones((1, 2), dtype=np.float32))

        started = time.perf_counter()
        reader = asyncio.ensure_future(slow_reader())
        await asyncio.sleep(0)  # the reader has announced itself
        first = await batcher.predict(np.zeros((1, 2), dtype=np.float32))
        await reader
        return first, time.perf_counter() - started

    (first, seconds) = asyncio.run(_serve(batcher, work))
    assert model.calls == [2]  # the queued request waited for the one being read, and they went together
    assert seconds < 1.0  # not the 2 s batch wait: the batch went as soon as the reader's sample was queued
    assert first.tolist() == [[0, 0]]


def test_a_full_batch_goes_without_waiting_for_requests_still_being_read():
    model = Model()
    batcher = DynamicBatcher(model, max_batch=4, wait_ms=2000)

    async def work():
        await batcher.predict(np.zeros((1, 2), dtype=np.float32))
        model.calls.clear()
        with batcher.arriving():  # a request being read for longer than the test
            started = time.perf_counter()
            await batcher.predict(np.zeros((4, 2), dtype=np.float32))
            return time.perf_counter() - started

    assert asyncio.run(_serve(batcher, work)) < 1.0
    assert model.calls == [4]


def test_a_failing_model_fails_the_requests_of_its_call_and_the_batcher_goes_on():
    failing = {"now": True}

    def model(x):
        if failing["now"]:
            raise ValueError("model broke")
        return x

    batcher = DynamicBatcher(model, max_batch=8, wait_ms=1)

    async def work():
        with pytest.raises(ValueError, match="model broke"):
            await batcher.predict(np.ones((1, 2)))
        failing["now"] = False
        return await batcher.predict(np.ones((1, 2)))

    assert asyncio.run(_serve(batcher, work)).tolist() == [[1, 1]]


def test_a_request_that_fails_while_being_read_does_not_hold_the_batch_it_was_awaited_by():
    model = Model()
    batcher = DynamicBatcher(model, max_batch=64, wait_ms=2000)

    async def work():
        await batcher.predict(np.zeros((1, 2), dtype=np.float32))

        async def broken_reader():
            with batcher.arriving():
                await asyncio.sleep(0.05)
                raise ConnectionError("the client went away")

        started = time.perf_counter()
        reader = asyncio.ensure_future(broken_reader())
        await asyncio.sleep(0)
        await batcher.predict(np.zeros((1, 2), dtype=np.float32))
        with pytest.raises(ConnectionError):
            await reader
        return time.perf_counter() - started

    assert asyncio.run(_serve(batcher, work)) < 1.0  # not the 2 s batch wait
