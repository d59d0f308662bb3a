"""The `dltool` command line: parse, call the library, print. Imports the library lazily.

`dltool --help`, `--version`, `runs`, `validate`'s schema part and `schema`
never import TensorFlow (a test checks `import dltool.cli` leaves it out).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ._version import __version__
from .errors import DltoolError, UsageError
from .runs import RUNS_DIR_ENV

app = typer.Typer(
    name="dltool",
    help="Train Keras 3 models from YAML experiments; every run is a self-contained folder under runs/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")

# Without a terminal (CI logs, pipes) rich would squeeze tables into 80 columns; give them room instead.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
out = Console(soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, soft_wrap=True)

RunsDir = Annotated[
    Optional[Path],
    typer.Option("--runs-dir", envvar=RUNS_DIR_ENV, help=f"Folder of run folders (default ./runs, or ${RUNS_DIR_ENV})."),
]
Overrides = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value; VALUE is YAML: --set train.epochs=3 --set 'train.optimizer={name: sgd}'."),
]  # fmt: skip
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show TensorFlow's own log messages.")]
RunRef = Annotated[str, typer.Argument(help="Run id, unique id prefix, 'latest', or path to a run folder.")]


@contextmanager
def reported_errors():
    """Turn a DltoolError into one line on stderr and its exit code; never a traceback."""
    try:
        yield
    except DltoolError as exc:
        err.print(f"error: {exc}", style="red" if err.is_terminal else None, highlight=False, markup=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"dltool {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Train Keras 3 models from YAML experiments."""


# --------------------------------------------------------------------------- train
@app.command(epilog="Example: dltool train configs/digits_mlp.yaml --set train.epochs=5   |   dltool train --resume latest")
def train(
    config: Annotated[Optional[Path], typer.Argument(help="The experiment YAML file.")] = None,
    overrides: Overrides = None,
    resume: Annotated[Optional[str], typer.Option("--resume", metavar="RUN",
                      help="Continue an INTERRUPTED, FAILED or died run from its last checkpoint, with its own config.")] = None,
    runs_dir: RunsDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain lines, one per epoch (for CI logs).")] = False,
    verbose: Verbose = False,
) -> None:
    """Train the model a config describes and save everything in a new run folder."""
    from .display import TrainingDisplay, metrics_table, use_plain_output

    with reported_errors():
        if (config is None) == (resume is None):
            raise UsageError("give either a CONFIG to train or --resume RUN (not both)")
        if resume is not None and overrides:
            raise UsageError("--resume continues a run with its own saved config; --set cannot change it. "
                             "Train a new run with --set instead")  # fmt: skip
        display = TrainingDisplay(out, plain=use_plain_output(out, quiet))
        from .backend import import_keras

        if resume is not None:
            import_keras(verbose)
            from .experiment import resume as resume_training

            run = resume_training(resume, runs_root=runs_dir, observer=display)
        else:
            from .config import load_config

            experiment = load_config(config, overrides or [])
            import_keras(verbose)
            from .experiment import train as run_training

            run = run_training(experiment, overrides or [], runs_root=runs_dir, observer=display)
        metrics = run.read_json("metrics.json")
        out.print(metrics_table(metrics, title=f"{run.info.get('name')}: {metrics['epochs']} epochs"))
        if metrics.get("weights"):
            learned = "  ".join(f"{layer}.{name}={[round(v, 4) for v in values]}"
                                for layer, weights in metrics["weights"].items() for name, values in weights.items())  # fmt: skip
            out.print(f"learned weights: {learned}", highlight=False)
        info = run.info
        out.print(f"run {run.id} COMPLETED in {info.get('duration_s', 0):.1f}s -> {run.path}", highlight=False)
        out.print(f"next: dltool evaluate {run.id}", highlight=False)


# --------------------------------------------------------------------------- evaluate
@app.command(epilog="Example: dltool evaluate latest")
def evaluate(
    run: RunRef = "latest",
    data: Annotated[Optional[Path], typer.Option("--data", help="Evaluate on this .npz or .csv (or, for an image model, a folder with one subfolder per class) instead of the run's test split.")] = None,
    runs_dir: RunsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print evaluation.json instead of tables.")] = False,
    verbose: Verbose = False,
) -> None:
    """Evaluate a run's saved model; write evaluation.json into the run."""
    from rich.table import Table

    from .display import format_value

    with reported_errors():
        from .backend import import_keras

        import_keras(verbose)
        from .commands.evaluate import evaluate as run_evaluation

        result = run_evaluation(run, data_file=data, runs_root=runs_dir)
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"{result['run']} on {result['samples']} samples ({result['data']})", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["compiled"].items():
        table.add_row(name, format_value(value))
    report = result.get("classification") or result.get("regression")
    for name, value in report.items():
        if not isinstance(value, (dict, list)) and name not in result["compiled"]:
            table.add_row(name, format_value(value))
    out.print(table)
    if "classification" in result:
        per_class = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, values in result["classification"]["per_class"].items():
            per_class.add_row(name, *(format_value(values[k]) for k in ("precision", "recall", "f1", "support")))
        out.print(per_class)
    out.print("wrote evaluation.json", highlight=False)


