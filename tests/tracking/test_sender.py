"""The background sender (dltool.tracking.sender): training never waits on the store, a failure stops sending."""

from __future__ import annotations

import threading
import time

from dltool.tracking.sender import MetricSender


def test_put_returns_at_once_while_the_store_is_slow_and_close_sends_everything():
    sent: list[list] = []
    release = threading.Event()

    def slow_send(batch):
        release.wait(5)
        sent.append(list(batch))

    sender = MetricSender(slow_send)
    started = time.perf_counter()
    for epoch in range(1, 51):
        sender.put([("loss", 1.0 / epoch, epoch), ("val_loss", 2.0 / epoch, epoch)])
    assert time.perf_counter() - started < 0.5  # 50 epochs queued while the first call is still out
    release.set()
    assert sender.close(timeout=10) is True
    steps = [step for batch in sent for key, _, step in batch if key == "loss"]
    assert steps == list(range(1, 51))
    assert len(sent) < 50  # what piled up went in fewer calls
    assert sender.error is None


def test_after_the_first_failure_nothing_more_is_sent():
    calls = []

    def failing_send(batch):
        calls.append(batch)
        raise ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch (Connection refused)")

    sender = MetricSender(failing_send)
    sender.put([("loss", 1.0, 1)])
    time.sleep(0.2)
    sender.put([("loss", 0.5, 2)])
    assert sender.close(timeout=5) is True
    assert sender.error == "connection refused"
    assert len(calls) == 1


def test_close_waits_no_longer_than_its_timeout():
    sender = MetricSender(lambda batch: time.sleep(3))
    sender.put([("loss", 1.0, 1)])
    started = time.perf_counter()
    assert sender.close(timeout=0.3) is False
    assert time.perf_counter() - started < 1.5
