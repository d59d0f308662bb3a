"""`dltool runs` and its subcommands show, compare and rm: parse, make one library call, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import AsJson, RunRef, RunsDir, out, reported_errors, say

PLOT_EPILOG = "Example: dltool plot 20261124-1012 20261124-1030 -o compare.png --metric loss"

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=False)


@runs_app.callback(
    invoke_without_command=True, epilog="Example: dltool runs --status COMPLETED --sort accuracy --limit 5"
)
def runs_list(
    ctx: typer.Context,
    runs_dir: RunsDir = None,
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only these statuses, e.g. FAILED or COMPLETED,INTERRUPTED.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only runs whose name contains this (or matches this glob).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(metavar="WHEN", help="Only runs started since: 2h, 3d, 1w or a date 2026-11-24.")
    ] = None,
    sort: Annotated[
        str | None, typer.Option(metavar="METRIC", help="Sort by a test metric, best first (e.g. accuracy, loss).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Show at most this many (the newest, or the best with --sort).")
    ] = None,
    sweep: Annotated[
        str | None, typer.Option(metavar="ID", help="Only the trials of this sweep (id or prefix).")
    ] = None,
    cv: Annotated[str | None, typer.Option(metavar="ID", help="Only the folds of this cv (id or prefix).")] = None,
    as_json: AsJson = False,
) -> None:
    """List runs: id, name, status, epochs, test metrics, duration. Subcommands: show, compare, sync, rm."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = runs_dir
        return
    from ..commands.runs_report import select_runs
    from .display.reports import runs_table

    root = _root(ctx, runs_dir)
    with reported_errors():
        rows = select_runs(root, status=status, name=name, since=since, sort=sort, limit=limit, sweep=sweep, cv=cv)
    if as_json:
        out.print_json(json.dumps(rows))
    elif not rows:
        say(
            f"no runs{' match' if any((status, name, since, sweep, cv)) else ''} in {root}; train one with: dltool train CONFIG"
        )
    else:
        out.print(runs_table(rows, title=f"runs in {root}"))


def _root(ctx: typer.Context, runs_dir: Path | None) -> Path:
    from ..runs import runs_dir as resolve_runs_dir

    return resolve_runs_dir(runs_dir or (ctx.parent.obj if ctx.parent else None))


@runs_app.command("show", epilog="Example: dltool runs show latest")
def runs_show(ctx: typer.Context, run: RunRef = "latest", runs_dir: RunsDir = None, as_json: AsJson = False) -> None:
    """Show one run: status, final metrics, per-epoch history as a chart, config and files."""
    from ..commands.runs_report import show_run
    from ..runs import Run
    from .display.reports import print_run

    with reported_errors():
        shown = show_run(Run.resolve(run, _root(ctx, runs_dir)))
    if as_json:
        out.print_json(json.dumps({k: v for k, v in shown.items() if k != "metrics"}))
    else:
        print_run(out, shown)


@runs_app.command(
    "sync",
    epilog="Example: dltool runs sync latest   |   dltool runs sync --all   |   dltool runs sync latest --mlflow URI",
)
def runs_sync(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN", help="Runs to sync.", show_default=False)] = None,
    every: Annotated[
        bool, typer.Option("--all", metavar="", help="Every tracked run that has ended and is not synced.")
    ] = False,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow",
            metavar="URI",
            help="The MLflow store (default: the one the run recorded, else the config's, else "
            "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
        ),
    ] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Push runs' whole record to MLflow (parameters, tags, per-epoch metrics, artifacts); nothing if already there."""
    from ..runs import Run

    with reported_errors():
        if bool(runs) == every:
            raise UsageError("give the runs to sync or --all (not both)")
        from ..tracking.sync import runs_to_sync, sync_run
        from .display.training import model_note

        root = _root(ctx, runs_dir)
        found = runs_to_sync(root) if every else [Run.resolve(ref, root) for ref in runs or []]
        if not found:
            say(f"no runs to sync in {root}: every tracked run that has ended is synced")
            return
        for run in found:
            done = sync_run(run, mlflow)
            where = f"MLflow run {done['run_id']} (experiment {done['experiment_id']}) at {done['uri']}"
            if done["already_synced"]:
                say(f"run {run.id}: already synced, {where}")
            else:
                model = done["model"]
                logged = f", the model {model['model_uri']}" + model_note(model) if model.get("model_uri") else ""
                say(
                    f"run {run.id}: synced to {where}: {done['metrics']} metric values, {done['artifacts']} artifacts"
                    + logged
                )


@runs_app.command("compare", epilog="Example: dltool runs compare 20261124-1012 20261124-1030")
def runs_compare(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Two or more runs, or two or more cv ids.")],
    runs_dir: RunsDir = None,
    as_json: AsJson = False,
) -> None:
    """Compare runs: the config values that differ, final metrics side by side, best epochs; or cross-validations
    (cv ids): each test metric's mean and std."""
    from ..commands.runs_report import compare_runs
    from ..errors import RunNotFoundError
    from ..runs import Run
    from .display.reports import print_comparison

    with reported_errors():
        root = _root(ctx, runs_dir)
        try:
            found = [Run.resolve(r, root) for r in runs]
        except RunNotFoundError as exc:
            cvs = _cvs(runs, root)
            if cvs is None:
                raise exc from None
            from ..cv.report import compare, write_result
            from .display.cv import print_cv_comparison

            compared = compare([write_result(cv) for cv in cvs])
            if as_json:
                out.print_json(json.dumps(compared))
            else:
                print_cv_comparison(out, compared)
            return
        compared = compare_runs(found)
    if as_json:
        out.print_json(json.dumps(compared))
    else:
        print_comparison(out, compared)


def _cvs(refs: list[str], root: Path) -> list | None:
    """The cross-validations named by ``refs`` (cv ids or prefixes) when every one is a cv; None otherwise."""
    from ..cv.run import open_cv
    from ..errors import RunNotFoundError

    try:
        return [open_cv(ref, runs_root=root) for ref in refs]
    except RunNotFoundError:
        return None


@runs_app.command("rm", epilog="Example: dltool runs rm 20261124-1012 --yes   |   dltool runs rm --status FAILED")
def runs_rm(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN", help="Runs to delete.", show_default=False)] = None,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help="Also every run with this status, e.g. FAILED or FAILED,DIED."),
    ] = None,
    runs_dir: RunsDir = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete run folders (asks first unless --yes; a live RUNNING run is never deleted)."""
    from ..commands.runs_report import removable_runs
    from ..runs import remove_run

    with reported_errors():
        found = removable_runs(runs or [], _root(ctx, runs_dir), status=status)
        if not found:
            say(f"no {status} runs to delete")
            return
        for run in found:
            say(f"  {run.path}")
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("refusing to delete without confirmation: no terminal to ask on; add --yes")
            typer.confirm(f"Delete {len(found)} run folder(s)?", abort=True)
        for run in found:
            remove_run(run)
    say(f"deleted {len(found)} run(s)")


def plot(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Runs to overlay.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="FILE", help="The image to write: .png, .pdf, .svg, .jpg or .jpeg."),
    ] = Path("runs.png"),
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", metavar="METRIC", help="Metrics to draw (default: all shared)."),
    ] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Overlay the training curves of several runs in one image (PNG, PDF, SVG or JPEG, chosen by the suffix)."""
    from ..commands.runs_report import plot_runs
    from ..runs import runs_dir as resolve_runs_dir

    with reported_errors():
        drawn = plot_runs(runs, resolve_runs_dir(runs_dir), output, metric)
    say(f"wrote {output} ({', '.join(drawn)} for {len(runs)} runs)")