# --------------------------------------------------------------------------- predict
@app.command(epilog="Example: dltool predict latest new_rows.csv -o predictions.csv")
def predict(
    run: RunRef,
    inputs: Annotated[list[Path], typer.Argument(help="What the model takes: CSV, .npy/.npz or image files; .txt (one text per line) for a text model; a CSV of recent rows for a forecaster; or folders of them.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here (default: standard output).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json.")] = "csv",
    runs_dir: RunsDir = None,
    verbose: Verbose = False,
) -> None:
    """Predict with a run's model on new files, applying its saved preprocessing."""
    with reported_errors():
        from .backend import import_keras

        import_keras(verbose)
        from .commands.predict import predict as run_prediction

        target = output if output is not None else sys.stdout
        result = run_prediction(run, [str(p) for p in inputs], output=target, fmt=fmt, runs_root=runs_dir)
    if output is not None:
        err.print(f"wrote {result.rows} prediction(s) to {output}", highlight=False)


# --------------------------------------------------------------------------- validate / schema
@app.command(epilog="Example: dltool validate configs/mnist_mlp.yaml --set data.path=mnist.npz")
def validate(
    config: Annotated[Path, typer.Argument(help="The experiment YAML file.")],
    overrides: Overrides = None,
    schema_only: Annotated[bool, typer.Option("--schema-only", help="Check the config alone: no data, no TensorFlow.")] = False,
    verbose: Verbose = False,
) -> None:
    """Check a config without training: print it resolved, then load the data and build the model."""
    with reported_errors():
        from .config import config_to_yaml, load_config, resolve_paths

        experiment = load_config(config, overrides or [])
        out.print(config_to_yaml(resolve_paths(experiment)), highlight=False, markup=False)
        if schema_only:
            out.print(f"{config}: config is valid", highlight=False)
            return
        from .backend import import_keras

        import_keras(verbose)
        from .experiment import prepare
        from .model import summary_text

        data, model = prepare(resolve_paths(experiment))
    out.print(summary_text(model), highlight=False, markup=False)
    sizes = data.sizes()
    val = "the test split" if sizes["validation_is_test"] else (sizes["validation"] or "none")
    out.print(f"data: {sizes['train']} train, validation {val}, {sizes['test']} test "
              f"({sizes['test_split']}); samples {data.preprocessing.input_shape}", highlight=False)  # fmt: skip
    out.print(f"{config}: config, data and model are valid", highlight=False)


@app.command(epilog="Example: dltool schema > dltool.schema.json")
def schema() -> None:
    """Print the JSON Schema of config files (for editor completion and inline errors)."""
    from .config import json_schema

    out.print_json(json.dumps(json_schema()))


# --------------------------------------------------------------------------- runs
STATUS_COLOURS = {"COMPLETED": "green", "FAILED": "red", "INTERRUPTED": "yellow", "RUNNING": "cyan", "DIED": "magenta"}


def _status(status: str) -> str:
    return f"[{STATUS_COLOURS.get(status, 'white')}]{status}[/]"


@runs_app.callback(invoke_without_command=True,
                   epilog="Example: dltool runs --status COMPLETED --sort accuracy --limit 5")  # fmt: skip
