"""Helpers for the serving tests: a real uvicorn server on a free loopback port, in a thread; a fake model."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np


@contextmanager
def running_server(served, **options):
    """Serve ``served`` with ``build_app(**options)`` on 127.0.0.1:<free port>; yield (base URL, app)."""
    import uvicorn

    from dltool.commands.serve import bind_socket
    from dltool.serving.app import build_app

    app = build_app(served, **options)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class FakeModel:
    """A Keras-like 4-in, 3-out softmax model in NumPy: the HTTP layer tested without TensorFlow."""

    inputs = [SimpleNamespace(name="input_layer")]  # as in runs trained before inputs were named "inputs"
    output_shape = (None, 3)

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls: list[int] = []
        self.weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        if self.delay:
            time.sleep(self.delay)
        logits = np.asarray(x, dtype=np.float32) @ self.weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


FEATURES = ["f1", "f2", "f3", "f4"]


def fake_served(delay: float = 0.0):
    """A ServedModel over :class:`FakeModel`, with a CSV run's column names and standardization."""
    from dltool.data.preprocessing import Preprocessing
    from dltool.serving.servable import ServedModel

    state = Preprocessing(
        input_shape=[4],
        task="classification",
        mean=[1.0, 2.0, 3.0, 4.0],
        std=[2.0, 2.0, 2.0, 2.0],
        class_names=["a", "b", "c"],
        feature_names=list(FEATURES),
        target_names=["y"],
    )
    saved = SimpleNamespace(
        preprocessing=state, config=SimpleNamespace(name="fake"), run=SimpleNamespace(id="20260101-000000-fake-0000")
    )
    return ServedModel(saved, FakeModel(delay))


def metric_value(text: str, name: str) -> float:
    """The value of the first sample line of ``name`` (with its labels) in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} in:\n{text}")
