"""`dltool evaluate`: a run's saved model on its test split or a given file, reported as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import Backend, Checkpoint, RunRef, RunsDir, Threshold, Verbose, out, reported_errors, run_backend, say

EVALUATE_EPILOG = "Example: dltool evaluate latest   |   dltool evaluate latest --data holdout.csv --checkpoint best"


def evaluate_command(
    run: RunRef = "latest",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Evaluate on this .npz or .csv (or, for an image model, a folder with one subfolder per class) instead of the run's test split.",
        ),
    ] = None,
    runs_dir: RunsDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print the evaluation as JSON instead of tables.")
    ] = False,
    checkpoint: Checkpoint = "final",
    threshold: Threshold = None,
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots",
            help="For a classifier, write ROC, precision-recall and reliability plots beside the JSON.",
        ),
    ] = True,
    backend: Backend = None,
    verbose: Verbose = False,
) -> None:
    """Evaluate a run's saved model; write evaluations/<data set>.json (and evaluation.json) into the run."""
    from ..backend import import_keras
    from .display.reports import print_evaluation

    with reported_errors():
        import_keras(verbose, backend=backend or run_backend(run, runs_dir, must_exist=True))
        from ..commands.evaluate import evaluate as run_evaluation

        result = run_evaluation(
            run, data_file=data, runs_root=runs_dir, checkpoint=checkpoint, plots=plots, threshold=threshold
        )
    if as_json:
        out.print_json(json.dumps(result))
        return
    print_evaluation(out, result)
    say(f"wrote evaluations/{result['name']}.json" + "".join(f", {path}" for path in result.get("plots", [])))