def runs_list(
    ctx: typer.Context,
    runs_dir: RunsDir = None,
    status: Annotated[Optional[str], typer.Option(help="Only these statuses, e.g. FAILED or COMPLETED,INTERRUPTED.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Only runs whose name contains this (or matches this glob).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs started since: 2h, 3d, 1w or a date 2026-11-24.")] = None,
    sort: Annotated[Optional[str], typer.Option(help="Sort by a test metric, best first (e.g. accuracy, loss).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Show at most this many (the newest, or the best with --sort).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List runs: id, name, status, epochs, test metrics, duration. Subcommands: show, compare, rm."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = runs_dir
        return
    from rich.table import Table

    from .display import format_value
    from .runs import runs_dir as resolve_runs_dir
    from .runs_report import select_runs

    root = resolve_runs_dir(runs_dir)
    with reported_errors():
        rows = select_runs(root, status=status, name=name, since=since, sort=sort, limit=limit)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(f"no runs{' match' if any((status, name, since)) else ''} in {root}; train one with: dltool train CONFIG",
                  highlight=False)  # fmt: skip
        return
    table = Table(title=f"runs in {root}", title_justify="left")
    for column in ("id", "name", "status", "epochs", "test metrics", "duration"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in list(row["test"].items())[:3])
        duration = f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else "-"
        epochs = f"{row.get('epochs_done') or 0}/{row.get('epochs_planned') or '?'}"
        table.add_row(row["id"], row.get("name") or "-", _status(row["status"]), epochs,
                      metrics or (row.get("error") or "")[:70], duration)  # fmt: skip
    out.print(table)


def _root(ctx: typer.Context, runs_dir: Optional[Path]) -> Path:
    from .runs import runs_dir as resolve_runs_dir

    return resolve_runs_dir(runs_dir or (ctx.parent.obj if ctx.parent else None))


@runs_app.command("show", epilog="Example: dltool runs show latest")
def runs_show(ctx: typer.Context, run: RunRef = "latest", runs_dir: RunsDir = None,
              as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:  # fmt: skip
    """Show one run: status, final metrics, per-epoch history as a chart, config and files."""
    from rich.table import Table

    from .display import format_value, metrics_table
    from .runs import Run
    from .runs_report import read_config, read_history, read_json_or_none, sparkline, summarize

    with reported_errors():
        found = Run.resolve(run, _root(ctx, runs_dir))
    summary = summarize(found)
    history = read_history(found)
    files = {str(p.relative_to(found.path)): p.stat().st_size for p in sorted(found.path.rglob("*")) if p.is_file()}
    if as_json:
        out.print_json(json.dumps({**summary, "config": read_config(found), "history": history, "files": files}))
        return
    out.print(f"[bold]{found.id}[/]  {_status(summary['status'])}  {summary.get('epochs_done') or 0}/"
              f"{summary.get('epochs_planned') or '?'} epochs  {summary.get('device') or ''}  "
              f"{summary.get('params') or 0:,} parameters", highlight=False)  # fmt: skip
    if summary.get("error"):
        out.print(f"reason: {summary['error']}", highlight=False)
    metrics = read_json_or_none(found.file("metrics.json"))
    if metrics:
        out.print(metrics_table(metrics, title="final metrics"))
        best = metrics.get("best_epoch") or {}
        if best:
            out.print(f"best epoch {int(best['epoch'])}: " + "  ".join(f"{k}={format_value(v)}" for k, v in best.items()
                      if k not in ("epoch", "epoch_seconds", "learning_rate")), highlight=False)  # fmt: skip
    if history:
        chart = Table(title="history (first → last epoch)", title_justify="left")
        for column in ("value", "first", "last", "min", "max", "curve"):
            chart.add_column(column, justify="left" if column in ("value", "curve") else "right")
        for key in history[0]:
            if key in ("epoch", "epoch_seconds"):
                continue
            values = [row.get(key) for row in history]
            clean = [v for v in values if v is not None]
            chart.add_row(key, *(format_value(v) for v in (clean[0], clean[-1], min(clean), max(clean))), sparkline(values))
        out.print(chart)
    out.print("[bold]config[/]", highlight=False)
    out.print(found.file("config.yaml").read_text(encoding="utf-8").rstrip(), highlight=False, markup=False)
    out.print("[bold]files[/]  " + "  ".join(f"{name} ({_size(size)})" for name, size in files.items()
                                             if not name.startswith("tensorboard/")), highlight=False)  # fmt: skip


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@runs_app.command("compare", epilog="Example: dltool runs compare 20261124-1012 20261124-1030")
def runs_compare(ctx: typer.Context, runs: Annotated[list[str], typer.Argument(help="Two or more runs.")],
                 runs_dir: RunsDir = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:  # fmt: skip
    """Compare runs: the config values that differ, final metrics side by side, best epochs."""
    from rich.table import Table

    from .display import format_value
    from .runs import Run
    from .runs_report import config_differences, lower_is_better, read_config, summarize

    with reported_errors():
        if len(runs) < 2:
            raise UsageError("give at least two runs to compare")
        found = [Run.resolve(r, _root(ctx, runs_dir)) for r in runs]
    summaries = [summarize(r) for r in found]
    differences = config_differences([read_config(r) for r in found])
    metric_names: list[str] = []
    for s in summaries:
        metric_names += [m for m in s["test"] if m not in metric_names]
    if as_json:
        out.print_json(json.dumps({"runs": [s["id"] for s in summaries], "config_differences": differences,
                                   "test": {m: [s["test"].get(m) for s in summaries] for m in metric_names},
                                   "best_epoch": [s.get("best_epoch") for s in summaries]}))  # fmt: skip
        return
    table = Table(title="config differences" if differences else "configs are identical", title_justify="left")
    table.add_column("key")
    for s in summaries:
        table.add_column(s["id"], overflow="fold")
    for key, values in differences.items():
        table.add_row(key, *(f"[yellow]{format_value(v)}[/]" for v in values))
    out.print(table)
    results = Table(title="test metrics (best in bold)", title_justify="left")
    results.add_column("metric")
    for s in summaries:
        results.add_column(s["id"], justify="right", overflow="fold")
    for metric in metric_names:
        values = [s["test"].get(metric) for s in summaries]
        present = [v for v in values if v is not None]
        best = (min if lower_is_better(metric) else max)(present) if present else None
        results.add_row(metric, *(("[bold green]" + format_value(v) + "[/]") if v == best and len(present) > 1
                                  else format_value(v) for v in values))  # fmt: skip
    results.add_row("status", *(_status(s["status"]) for s in summaries))
    results.add_row("best epoch", *(str(int(s["best_epoch"]["epoch"])) if s.get("best_epoch") else "-" for s in summaries))
    results.add_row("duration", *(f"{s['duration_s']:.1f}s" if s.get("duration_s") else "-" for s in summaries))
    out.print(results)


@runs_app.command("rm", epilog="Example: dltool runs rm 20261124-1012 --yes")
def runs_rm(ctx: typer.Context, runs: Annotated[list[str], typer.Argument(help="Runs to delete.")],
            runs_dir: RunsDir = None,
            yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:  # fmt: skip
    """Delete run folders (asks first unless --yes; a live RUNNING run is never deleted)."""
    from .runs import RUNNING, Run, remove_run

    with reported_errors():
        found = [Run.resolve(r, _root(ctx, runs_dir)) for r in runs]
        live = [r for r in found if r.status == RUNNING]
        if live:
            raise UsageError(f"run {live[0].id} is still RUNNING; stop it before deleting it")
        for run in found:
            out.print(f"  {run.path}", highlight=False)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("refusing to delete without confirmation: no terminal to ask on; add --yes")
            typer.confirm(f"Delete {len(found)} run folder(s)?", abort=True)
        for run in found:
            remove_run(run)
    out.print(f"deleted {len(found)} run(s)", highlight=False)


# --------------------------------------------------------------------------- plot / init
@app.command(epilog="Example: dltool plot 20261124-1012 20261124-1030 -o compare.png --metric loss")
def plot(
    runs: Annotated[list[str], typer.Argument(help="Runs to overlay.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")] = Path("runs.png"),
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="Metrics to draw (default: all shared).")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Overlay the training curves of several runs in one PNG."""
    from .plots import overlay
    from .runs import Run, runs_dir as resolve_runs_dir
    from .runs_report import read_history

    with reported_errors():
        found = [Run.resolve(r, resolve_runs_dir(runs_dir)) for r in runs]
        histories = {r.id: read_history(r) for r in found}
        empty = [rid for rid, rows in histories.items() if not rows]
        if empty:
            raise UsageError(f"run {empty[0]} has no history yet")
        drawn = overlay(histories, output, metric)
        if not drawn:
            raise UsageError(f"the runs share no metric{' named ' + ', '.join(metric) if metric else ''} to draw")
    out.print(f"wrote {output} ({', '.join(drawn)} for {len(found)} runs)", highlight=False)


@app.command(epilog="Example: dltool init csv-classifier my_experiment.yaml")
def init(
    template: Annotated[str, typer.Argument(help="Template: mnist-mlp, csv-classifier, csv-regression, image-classifier, text-classifier, forecaster")] = "mnist-mlp",
    path: Annotated[Optional[Path], typer.Argument(help="Where to write (default: <template>.yaml here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config that validates as written."""
    from .templates import write_template

    with reported_errors():
        written = write_template(template, path, force=force)
    out.print(f"wrote {written}; check it with: dltool validate {written}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
