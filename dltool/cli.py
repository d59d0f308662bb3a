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
    data: Annotated[Optional[Path], typer.Option("--data", help="Evaluate on this .npz or .csv instead of the run's test split.")] = None,
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
        from .evaluate import evaluate as run_evaluation

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
    inputs: Annotated[list[Path], typer.Argument(help="CSV, .npy/.npz or image files, or folders of them.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here (default: standard output).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json.")] = "csv",
    runs_dir: RunsDir = None,
    verbose: Verbose = False,
) -> None:
    """Predict with a run's model on new files, applying its saved preprocessing."""
    with reported_errors():
        from .backend import import_keras

        import_keras(verbose)
        from .predict import predict as run_prediction

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
    val = "the test split" if data.validation_is_test else (len(data.x_val) if data.x_val is not None else "none")
    out.print(f"data: {len(data.x_train)} train, validation {val}, {len(data.x_test)} test "
              f"({data.test_source}); samples {list(data.x_train.shape[1:])}", highlight=False)  # fmt: skip
    out.print(f"{config}: config, data and model are valid", highlight=False)


@app.command(epilog="Example: dltool schema > dltool.schema.json")
def schema() -> None:
    """Print the JSON Schema of config files (for editor completion and inline errors)."""
    from .config import json_schema

    out.print_json(json.dumps(json_schema()))


# --------------------------------------------------------------------------- runs
@runs_app.callback(invoke_without_command=True, epilog="Example: dltool runs --json")
def runs_list(
    ctx: typer.Context,
    runs_dir: RunsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List runs: id, name, status, epochs, main metrics, duration."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from .display import format_value
    from .runs import effective_status, list_runs, runs_dir as resolve_runs_dir

    root = resolve_runs_dir(runs_dir)
    rows = []
    for run in list_runs(root):
        try:
            info = run.info
        except DltoolError as exc:
            rows.append({"id": run.id, "status": "UNREADABLE", "error": str(exc)})
            continue
        metrics_path = run.file("metrics.json")
        test = {}
        if metrics_path.is_file():
            try:
                test = json.loads(metrics_path.read_text()).get("test") or {}
            except ValueError:
                test = {}
        rows.append({
            "id": run.id, "name": info.get("name"), "status": effective_status(info),
            "epochs_done": info.get("epochs_done"), "epochs_planned": info.get("epochs_planned"),
            "test": test, "duration_s": info.get("duration_s"), "started": info.get("started"),
            "error": info.get("error"),
        })  # fmt: skip
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(f"no runs in {root}; train one with: dltool train CONFIG", highlight=False)
        return
    table = Table(title=f"runs in {root}", title_justify="left")
    for column in ("id", "name", "status", "epochs", "test metrics", "duration"):
        table.add_column(column, no_wrap=True)
    colours = {"COMPLETED": "green", "FAILED": "red", "INTERRUPTED": "yellow", "RUNNING": "cyan", "DIED": "magenta"}
    for row in rows:
        status = row["status"]
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in list(row.get("test", {}).items())[:3])
        duration = f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else "-"
        epochs = f"{row.get('epochs_done') or 0}/{row.get('epochs_planned') or '?'}"
        table.add_row(row["id"], row.get("name") or "-", f"[{colours.get(status, 'white')}]{status}[/]",
                      epochs, metrics or (row.get("error") or "")[:60], duration)  # fmt: skip
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
