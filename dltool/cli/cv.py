"""`dltool cv`: start, resume or join a k-fold cross-validation, and `dltool cv show`: parse, call, print."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrainingError, UsageError
from .common import (
    AsJson,
    Overrides,
    RunsDir,
    Verbose,
    dead_worker_printer,
    err,
    keras_for_run_after_run,
    out,
    reported_errors,
    say,
    warn_tracking,
)

CV_EXAMPLE = (
    "Example: dltool cv configs/digits_mlp.yaml --folds 5   |   dltool cv --resume latest   |   "
    "dltool cv show latest --json"
)


def cv_command(
    target: Annotated[
        str | None, typer.Argument(metavar="CONFIG | show", help="The experiment to cross-validate; or `show ID`.")
    ] = None,
    shown: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="With `show`: the cv id, a unique prefix or 'latest'.", show_default=False),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds", "-k", metavar="K", help="Cut the labelled data into K folds; each is once the test split."
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", metavar="R", help="Repeat the K folds R times, each reshuffled.")
    ] = 1,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="COLUMN",
            help="csv/parquet: a column whose rows stay in one fold together (a patient, a user).",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", metavar="ID", help="Finish this cv: run the folds still missing, never one done."),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option("--join", metavar="ID", help="Take folds of this running cv (how --workers starts its workers)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", metavar="N", help="Worker processes, each taking folds until none is left."),
    ] = 1,
    overrides: Overrides = None,
    runs_dir: RunsDir = None,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow",
            metavar="URI",
            help="Log the cv to MLflow at this tracking URI as a parent run, each fold a nested child run, "
            "as the experiment's tracking.mlflow does; needs the tracking extra.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No line per fold.")] = False,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """k-fold cross-validation: every fold an ordinary run; the cv lives in cvs/<id>/ beside runs/ (cv.json)."""
    from ..cv import run as cvs
    from ..cv.report import write_result
    from .display.cv import fold_line, print_cv, summary_table

    with reported_errors():
        if target == "show":
            result = write_result(cvs.open_cv(shown or "latest", runs_root=runs_dir))
            if as_json:
                out.print_json(json.dumps(result))
            else:
                print_cv(out, result)
            return
        if sum(x is not None for x in (target, resume, join)) != 1:
            raise UsageError(
                "give one of: a CONFIG to cross-validate with --folds K, --resume ID, --join ID (or `show ID`)"
            )
        if target is not None:
            if folds is None:
                raise UsageError("--folds: give the number of folds, e.g. dltool cv CONFIG --folds 5")
            cv = cvs.create_cv(
                Path(target), folds, repeats=repeats, group=group, overrides=overrides, runs_root=runs_dir
            )
            say(
                f"cv {cv.id}: {folds} folds"
                + (f" x {repeats} repeats" if repeats > 1 else "")
                + (f", grouped by {group}" if group else "")
                + f" of {cv.base.name} in {cv.folder}"
            )
            for warning in cv.settings.get("warnings", []):
                err.print(f"warning: {warning}", highlight=False, markup=False)
        else:
            if folds is not None or repeats != 1 or group is not None or overrides:
                raise UsageError(
                    "--folds, --repeats, --group and --set start a cv; a resumed or joined cv keeps its own"
                )
            cv = cvs.open_cv(resume or join, runs_root=runs_dir)
            if resume:
                cv.enqueue_missing()
        cv.mlflow_uri = mlflow
        tracking = nullcontext() if join else cvs.tracked(cv, mlflow_uri=mlflow)
        with tracking as parent:  # the cv as an MLflow parent run, its folds nested (when tracked)
            warn_tracking(parent)
            if workers > 1 and not join:
                cvs.run_workers(
                    cv,
                    workers,
                    runs_root=runs_dir,
                    quiet=quiet,
                    on_worker_died=dead_worker_printer("its fold runs again"),
                )
            else:
                keras_for_run_after_run(verbose, cv.base)
                cvs.work(
                    cv,
                    runs_root=runs_dir,
                    on_fold_end=None if quiet else lambda row: say(fold_line(row, cv.settings["folds"])),
                )
        warn_tracking(parent)
        if join:
            return
        result = write_result(cv)
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(summary_table(result))
        say(f"cv {cv.id}: {result['done']}/{result['planned']} folds done; wrote {cv.folder / 'cv.json'}")
        if result["done"] < result["planned"]:
            raise TrainingError(f"cv {cv.id} has folds left; finish it with: dltool cv --resume {cv.id}")
        if result["failed"]:
            raise TrainingError(f"{result['failed']} fold(s) of cv {cv.id} failed: see dltool cv show {cv.id}")
