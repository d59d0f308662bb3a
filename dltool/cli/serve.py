"""`dltool serve`: parse, start the server, print where it listens and an example request."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from .common import Backend, Checkpoint, RunRef, RunsDir, Threshold, Verbose, reported_errors, run_backend, say

SERVE_EPILOG = (
    "Example: dltool serve latest   |   dltool serve latest --port 8080 --max-batch 128 --token $TOKEN   |   "
    "curl -s localhost:8501/v1/models/NAME"
)


def serve_command(
    run: RunRef,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Interface to listen on; 0.0.0.0 for every one.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", metavar="PORT", help="TCP port (0: any free one).")] = 8501,
    max_batch: Annotated[
        int,
        typer.Option("--max-batch", metavar="N", help="Most samples per model call (1: no batching)."),
    ] = 64,
    batch_wait_ms: Annotated[
        float,
        typer.Option("--batch-wait-ms", metavar="MS", help="How long a batch waits for more requests to join it."),
    ] = 5.0,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="DLTOOL_SERVE_TOKEN",
            metavar="TOKEN",
            show_envvar=True,
            help="Require 'Authorization: Bearer TOKEN' on every request but /healthz.",
        ),
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", metavar="MB", help="Largest request body accepted (413 above).")
    ] = 32.0,
    checkpoint: Checkpoint = "final",
    threshold: Threshold = None,
    runs_dir: RunsDir = None,
    backend: Backend = None,
    verbose: Verbose = False,
) -> None:
    """Serve a run's model over TensorFlow Serving's REST API, with dynamic batching and Prometheus metrics."""
    from ..backend import import_keras

    with reported_errors():
        from ..commands.serve import ServeSettings, require_serve_extra, serve

        require_serve_extra()  # before TensorFlow's seconds of import
        settings = ServeSettings(host, port, max_batch, batch_wait_ms, token, max_body_mb, checkpoint, threshold)
        settings.check()
        import_keras(verbose, backend=backend or run_backend(run, runs_dir, must_exist=True))
        serve(run, settings, runs_root=runs_dir, on_ready=_announce)
    say("stopped")


def _announce(info) -> None:
    """Where the server listens, what it serves, and a request to try."""
    base = f"{info.url}/v1/models/{info.name}"
    say(f"serving {info.name} (run {info.run_id}, {info.checkpoint} model) at {info.url}")
    say(f"  TF Serving REST API: GET {base}, GET {base}/metadata, POST {base}:predict")
    say(f"  dltool: POST {base}:label (rows, texts or files, as dltool predict takes)")
    say(f"  also: {info.url}/healthz, {info.url}/metrics, {info.url}/openapi.json")
    batching = (
        "off (--max-batch 1)"
        if info.max_batch == 1
        else f"up to {info.max_batch} samples per model call, waiting up to {info.batch_wait_ms:g} ms"
    )
    say(f"  batching: {batching}; inputs are raw values, preprocessed as in training")
    auth = ' -H "Authorization: Bearer $DLTOOL_SERVE_TOKEN"' if info.token else ""
    say("try:")
    say(f"  curl -s{auth} {base}:predict -d {shlex.quote(info.predict_example)}")
    if info.label_example:
        say(f"  curl -s{auth} {base}:label -d {shlex.quote(info.label_example)}")
    say("Ctrl-C or SIGTERM stops it after the requests in flight.")
