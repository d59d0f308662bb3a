"""Where a process stands among the processes training one run, from the command line or the environment.

No JAX here: the settings are read and checked before Keras is imported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import ConfigError, UsageError

TENSORFLOW_ISSUE = "https://github.com/keras-team/keras/issues/20585"


@dataclass(frozen=True)
class GroupSettings:
    """Where this process stands among the processes training one run, as given before they join."""

    coordinator: str | None  # HOST:PORT of process 0; None lets JAX find it (Slurm)
    count: int
    index: int
    source: str  # where the settings came from, for messages

    @property
    def is_leader(self) -> bool:
        return self.index == 0


def group_settings(
    coordinator: str | None = None, count: int | None = None, index: int | None = None, environ=None
) -> GroupSettings | None:
    """The process group from the command line, else from the variables ``keras.distribution.initialize`` reads
    (KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID), else from Slurm's (an ``srun`` step of
    several tasks); None when this process trains alone."""
    environ = os.environ if environ is None else environ
    given = [value is not None for value in (coordinator, count, index)]
    if any(given):
        if not all(given):
            raise UsageError(
                "several processes need all three of --coordinator HOST:PORT, --num-processes N and --process-id I "
                "(the same coordinator and N on every process; I from 0 to N-1)"
            )
        return _checked(coordinator, count, index, "the command line")
    if environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        addresses = environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
        try:
            count = int(environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
            index = int(environ.get("KERAS_DISTRIBUTION_PROCESS_ID", ""))
        except ValueError:
            raise UsageError(
                "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID must be whole numbers, "
                f"received {environ.get('KERAS_DISTRIBUTION_NUM_PROCESSES')!r} and "
                f"{environ.get('KERAS_DISTRIBUTION_PROCESS_ID')!r}"
            ) from None
        if count == 1:
            return None
        return _checked(addresses.split(",")[0] or None, count, index, "the KERAS_DISTRIBUTION_* variables")
    tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_STEP_NUM_TASKS")
    if environ.get("SLURM_STEP_ID") is not None and tasks and tasks.isdigit() and int(tasks) > 1:
        return GroupSettings(None, int(tasks), int(environ.get("SLURM_PROCID", "0")), "Slurm")
    return None


def _checked(coordinator: str | None, count: int, index: int, source: str) -> GroupSettings:
    if coordinator is None:
        raise UsageError(f"{source}: no coordinator address; expected HOST:PORT of process 0")
    if not re.fullmatch(r"[^\s:,]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", coordinator):
        raise UsageError(f"{source}: coordinator '{coordinator}' is not HOST:PORT (e.g. 10.0.0.1:1234)")
    if count < 1 or not 0 <= index < count:
        raise UsageError(
            f"{source}: process id {index} is out of range for {count} processes; expected 0 to {count - 1}"
        )
    return GroupSettings(coordinator, count, index, source)


def refuse_backend(backend: str, source: str = "backend") -> None:
    """Several processes train on JAX only: TensorFlow's multi-worker strategy fails in Keras 3's fit."""
    if backend != "jax":
        raise ConfigError(
            f"backend {backend} cannot train in several processes: "
            + (
                f"Keras 3's fit fails under TensorFlow's MultiWorkerMirroredStrategy ({TENSORFLOW_ISSUE}); "
                if backend == "tensorflow"
                else "Keras distributes across processes on JAX only; "
            )
            + "set backend: jax (or --backend jax)",
            path=source,
        )
