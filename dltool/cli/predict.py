"""`dltool predict`: parse, choose the runtime (Keras, or a verified ONNX export without TensorFlow), call, print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import Backend, Checkpoint, RunRef, RunsDir, Threshold, Verbose, err, reported_errors, run_backend

PREDICT_EPILOG = "Example: dltool predict latest new_rows.csv -o predictions.csv --keep id"


def predict(
    run: RunRef,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT",
            help="What the model takes: CSV, Parquet, .npy/.npz or image files; .txt (one text per line) for a text model; a CSV of recent rows for a forecaster; or folders of them.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here (default: standard output).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="csv|json|parquet",
            help="csv, json or parquet (default: parquet for -o FILE.parquet, else csv).",
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep", metavar="COLUMN", help="Copy this CSV or Parquet column (an id) into each output row; repeatable."
        ),
    ] = None,
    checkpoint: Checkpoint = "final",
    threshold: Threshold = None,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            metavar="auto|keras|onnx",
            help="auto: a tabular run with a verified ONNX export (dltool export --format onnx) predicts through onnxruntime, without TensorFlow; keras: always the Keras model.",
        ),
    ] = "auto",
    backend: Backend = None,
    runs_dir: RunsDir = None,
    verbose: Verbose = False,
) -> None:
    """Predict with a run's model on new files, applying its saved preprocessing."""
    with reported_errors():
        from ..commands.predict_onnx import choose_runtime

        # An explicit backend asks for Keras; otherwise a verified ONNX export spares TensorFlow's import.
        chosen = choose_runtime(run, runs_dir, "keras" if backend else runtime, checkpoint)
        if chosen == "keras":
            from ..backend import import_keras

            import_keras(verbose, backend=backend or run_backend(run, runs_dir, must_exist=True))
        from ..commands.predict import predict as run_prediction

        target = output if output is not None else sys.stdout
        result = run_prediction(
            run,
            [str(p) for p in inputs],
            output=target,
            fmt=fmt,
            runs_root=runs_dir,
            keep=keep,
            checkpoint=checkpoint,
            runtime=chosen,
            threshold=threshold,
        )
    if output is not None:
        err.print(
            f"wrote {result.rows} prediction(s) to {output}" + (" (onnxruntime)" if chosen == "onnx" else ""),
            highlight=False,
        )
