"""The ASGI app of ``dltool serve`` (Starlette): TF Serving's REST API, ``:label``, health, metrics, OpenAPI.

Every request passes one guard (:class:`Guard`): the bearer token, the body
size limit, the metrics, and the last line of defence that turns any
unexpected exception into a JSON 500 so the server always answers the next
request. Client mistakes are :class:`~dltool.errors.RequestError` (or another
:class:`~dltool.errors.DltoolError` from the shared readers): a 4xx
``{"error": "..."}`` saying what was expected and what was received.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import DltoolError, RequestError
from .batcher import DynamicBatcher
from .label import label_files, label_json
from .monitoring import ServeMetrics
from .openapi import openapi_document
from .protocol import parse_json, parse_predict, predict_answer
from .servable import ServedModel

log = logging.getLogger("dltool.serve")
MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<verb>/metadata|:predict|:label|:classify|:regress)?$"
)
OPEN_PATHS = frozenset({"/healthz"})  # liveness probes carry no token
MAX_UPLOADS = 1000


def endpoint_of(path: str) -> str:
    """The metrics label of a request path (a fixed set, whatever clients send)."""
    if path in ("/healthz", "/metrics", "/openapi.json"):
        return path.strip("/").removesuffix(".json")
    if not path.startswith("/v1/models/"):
        return "other"
    for suffix, name in ((":predict", "predict"), (":label", "label"), ("/metadata", "metadata")):
        if path.endswith(suffix):
            return name
    return "status"


def _error(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class JSONBytes(Response):
    """A response whose body is JSON already encoded (:func:`~dltool.serving.protocol.encode_json`)."""

    media_type = "application/json"


_JSON_HEADERS = ((b"content-type", b"application/json"),)


async def _send_json(send, body: bytes) -> None:
    """A 200 with the JSON ``body``, as two ASGI messages: the fast path's answer, without a Response object."""
    headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The outermost ASGI app: token check, body size limit, request metrics, JSON 500s for the unexpected, and
    ``POST .../NAME:predict`` answered itself; everything else goes on to the Starlette ``app``."""

    def __init__(self, app, *, metrics: ServeMetrics, token: str | None, max_body_mb: float, predict=None):
        self.app, self.metrics, self.token = app, metrics, token
        self.max_body_mb, self.max_body = max_body_mb, int(max_body_mb * 2**20)
        # `POST .../NAME:predict` answered here, before Starlette's middleware, router, request objects and
        # Response classes: they were about a third of the event loop's time per request under load (py-spy), and
        # the event loop, one Python thread, is what limits requests/s once batching has merged the model calls.
        self.predict = predict

    @property
    def state(self):
        """The Starlette app's ``state`` (the served model, its batcher and metrics)."""
        return self.app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, endpoint = time.perf_counter(), endpoint_of(scope["path"])
        answer = {"status": 500, "sent": False}

        async def watched_send(message):
            if message["type"] == "http.response.start":
                answer["status"], answer["sent"] = message["status"], True
            await send(message)

        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise self._too_large(f"received more than {self.max_body:,} bytes")
            return message

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, watched_send)
            elif self.predict is not None and scope["method"] == "POST" and scope["path"].endswith(":predict"):
                try:
                    body = await self.predict(scope["path"], lambda: _read_body(limited_receive))
                except DltoolError as exc:
                    await _error(str(exc), getattr(exc, "status", 400))(scope, receive, watched_send)
                else:
                    await _send_json(watched_send, body)
            else:
                await self.app(scope, limited_receive, watched_send)
        except Exception:  # noqa: BLE001  (the server must answer, and go on answering)
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            if not answer["sent"]:
                await _error("internal error: see the server's log", 500)(scope, receive, watched_send)
        finally:
            self.metrics.observe_request(endpoint, answer["status"], time.perf_counter() - started)

    def _refusal(self, scope) -> Response | None:
        """A 401 or 413 answered before the app reads anything, or None."""
        headers = {}
        for key, value in scope["headers"]:  # only the two it needs: this runs for every request
            if key.lower() in (b"authorization", b"content-length"):
                headers[key.decode("latin-1").lower()] = value.decode("latin-1")
        if self.token and scope["path"] not in OPEN_PATHS:
            sent = headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
                what = "no Authorization header" if not sent else "a wrong token"
                return _error(
                    f"Unauthorized: expected the header 'Authorization: Bearer <token>', received {what}",
                    401,
                    {"WWW-Authenticate": "Bearer"},
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(f"Bad request: expected a Content-Length in bytes, received '{length}'", 400)
            if int(length) > self.max_body:
                return _error(self._too_large(f"received {int(length):,} bytes").args[0], 413)
        return None

    def _too_large(self, received: str) -> RequestError:
        return RequestError(
            f"Request body too large: expected at most {self.max_body_mb:g} MB ({self.max_body:,} bytes; "
            f"dltool serve --max-body-mb), {received}",
            413,
        )


async def _read_body(receive) -> bytes:
    """The whole request body (ASGI ``http.request`` messages until ``more_body`` is false)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("Bad request: the client closed the connection before sending the whole body", 400)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refused(request: Request, exc: Exception) -> Response:
    return _error(str(exc), getattr(exc, "status", 400))


async def _internal(request: Request, exc: Exception) -> Response:
    # Starlette then re-raises to the Guard, which logs the traceback; the client gets JSON as from the Guard.
    return _error("internal error: see the server's log", 500)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (404, 405):
        return _error(f"Malformed request: {request.method} {request.url.path}", exc.status_code)
    return _error(f"Bad request: {exc.detail}", exc.status_code)


class _Endpoints:
    """The routes' handlers, around one served model, its batcher and its metrics."""

    def __init__(self, served: ServedModel, batcher: DynamicBatcher, metrics: ServeMetrics):
        self.served, self.batcher, self.metrics = served, batcher, metrics
        self.document = openapi_document(served)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.served.name, "run": self.served.run_id})

    async def metrics_text(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)

    async def model_route(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        match = MODEL_PATH.match(path)
        if match is None:
            raise RequestError(f"Malformed request: {method} {path}", 404)
        verb = match["verb"]
        self.served.answers_to(match["name"], match["version"])
        if verb in (":classify", ":regress"):
            raise RequestError(f"{verb[1:]} is not served: this model's signature is predict; POST to :predict", 400)
        if method == "GET" and verb in (None, "/metadata"):
            return JSONResponse(self.served.status() if verb is None else self.served.metadata())
        if method == "POST" and verb == ":predict":
            return JSONBytes(await self.predict(path, request.body))
        if method == "POST" and verb == ":label" and match["version"] is None:
            return await self.label(request)
        wanted = "POST" if verb in (":predict", ":label") else "GET"
        raise RequestError(f"Malformed request: {method} {path}; expected {wanted}", 405 if method != wanted else 404)

    async def predict(self, path: str, read_body) -> bytes:
        """TF Serving's predict: the JSON answer to the body (``await read_body()``) POSTed to ``path``; RequestError
        for a client's mistake. The body is read inside ``batcher.arriving()``, so a forming batch waits for it."""
        match = MODEL_PATH.match(path)
        if match is None or match["verb"] != ":predict":
            raise RequestError(f"Malformed request: POST {path}", 404)
        self.served.answers_to(match["name"], match["version"])
        with self.batcher.arriving():
            body = await read_body()
            booleans = b"true" in body or b"false" in body
            raw, form = parse_predict(parse_json(body), self.served.signature, booleans=booleans)
            x = self.served.prepare(raw, "instances" if form == "row" else "inputs")
        return predict_answer(await self.batcher.predict(x), form)

    async def label(self, request: Request) -> Response:
        with self.batcher.arriving():
            x, rows = await self.label_inputs(request)
        outputs = await self.batcher.predict(x)
        return JSONResponse({"model": self.served.name, "predictions": self.served.labelled(outputs, rows)})

    async def label_inputs(self, request: Request) -> tuple:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=MAX_UPLOADS, max_fields=MAX_UPLOADS)
            try:
                uploads = [(v.filename, await v.read()) for _, v in form.multi_items() if isinstance(v, UploadFile)]
            finally:
                await form.close()
            x, rows = await run_in_threadpool(label_files, uploads, self.served)
        else:
            raw, rows = label_json(parse_json(await request.body()), self.served)
            x = self.served.prepare(raw, "rows")
        return x, rows

    @asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        yield
        await self.batcher.stop()  # uvicorn has finished the requests in flight: nothing is dropped


def build_app(
    served: ServedModel,
    *,
    max_batch: int = 64,
    batch_wait_ms: float = 5.0,
    token: str | None = None,
    max_body_mb: float = 32.0,
) -> Guard:
    """The server for ``served`` (an ASGI app): its batcher and metrics live in ``app.state``."""
    metrics = ServeMetrics(max_batch)
    batcher = DynamicBatcher(
        served.run_model, max_batch=max_batch, wait_ms=batch_wait_ms, observe=metrics.observe_batch
    )
    endpoints = _Endpoints(served, batcher, metrics)
    app = Starlette(
        routes=[
            Route("/healthz", endpoints.healthz, methods=["GET"]),
            Route("/metrics", endpoints.metrics_text, methods=["GET"]),
            Route("/openapi.json", endpoints.openapi, methods=["GET"]),
            Route("/v1/models/{rest:path}", endpoints.model_route, methods=["GET", "POST"]),
        ],
        exception_handlers={DltoolError: _refused, HTTPException: _http_error, Exception: _internal},
        lifespan=endpoints.lifespan,
    )
    app.state.served, app.state.batcher, app.state.metrics = served, batcher, metrics
    return Guard(app, metrics=metrics, token=token, max_body_mb=max_body_mb, predict=endpoints.predict)
