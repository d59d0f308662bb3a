"""`dltool export`: parse, call :func:`dltool.commands.export.export`, print the verified artifact and how to use it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import Checkpoint, RunRef, RunsDir, Verbose, existing_run, out, reported_errors

EXPORT_EPILOG = (
    "Example: dltool export latest --format saved_model   |   dltool export latest --format onnx -o model.onnx"
    "   |   dltool export latest --format litert --data rows.csv"
)


def export_command(
    run: RunRef,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="saved_model|onnx|litert",
            help="saved_model (TensorFlow Serving), onnx (ONNX Runtime) or litert (.tflite, LiteRT).",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="saved_model: the folder TF Serving serves from (the model goes to PATH/<name>/<version>/); "
            "onnx/litert: the file, or a folder for <name>.onnx / <name>.tflite. Default: the run's exports/ folder.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Verify on up to 256 samples of this file (what predict reads) instead of the run's test split.",
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep", metavar="COLUMN", help="A CSV column of --data that is no input (an id): ignore it; repeatable."
        ),
    ] = None,
    checkpoint: Checkpoint = "final",
    rtol: Annotated[
        float | None,
        typer.Option(
            "--rtol",
            metavar="R",
            help="Relative tolerance of the check: each output passes when |exported - model.keras| <= "
            "atol + rtol * |model.keras|. Default 1e-5 (1e-4 with recurrent layers or a backbone).",
        ),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            "--atol",
            metavar="A",
            help="Absolute tolerance of the check. Default 1e-5 (1e-4 with recurrent layers or a backbone).",
        ),
    ] = None,
    runs_dir: RunsDir = None,
    verbose: Verbose = False,
) -> None:
    """Export a run's model with its preprocessing inside, verified against model.keras in the target runtime."""
    from ..backend import import_keras

    with reported_errors():
        from ..exporting.verify import tolerance_for

        tolerance_for(False, rtol, atol)  # a bad --rtol/--atol exits 2 before TensorFlow is imported
        existing_run(run, runs_dir)  # and so does a run ref that names no run
        # The converters (SavedModel, tf2onnx, LiteRT) work on TensorFlow graphs: a run trained on jax or torch
        # is loaded on TensorFlow (model.keras is portable) and verified against that.
        import_keras(verbose, backend="tensorflow")
        from ..commands.export import export, serving_commands
        from .display.export import print_export

        record = export(
            run,
            fmt,
            output=output,
            data_file=data,
            checkpoint=checkpoint,
            runs_root=runs_dir,
            keep=keep,
            rtol=rtol,
            atol=atol,
        )
    print_export(out, record, serving_commands(record) if record["format"] == "saved_model" else None)
