"""Resumable checkpoints: the state file, the in-memory snapshot between writes, and callback progress.

A checkpoint is ``checkpoints/epoch-NNNNN.keras`` (weights and optimizer
state) plus ``checkpoints/state.json`` naming it, with the epoch, the
callbacks' progress and the history so far; in a run's fine-tuning phase, also
the epochs of its first phase (``fine_tune_from``). state.json is renamed into place
only after its model file is complete, so it always names a whole checkpoint.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ..errors import RunStateError
from ..fileio import atomic_write_text
from ..keras_io import save_model_atomic
from ..runs import Run

STATE_FILE = "checkpoints/state.json"
CHECKPOINT_MIN_SECONDS = 2.0  # resumable checkpoints reach disk at most this often (kill -9 loses at most this)

# Callback attributes that make up a callback's progress, restored on resume.
RESUMABLE_STATE = {
    "early_stopping": ("wait", "best", "best_epoch"),
    "reduce_lr_on_plateau": ("wait", "best", "cooldown_counter"),
    "best_checkpoint": ("best",),
}


def _plain(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def callback_states(stateful: dict) -> dict:
    """{key: {attribute: value}} of the stateful callbacks ({key: callback}), as plain JSON values."""
    return {
        key: {name: _plain(getattr(cb, name, None)) for name in RESUMABLE_STATE[key]} for key, cb in stateful.items()
    }


def state_variables(model) -> list:
    """Everything a resumed run needs restored: the model's weights and the optimizer's variables."""
    return list(model.weights) + list(model.optimizer.variables)


def checkpointed_epoch(run: Run) -> int:
    """The epoch of the run's last resumable checkpoint (0 when there is none)."""
    try:
        return int(json.loads(run.file(STATE_FILE).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def read_state(run: Run, status: str) -> dict:
    """The last checkpoint's state.json; a run that has none gets the command that starts it again."""
    state_file = run.file(STATE_FILE)
    if not state_file.is_file():
        raise RunStateError(
            f"run {run.id} ({status}) has no checkpoint: it stopped before its first checkpoint "
            f"was written; start it again with `dltool train {run.path / 'config.yaml'}`"
        )
    return json.loads(state_file.read_text(encoding="utf-8"))


def drop_resume_checkpoints(run: Run) -> None:
    """A COMPLETED run cannot be resumed: its per-epoch checkpoints only take space (best.keras stays)."""
    folder = run.file("checkpoints")
    for path in folder.glob("epoch-*.keras"):
        path.unlink(missing_ok=True)
    run.file(STATE_FILE).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


class Checkpointer:
    """Takes a run's resumable checkpoints every ``every`` epochs (0: never), at most every 2 s on disk.

    Epochs of milliseconds would spend most of their time writing checkpoints:
    between writes the newest epoch-end state is kept in memory instead, and
    :meth:`write_pending` puts it on disk (on Ctrl-C, SIGTERM or a NaN loss).
    """

    def __init__(self, run: Run, model, every: int, epochs: int):
        self.run, self.model, self.every, self.epochs = run, model, every, epochs
        self.folder = run.file("checkpoints")
        self._last_write = 0.0
        self._pending: dict = {}
        self.fine_tune_from: int | None = None  # set when the second phase starts: its checkpoints say so

    def on_epoch_end(self, epoch: int, callbacks: dict, history: list[dict]) -> None:
        """Checkpoint the state at the end of ``epoch``, on disk or in memory."""
        if not self.every or (epoch % self.every and epoch != self.epochs):
            return
        if time.monotonic() - self._last_write >= CHECKPOINT_MIN_SECONDS or epoch == self.epochs:
            self._write(epoch, callbacks, list(history))
        else:
            variables = [np.array(v) for v in state_variables(self.model)]
            self._pending = {"epoch": epoch, "callbacks": callbacks, "history": list(history), "variables": variables}

    def write_pending(self) -> None:
        """Write the in-memory snapshot, if any (the model's variables are set back to that epoch's)."""
        if self._pending:
            pending = self._pending
            for variable, value in zip(state_variables(self.model), pending.pop("variables")):
                variable.assign(value)
            self._write(**pending)

    def write_now(self, epoch: int, history: list[dict]) -> None:
        """Checkpoint the model as it is now, at the end of ``epoch`` (the start of the fine-tuning phase: the model
        unfrozen and compiled again), unless checkpoints are off."""
        if self.every:
            self._pending = {}
            self._write(epoch, {}, list(history))

    def _write(self, epoch: int, callbacks: dict, history: list[dict]) -> None:
        self.folder.mkdir(exist_ok=True)
        name = f"checkpoints/epoch-{epoch:05d}.keras"
        save_model_atomic(self.model, self.run.file(name))
        state_file = self.run.file(STATE_FILE)
        old = json.loads(state_file.read_text(encoding="utf-8")).get("model") if state_file.is_file() else None
        state = {"epoch": epoch, "model": name, "callbacks": callbacks, "history": history}
        if self.fine_tune_from is not None:
            state["fine_tune_from"] = self.fine_tune_from
        atomic_write_text(state_file, json.dumps(state, indent=1))
        if old and old != name:
            self.run.file(old).unlink(missing_ok=True)
        self._last_write = time.monotonic()
        self._pending = {}
