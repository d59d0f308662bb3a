"""`dltool sweep`: start, resume or join a hyperparameter sweep, and `dltool sweep show`: parse, call, print."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import (
    AsJson,
    JUnitFile,
    RunsDir,
    Verbose,
    dead_worker_printer,
    keras_for_run_after_run,
    out,
    reported_errors,
    say,
    warn_tracking,
)

SweepTarget = Annotated[
    str | None, typer.Argument(metavar="SWEEP.yaml | show", help="The sweep file to start; or `show ID`.")
]


SWEEP_EXAMPLE = (
    "Example: dltool sweep configs/sweeps/digits_lr.yaml   |   dltool sweep --resume latest   |   "
    "dltool sweep show latest --json"
)


def sweep_command(
    target: SweepTarget = None,
    shown: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", help="With `show`: the sweep id, a unique prefix or 'latest'.", show_default=False
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="ID", help="Finish this sweep: run the trials still missing, never one already done."
        ),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            "--join",
            metavar="ID",
            help="Take trials of this running sweep (another terminal or machine; with --storage).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", metavar="N", help="Worker processes, each running trials until the sweep is done."
        ),
    ] = 1,
    trials_per_worker: Annotated[
        int | None,
        typer.Option(
            "--trials-per-worker",
            metavar="K",
            help="Each worker process exits after K trials and a fresh one takes over, which keeps TensorFlow's memory flat in long sweeps [default: 20; with --join: until the sweep is done]. 0: run the trials in this process.",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            envvar="DLTOOL_SWEEP_STORAGE",
            show_envvar=True,
            help="A database the workers share, e.g. postgresql://user@host/db (default: a journal file in the sweep folder). Its password is never written to disk: give it here or in the variable, or through PGPASSWORD / ~/.pgpass.",
        ),
    ] = None,
    runs_dir: RunsDir = None,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow",
            metavar="URI",
            help="Log the sweep to MLflow at this tracking URI as a parent run, each trial a nested child run, "
            "as the experiment's tracking.mlflow does; needs the tracking extra.",
        ),
    ] = None,
    junit: JUnitFile = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No line per trial.")] = False,
    as_json: AsJson = False,
    schema: Annotated[
        bool, typer.Option("--schema", metavar="", help="Print the JSON Schema of sweep files and exit.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Search hyperparameters with Optuna: every trial is an ordinary run; the sweep lives in sweeps/<id>/ beside runs/."""
    from ..sweep import run as sweeps
    from ..sweep.report import write_plots, write_summary

    if schema:
        from ..sweep.spec import sweep_json_schema

        out.print_json(json.dumps(sweep_json_schema()))
        return
    with reported_errors():
        if target == "show":
            sweep_obj = sweeps.open_sweep(shown or "latest", runs_root=runs_dir, storage_url=storage)
            summary = write_summary(sweep_obj)
            plots = write_plots(sweep_obj, summary)
            if as_json:
                out.print_json(json.dumps(summary))
                return
            from .display.reports import print_sweep

            print_sweep(out, summary)
            if plots:
                say(f"plots: {', '.join(str(sweep_obj.folder / p) for p in plots)}")
            return
        if sum(x is not None for x in (target, resume, join)) != 1:
            raise UsageError("give one of: a SWEEP.yaml to start, --resume ID, --join ID (or `show ID`)")
        if junit is not None:
            from ..fileio import check_output_file

            check_output_file(junit, "JUnit report", "--junit")
        if target is not None:
            sweep_obj = sweeps.create_sweep(Path(target), runs_root=runs_dir, storage_url=storage)
            say(f"sweep {sweep_obj.id}: {sweep_obj.spec.trials} trials ({sweep_obj.spec.method}) in {sweep_obj.folder}")
        else:
            sweep_obj = sweeps.open_sweep(resume or join, runs_root=runs_dir, storage_url=storage)
        if trials_per_worker is not None and trials_per_worker < 0:
            raise UsageError(f"--trials-per-worker: expected a number >= 0, received {trials_per_worker}")
        if trials_per_worker is None and not join:
            trials_per_worker = sweeps.TRIALS_PER_WORKER
        sweep_obj.mlflow_uri = mlflow
        tracking = nullcontext() if join else sweeps.tracked(sweep_obj, mlflow_uri=mlflow, runs_root=runs_dir)
        with tracking as parent:  # the sweep as an MLflow parent run, its trials nested (when tracked)
            warn_tracking(parent)
            if (workers > 1 or trials_per_worker) and not join:
                sweeps.run_workers(
                    sweep_obj,
                    workers,
                    runs_root=runs_dir,
                    storage_url=storage,
                    trials_per_worker=trials_per_worker or None,
                    quiet=quiet,
                    on_worker_died=dead_worker_printer("its trial will be retried once"),
                )
            else:
                from .display.reports import trial_line

                keras_for_run_after_run(verbose, sweep_obj.base)
                metric = sweep_obj.spec.objective.metric
                sweeps.work(
                    sweep_obj,
                    runs_root=runs_dir,
                    max_trials=(trials_per_worker or None) if join else None,
                    on_trial_end=None if quiet else lambda row: say(trial_line(row, metric)),
                )
        warn_tracking(parent)
        if join:
            return
        summary = write_summary(sweep_obj)
        write_plots(sweep_obj, summary)
        if junit is not None:
            from ..reports import sweep_cases, write_junit

            write_junit(junit, sweep_cases(summary))
    best = summary["best"]
    say(
        f"sweep {sweep_obj.id}: {summary['trials_done']}/{summary['trials_planned']} trials done; "
        + (
            f"best {summary['objective']['metric']} {best['objective']:.4g} in trial {best['trial']}, run {best['run']}"
            if best
            else "no trial completed"
        )
    )
    used_up = sweeps.space_used_up(sweep_obj)
    if used_up:
        say(used_up)
    say(f"the ranked table: dltool sweep show {sweep_obj.id}")
