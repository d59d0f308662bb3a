"""`dltool launch`, and the options that make `dltool train` one of several processes training one run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..training.observer import Observer
from .common import Backend, Devices, Overrides, RunsDir, Verbose, err, out, reported_errors, run_backend, say

Coordinator = Annotated[
    str | None,
    typer.Option(
        "--coordinator",
        metavar="HOST:PORT",
        help="Train in several processes (JAX backend): the address of process 0, with --num-processes and "
        "--process-id (without them: $KERAS_DISTRIBUTION_JOB_ADDRESSES and its siblings, or Slurm's variables "
        "in an srun step).",
        show_default=False,
    ),
]
NumProcesses = Annotated[
    int | None,
    typer.Option("--num-processes", metavar="N", min=1, help="How many processes train the run.", show_default=False),
]
ProcessId = Annotated[
    int | None,
    typer.Option(
        "--process-id",
        metavar="I",
        min=0,
        help="This process's number, 0 to N-1; process 0 owns the run folder.",
        show_default=False,
    ),
]

LAUNCH_EPILOG = (
    "Example: dltool launch -n 2 configs/digits_mlp.yaml --backend jax   |   dltool launch -n 2 --resume latest"
)


def group_from_options(coordinator: str | None, count: int | None, index: int | None):
    """Where `dltool train` stands among several processes (its options, else the environment), or None."""
    from ..distributed.settings import group_settings

    return group_settings(coordinator, count, index)


def join_group(settings, experiment=None):
    """Refuse a backend that cannot train in several processes, then connect to the other processes; returns
    their group, or the local one when ``settings`` is None (this process trains alone)."""
    from ..distributed import LOCAL

    if settings is None:
        return LOCAL
    import keras

    from ..distributed.group import join
    from ..distributed.settings import refuse_backend
    from ..errors import ConfigError

    try:
        refuse_backend(keras.backend.backend())
    except ConfigError as exc:
        raise (experiment.locate(exc) if experiment is not None else exc) from None
    return join(settings)


class WorkerLog(Observer):
    """What process i > 0 shows: nothing here; plain epoch lines, and everything else it prints, in
    ``workers/<i>.log`` of the run folder (its stdout and stderr are sent there once the run is known)."""

    def __init__(self, index: int):
        self.index = index
        self.display = Observer()  # silent until the run is known; then the plain display, into the log

    def on_run_created(self, run) -> None:
        from rich.console import Console

        from .display.training import TrainingDisplay

        folder = run.file("workers")
        folder.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        log = os.open(folder / f"{self.index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        self.display = TrainingDisplay(Console(file=sys.stdout, soft_wrap=True), plain=True)
        say(f"worker {self.index} of run {run.id}")

    def on_worker_finished(self, digest: str) -> None:
        from ..runs import log_time

        say(f"{log_time()} final weights {digest} (worker 0 logs its own in train.log)")

    def on_train_begin(self, epochs, steps) -> None:
        self.display.on_train_begin(epochs, steps)

    def on_epoch_begin(self, epoch) -> None:
        self.display.on_epoch_begin(epoch)

    def on_batch_end(self, step, logs) -> None:
        self.display.on_batch_end(step, logs)

    def on_epoch_end(self, row) -> None:
        self.display.on_epoch_end(row)

    def on_train_end(self) -> None:
        self.display.on_train_end()


def observer_for(group, display):
    """The observer a process of ``group`` trains with: worker 0 shows ``display``, the others log."""
    return display if group is None or group.index == 0 else WorkerLog(group.index)


def launch_command(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="The experiment YAML file.")] = None,
    count: Annotated[
        int, typer.Option("--num-processes", "-n", metavar="N", min=1, help="How many processes train the run.")
    ] = 2,
    overrides: Overrides = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", metavar="RUN", help="Continue a run trained in N processes, in N processes again."),
    ] = None,
    runs_dir: RunsDir = None,
    backend: Backend = None,
    devices: Devices = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="Plain lines, one per epoch.")] = False,
    verbose: Verbose = False,
) -> None:
    """Train one run in N processes on this machine (JAX's distributed runtime over loopback; gloo on CPU).

    Each process trains on its share of every batch; batch_size stays the global batch. Worker 0's display
    is shown here; the others log to workers/<i>.log in the run folder. Exits non-zero if any worker fails.
    """
    from ..distributed.launcher import describe_exit, launch

    with reported_errors():
        if (config is None) == (resume is None):
            raise UsageError("give either a CONFIG to train or --resume RUN (not both)")
        _check_backend(config, overrides, resume, runs_dir, backend)
        args = [str(config)] if config is not None else ["--resume", resume]
        for override in overrides or []:
            args += ["--set", override]
        args += (["--backend", backend] if backend else []) + (["--devices", devices] if devices else [])
        args += (["--quiet"] if quiet else []) + (["--verbose"] if verbose else [])
        result = launch(count, args, runs_root=runs_dir)
    if result.exit_codes[0] == 2:  # bad input: worker 0 said why, and every worker met the same
        raise typer.Exit(2)
    for index, text in result.early_output.items():
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            err.print(f"worker {index}: {lines[-1]}", highlight=False, markup=False)
    if result.failed_worker is not None:
        worker = result.failed_worker
        where = f" (run {result.run_id})" if result.run_id else ""
        err.print(
            f"launch: worker {worker} {describe_exit(result.exit_codes[worker])}{where}; exit codes "
            + ", ".join(str(code) for code in result.exit_codes),
            highlight=False,
            markup=False,
        )
    elif result.run_id:
        out.print(f"launch: {count} workers trained run {result.run_id}", highlight=False, markup=False)
    raise typer.Exit(result.exit_code)


def _check_backend(config, overrides, resume, runs_dir, backend) -> None:
    """Refuse a backend other than JAX here, once, rather than in every worker."""
    from ..distributed.settings import refuse_backend
    from ..errors import ConfigError

    if config is not None:
        from ..config import load_config

        experiment = load_config(config, (overrides or []) + ([f"backend={backend}"] if backend else []))
        try:
            refuse_backend(experiment.backend or os.environ.get("KERAS_BACKEND") or "tensorflow")
        except ConfigError as exc:
            raise experiment.locate(exc) from None
    else:
        refuse_backend(backend or run_backend(resume, runs_dir) or os.environ.get("KERAS_BACKEND") or "tensorflow")
