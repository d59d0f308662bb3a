"""`serve`: a run's model behind TensorFlow Serving's REST API (and dltool's ``:label``), on uvicorn.

The socket is bound here, before the server starts, so a busy port is a
one-line error and ``--port 0`` picks a free one. SIGTERM and Ctrl-C stop
accepting connections, answer every request already sent (with
``Connection: close``), let the batcher drain, and return normally: the
command exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DltoolError, UsageError
from ..installation import pip_install
from ..runs import Run

TOKEN_ENV = "DLTOOL_SERVE_TOKEN"
SERVE_MODULES = {
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus_client",
    "orjson": "orjson",
}
SERVE_MODULES["multipart"] = "python-multipart"
EXAMPLE_VALUES = 16  # an example request is shown in full up to this many values per sample
DRAIN_GRACE_S = 1.0  # after SIGTERM, seconds an idle keep-alive connection stays open for a request on its way


@dataclass
class ServeSettings:
    """How ``dltool serve`` listens and batches (the CLI's options, with their defaults)."""

    host: str = "127.0.0.1"
    port: int = 8501
    max_batch: int = 64
    batch_wait_ms: float = 5.0
    token: str | None = None
    max_body_mb: float = 32.0
    checkpoint: str = "final"
    threshold: float | None = None  # --threshold: overrides a binary run's decision threshold for :label

    def check(self) -> None:
        """Refuse values the server cannot use, before the model loads."""
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port: expected 0 to 65535 (0: any free port), received {self.port}")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch: expected an integer >= 1, received {self.max_batch}")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise UsageError(f"--batch-wait-ms: expected 0 to 10000 milliseconds, received {self.batch_wait_ms:g}")
        if not self.max_body_mb > 0:
            raise UsageError(f"--max-body-mb: expected a size in MB > 0, received {self.max_body_mb:g}")
        if self.token is not None and not self.token.strip():
            raise UsageError(f"--token (or ${TOKEN_ENV}): expected a non-empty token, received an empty one")


@dataclass
class ServerInfo:
    """What a started server tells its user: where it listens, what it serves, an example request."""

    url: str
    name: str
    run_id: str
    checkpoint: str
    max_batch: int
    batch_wait_ms: float
    token: bool
    predict_example: str  # a JSON body for :predict
    label_example: str | None  # a JSON body for :label, where the run has column names or texts


def require_serve_extra() -> None:
    """Raise (exit 2, naming the pip command) unless the ``serve`` extra is installed."""
    missing = [package for module, package in SERVE_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise DltoolError(f"dltool serve needs {', '.join(missing)}, not installed: {pip_install('serve')}")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; a busy port or unknown host is a UsageError."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host: cannot listen on '{host}' ({exc}); expected an address such as 127.0.0.1") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without, a response written in two parts waits for the client's
        # delayed ACK (40 ms per request with uvicorn's h11 protocol, measured).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"--port: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port (0: any free one)"
        ) from None
    return sock


def _example(served) -> tuple[str, str | None]:
    import json

    state, sig = served.state, served.signature
    if sig.dtype == "string":
        text = "a text to label"
        return json.dumps({"instances": [text]}), json.dumps({"texts": [text]})
    values = int(np.prod(sig.shape))
    if values > EXAMPLE_VALUES:
        return f'{{"instances": [<{values} numbers as {list(sig.shape)} arrays>]}}', None
    sample = np.zeros(sig.shape) if state.mean is None else np.asarray(state.mean, dtype=np.float64).reshape(sig.shape)
    sample = sample * (state.scale or 1)  # the training data's mean, raw: a plausible sample
    instance = [round(float(v), 3) for v in sample.reshape(-1)]
    nested = np.asarray(instance).reshape(sig.shape).tolist()
    label = None
    if state.feature_names and state.kind == "array":
        label = json.dumps({"rows": [dict(zip(state.feature_names, instance))]})
    return json.dumps({"instances": [nested]}), label


def serve(
    ref: str | Run,
    settings: ServeSettings,
    *,
    runs_root: str | Path | None = None,
    on_ready: Callable[[ServerInfo], None] | None = None,
) -> None:
    """Serve the run ``ref`` until SIGTERM or Ctrl-C; ``on_ready`` is called once the server accepts requests."""
    require_serve_extra()
    settings.check()
    from ..serving.app import build_app
    from ..serving.servable import ServedModel

    served = ServedModel.open(ref, runs_root, settings.checkpoint, settings.threshold)
    sock = bind_socket(settings.host, settings.port)
    served.warm_up()
    app = build_app(
        served,
        max_batch=settings.max_batch,
        batch_wait_ms=settings.batch_wait_ms,
        token=settings.token,
        max_body_mb=settings.max_body_mb,
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    predict_example, label_example = _example(served)
    info = ServerInfo(
        url=f"http://{shown}:{port}",
        name=served.name,
        run_id=served.run_id,
        checkpoint=settings.checkpoint,
        max_batch=settings.max_batch,
        batch_wait_ms=settings.batch_wait_ms,
        token=settings.token is not None,
        predict_example=predict_example,
        label_example=label_example,
    )
    server = make_server(
        app,
        lambda: on_ready(info) if on_ready else None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        proxy_headers=False,  # nothing here uses the client's address: one ASGI layer less per request
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def make_server(app, ready: Callable[[], None] = lambda: None, *, grace_s: float = DRAIN_GRACE_S, **options):
    """uvicorn's server for the ASGI ``app`` (``options``: uvicorn.Config's) that stops gracefully on SIGTERM or
    Ctrl-C and then returns normally; ``ready`` is called once it accepts requests.

    A graceful stop closes the listening socket, then answers every request that reaches an open connection
    within ``grace_s`` seconds, each response with ``Connection: close`` so the connection closes after it (the
    client reconnects and is refused). Connections still idle after that are closed, as the keep-alive
    timeout would; then the batcher answers what it holds.
    """
    import uvicorn

    class Server(uvicorn.Server):
        stopping = False  # the listening socket is closed: every response now closes its connection

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                ready()

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises a caught signal once shut down; after a graceful stop the command exits 0 instead.
            getattr(self, "_captured_signals", []).clear()

        async def shutdown(self, sockets=None) -> None:
            # uvicorn's own shutdown closes idle keep-alive connections at once, so a request already on its way
            # to one is reset (1 in 3 runs with 32 clients, issue 20). Stop accepting first (a client then
            # reconnecting is refused, never reset), and close connections by answering instead.
            for listener in self.servers:
                listener.close()
            for sock in sockets or []:
                sock.close()
            self.stopping = True
            deadline = time.monotonic() + grace_s
            while self.server_state.connections and not self.force_exit and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await super().shutdown(sockets=sockets)  # closes the idle rest, waits for the busy, then the lifespan

    server = Server(uvicorn.Config(_ClosingWhenStopping(app, lambda: server.stopping), **options))
    return server


class _ClosingWhenStopping:
    """ASGI wrapper: once ``stopping()``, each response says ``Connection: close`` (uvicorn then closes the
    connection after sending it)."""

    def __init__(self, app, stopping: Callable[[], bool]):
        self.app, self.stopping = app, stopping

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.stopping():
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
