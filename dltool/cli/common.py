"""What every `dltool` command shares: the consoles, the common options, and errors turned into exit codes."""

from __future__ import annotations

import gc
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import DltoolError, TrainingInterrupted
from ..runs import RUNS_DIR_ENV


def _help_shows_metavars() -> None:
    """Typer 0.2x prints Python types in help (<bool>, <list[Path]>); show what each parameter takes instead.

    Flags show nothing (they take no value) and options their metavar; an argument's metavar names it in the
    first column, and its type column says '...' where it takes several.
    """
    core = typer.core
    if not all(hasattr(core, name) for name in ("_TyperParameter", "TyperOption")):
        return  # another Typer: its own help format

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False):
            return ""
        if self.param_type_name == "argument" and self.metavar is not None:
            return "..." if self.nargs != 1 else ""
        return self.metavar if self.metavar is not None else self.display_type(ctx)

    core._TyperParameter.display_type_rich = display_type_rich
    core.TyperOption.display_type_rich = display_type_rich


_help_shows_metavars()

# Without a terminal (CI logs, pipes) rich would squeeze tables into 80 columns; give them room instead.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
out = Console(soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, soft_wrap=True)

MlflowUri = Annotated[
    str | None,
    typer.Option(
        "--mlflow",
        metavar="URI",
        help="Log the run to MLflow at this tracking URI (sqlite:///mlflow.db, http://host:5000), as the config's "
        "tracking.mlflow does; needs the tracking extra.",
    ),
]
RunsDir = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir",
        envvar=RUNS_DIR_ENV,
        metavar="DIR",
        help=f"Folder of run folders (default ./runs, or ${RUNS_DIR_ENV}).",
    ),
]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config value; VALUE is YAML: --set train.epochs=3 --set 'train.optimizer={name: sgd}'.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", metavar="", help="Show TensorFlow's own log messages.")]
AsJson = Annotated[bool, typer.Option("--json", metavar="", help="Print as JSON.")]
RunRef = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, unique id prefix, 'latest', or path to a run folder.")
]
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        metavar="final|best",
        help="Which model: final (model.keras) or best (checkpoints/best.keras, kept by train.callbacks.checkpoint).",
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        metavar="P",
        help="A binary classifier: label a sample positive (the second class) when its probability >= P, "
        "instead of the run's own decision threshold (train.threshold, else 0.5).",
    ),
]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="tensorflow|jax|torch",
        help="The Keras backend: tensorflow, jax or torch (default: the config's backend key; for a saved run, the one it trained on; else $KERAS_BACKEND, else tensorflow).",
        show_default=False,
    ),
]


def existing_run(ref: str, runs_root):
    """The run ``ref`` names; a ref that names none raises its error here, before Keras's import (seconds)."""
    from ..runs import Run, runs_dir

    return Run.resolve(ref, runs_dir(runs_root))


def run_config_value(ref: str, runs_root, *keys: str):
    """A value of a run's config.yaml (e.g. "train", "devices"), read without Keras; None if there is none."""
    from ..config.yamlio import load_yaml
    from ..errors import DltoolError
    from ..runs import config_file_of

    try:
        path = config_file_of(ref, runs_root)
        value, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except (DltoolError, OSError):
        return None  # the command itself will say what is wrong with the run
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def run_backend(ref: str, runs_root, must_exist: bool = False) -> str | None:
    """The backend a run trained on (its config.yaml's ``backend``); None if unknown.

    $KERAS_BACKEND, when set, wins: it is how a user asks for another backend without --backend.
    ``must_exist``: a ref that names no run raises (:func:`existing_run`) instead of giving None; off where the
    run may live only on another machine (a follower resuming a run).
    """
    import os

    if must_exist:
        existing_run(ref, runs_root)
    return None if os.environ.get("KERAS_BACKEND") else run_config_value(ref, runs_root, "backend")


Devices = Annotated[
    str | None,
    typer.Option(
        "--devices",
        metavar="auto|cpu|gpu|N|[gpu:0,gpu:1]",
        help="Where to train (train.devices): several devices train synchronous data parallel; batch_size is the global batch.",
        show_default=False,
    ),
]
JUnitFile = Annotated[
    Path | None,
    typer.Option("--junit", metavar="FILE", help="Also write a JUnit XML report here (for CI servers)."),
]
ConfigFile = Annotated[Path, typer.Argument(metavar="CONFIG", help="The experiment YAML file.")]


@contextmanager
def reported_errors():
    """Turn a DltoolError into one line on stderr and its exit code; never a traceback."""
    try:
        yield
    except DltoolError as exc:
        err.print(f"error: {exc}", style="red" if err.is_terminal else None, highlight=False, markup=False)
        _annotate_in_github(exc)
        if isinstance(exc, TrainingInterrupted):
            skip_shutdown_collection()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        skip_shutdown_collection()
        raise typer.Exit(130) from None


def skip_shutdown_collection() -> None:
    """Let a command exit at once: everything it keeps is written and closed already.

    Python's shutdown runs full garbage collections over TensorFlow's ~400,000
    objects: 1 to 3 s on 2 cores (measured), most of the wait from Ctrl-C to
    the prompt. Frozen objects are left out of those collections; the
    operating system frees the memory.
    """
    gc.freeze()


def _annotate_in_github(error: DltoolError) -> None:
    """In a GitHub Actions step, also show a config error on its file and line of the pull request (stdout)."""
    from ..errors import ConfigError
    from ..reports import config_error_annotation, in_github_actions

    if isinstance(error, ConfigError) and in_github_actions():
        say(config_error_annotation(error))


def print_version(value: bool) -> None:
    """`--version`'s callback: print dltool's version and exit."""
    if value:
        from .._version import __version__

        say(f"dltool {__version__}")
        raise typer.Exit()


def say(text: str) -> None:
    """Print plain text (no markup, no highlighting)."""
    out.print(text, highlight=False, markup=False)


def warn_tracking(parent) -> None:
    """Print the MLflow parent run's warning (a sweep's or cv's store away), once: None or no failure prints nothing."""
    warning = parent.take_warning() if parent is not None else None
    if warning:
        err.print(f"warning: {warning}", highlight=False, markup=False)


def keras_for_run_after_run(verbose: bool, experiment) -> None:
    """Import Keras for ``experiment``'s backend and devices in a process that trains run after run (a sweep's
    trials, a cv's folds). TensorFlow's retracing notes, expected when every run builds a new model, stay
    hidden unless --verbose."""
    from ..backend import import_keras

    import_keras(verbose, backend=experiment.backend, devices=experiment.train.devices)
    if not verbose:
        logging.getLogger("tensorflow").setLevel("ERROR")


def dead_worker_printer(consequence: str):
    """``run_workers``' on_worker_died callback: a stderr line naming the worker, its signal and ``consequence``."""
    return lambda pid, sig: err.print(
        f"worker {pid} died (signal {sig}); {consequence}, a new worker takes over", highlight=False, markup=False
    )
