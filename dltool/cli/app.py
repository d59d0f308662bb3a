"""The `dltool` command line: parse, make one library call, print. Imports the library lazily.

`dltool --help`, `--version`, `runs`, `validate`'s schema part and `schema` never import TensorFlow (a test
checks `import dltool.cli.app` leaves it out). Rendering lives in :mod:`dltool.cli.display`; the work in :mod:`dltool.commands`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import (
    Backend,
    Devices,
    JUnitFile,
    MlflowUri,
    Overrides,
    RunsDir,
    Verbose,
    out,
    print_version,
    reported_errors,
    run_backend,
    run_config_value,
    say,
    skip_shutdown_collection,
)
from .config import INIT_EPILOG, SCHEMA_EPILOG, VALIDATE_EPILOG, init, schema, validate
from .cv import CV_EXAMPLE, cv_command
from .evaluate import EVALUATE_EPILOG, evaluate_command
from .export import EXPORT_EPILOG, export_command
from .info import INFO_EPILOG, info
from .launch import (
    LAUNCH_EPILOG,
    Coordinator,
    NumProcesses,
    ProcessId,
    group_from_options,
    join_group,
    launch_command,
    observer_for,
)
from .predict import PREDICT_EPILOG, predict
from .runs import PLOT_EPILOG, plot, runs_app
from .serve import SERVE_EPILOG, serve_command
from .smoke import SMOKE_EPILOG, smoke, train_reports
from .sweep import SWEEP_EXAMPLE, sweep_command
from .weights import weights_app

app = typer.Typer(
    name="dltool",
    help="Train Keras 3 models from YAML experiments; every run is a self-contained folder under runs/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, metavar="", help="Show the version and exit."),
    ] = False,
) -> None:
    """Train Keras 3 models from YAML experiments."""


@app.command(
    epilog="Example: dltool train configs/digits_mlp.yaml --set train.epochs=5   |   dltool train --resume latest"
    "   |   dltool train --from latest --set train.epochs=5"
)
def train(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="The experiment YAML file.")] = None,
    overrides: Overrides = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue an INTERRUPTED, FAILED or died run from its last checkpoint, with its own config.",
        ),
    ] = None,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="RUN",
            help="Start from this run's trained weights (fine-tune, or train a finished run for more epochs) "
            "in a new run; with no CONFIG, that run's own config.",
        ),
    ] = None,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            metavar="KEY<OP>NUMBER",
            help="Expect a final metric, e.g. --expect 'test.accuracy>=0.95'; exit 3 when missed.",
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option("--deterministic", metavar="", help="Deterministic ops: identical metrics on every run (slower)."),
    ] = False,
    mlflow: MlflowUri = None,
    junit: JUnitFile = None,
    runs_dir: RunsDir = None,
    backend: Backend = None,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", metavar="", help="Plain lines, one per epoch (for CI logs).")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Train the model a config describes and save everything in a new run folder.

    Exits 0 on success, 2 for bad input, 1 when training fails, 3 when the run misses an expectation (--expect, expect:).
    """
    from ..backend import import_keras
    from .display.training import TrainingDisplay, print_training_result, use_plain_output

    with reported_errors(), train_reports(junit, str(config or from_run or resume)) as report:
        if (config is None and from_run is None) == (resume is None):
            raise UsageError("give either a CONFIG to train (or --from RUN) or --resume RUN (not both)")
        if resume is not None and (overrides or expect or deterministic or devices or mlflow):
            raise UsageError(
                "--resume continues a run with its own saved config; --set cannot change it, nor can "
                "--expect, --deterministic, --devices or --mlflow. Train a new run with them instead"
            )
        group = group_from_options(coordinator, num_processes, process_id)  # one of several processes, or None
        display = observer_for(group, TrainingDisplay(out, plain=use_plain_output(out, quiet)))
        if resume is not None:
            devices = run_config_value(resume, runs_dir, "train", "devices") or "auto"  # as the run started
            import_keras(verbose, backend=backend or run_backend(resume, runs_dir), devices=devices)
            processes = join_group(group)
            from ..commands.resume import resume as resume_training

            run = resume_training(resume, runs_root=runs_dir, observer=display, group=processes)
        else:
            from ..config import load_config, with_expectations
            from ..runs import config_file_of

            overrides = (overrides or []) + (["train.deterministic=true"] if deterministic else [])
            overrides += ([f"backend={backend}"] if backend else []) + ([f"train.devices={devices}"] if devices else [])
            experiment = with_expectations(
                load_config(config or config_file_of(from_run, runs_dir), overrides), expect or []
            )
            import_keras(verbose, backend=experiment.backend, devices=experiment.train.devices)
            processes = join_group(group, experiment)
            from ..commands.train import train as run_training

            run = run_training(
                experiment,
                runs_root=runs_dir,
                observer=display,
                init_from=from_run,
                group=processes,
                tracking_uri=mlflow,
            )
        report["run"] = run
        if group is not None and group.index > 0:
            say(f"worker {group.index}: training done; worker 0 tests and saves run {run.id}")
            return
        print_training_result(out, run, figures_shown=getattr(display, "figures_shown", False))
    if run.info.get("expectations_met") is False:
        raise typer.Exit(3)


app.command(epilog=SMOKE_EPILOG)(smoke)
app.command("launch", epilog=LAUNCH_EPILOG)(launch_command)


app.command("evaluate", epilog=EVALUATE_EPILOG)(evaluate_command)
app.command(epilog=PREDICT_EPILOG)(predict)
app.command("export", epilog=EXPORT_EPILOG)(export_command)
app.command("serve", epilog=SERVE_EPILOG)(serve_command)
app.command("sweep", epilog=SWEEP_EXAMPLE)(sweep_command)
app.command("cv", epilog=CV_EXAMPLE)(cv_command)
app.command(epilog=VALIDATE_EPILOG)(validate)
app.command(epilog=SCHEMA_EPILOG)(schema)
app.command(epilog=PLOT_EPILOG)(plot)
app.command(epilog=INIT_EPILOG)(init)
app.command(epilog=INFO_EPILOG)(info)
app.add_typer(runs_app, name="runs")
app.add_typer(weights_app, name="weights")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    finally:
        skip_shutdown_collection()  # 1-1.4 s of shutdown garbage collection over TensorFlow's objects, saved


if __name__ == "__main__":
    main()
