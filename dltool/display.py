"""Terminal output: the live training display and result tables (with cli.py, the only code that prints)."""

from __future__ import annotations

import math
import os
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

REFRESH_SECONDS = 0.25  # live metrics are read from the model at most this often
MAX_PLAIN_LINES = 100  # plain mode prints at most about this many epoch lines per run


def use_plain_output(console: Console, quiet: bool) -> bool:
    """Plain lines (no live display) with --quiet, NO_COLOR, or no terminal."""
    return quiet or not console.is_terminal or "NO_COLOR" in os.environ


def format_value(value) -> str:
    """A metric value in 4 significant digits ('-' for missing)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def epoch_line(row: dict, epochs: int) -> str:
    """'epoch 3/10  loss=0.2  accuracy=0.9 ... (1.2s)' for plain logs."""
    values = "  ".join(f"{k}={format_value(v)}" for k, v in row.items() if k not in ("epoch", "epoch_seconds"))
    return f"epoch {row['epoch']}/{epochs}  {values}  ({row.get('epoch_seconds', 0):.2f}s)"


class TrainingDisplay:
    """Receives training events (see :func:`dltool.training.fit`) and shows them.

    Live mode: an epoch bar with ETA and a step bar with the current loss,
    one printed line per finished epoch. Plain mode: the epoch lines only.
    """

    def __init__(self, console: Console, plain: bool):
        self.console = console
        self.plain = plain
        self.progress: Progress | None = None
        self.epochs = 0
        self._last_refresh = 0.0
        self._printed = 0

    def on_run_created(self, run) -> None:
        info = run.info
        sizes = info.get("data", {})
        validation = "the test split" if sizes.get("validation_is_test") else sizes.get("validation") or "none"
        self.console.print(
            f"run {run.id}: {sizes.get('train')} train, validation {validation}, {sizes.get('test')} test; "
            f"{info.get('params', 0):,} parameters; {info.get('device')}",
            highlight=False,
        )

    def on_train_begin(self, epochs: int, steps: int | None) -> None:
        self.epochs, self.steps = epochs, steps
        self._every = max(1, math.ceil(epochs / MAX_PLAIN_LINES))
        if self.plain:
            return
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            # No refresh thread: on 2 cores it competes with training; we refresh at REFRESH_SECONDS ourselves.
            console=self.console, transient=True, auto_refresh=False,
        )  # fmt: skip
        self.epoch_task = self.progress.add_task("epochs", total=epochs, metrics="")
        self.step_task = self.progress.add_task("steps ", total=steps or 1, metrics="")
        self.progress.start()
        self.progress.refresh()

    def on_epoch_begin(self, epoch: int) -> None:
        if self.progress is not None:
            self.progress.update(self.step_task, completed=0, description=f"epoch {epoch}")
            self.progress.refresh()

    def on_batch_end(self, step: int, logs) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_SECONDS:
            return
        self._last_refresh = now
        loss = (logs or {}).get("loss")
        shown = f"loss {float(loss):.4g}" if loss is not None else ""
        self.progress.update(self.step_task, completed=step, metrics=shown)
        self.progress.refresh()

    def on_epoch_end(self, row: dict) -> None:
        epoch = row["epoch"]
        if self.progress is not None:
            self.progress.update(self.epoch_task, completed=epoch,
                                 metrics=f"loss {format_value(row.get('loss'))}")  # fmt: skip
            self.progress.update(self.step_task, completed=self.steps or 1)
            self.progress.refresh()
        if epoch % self._every == 0 or epoch == self.epochs or epoch == 1:
            line = epoch_line(row, self.epochs)
            if self.progress is not None:
                self.progress.console.print(line, highlight=False)
            else:
                self.console.print(line, highlight=False, soft_wrap=True)

    def on_train_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def metrics_table(metrics: dict, title: str = "Results") -> Table:
    """A table with one row per metric and one column per split (train, validation, test)."""
    splits = [s for s in ("train", "validation", "test") if metrics.get(s)]
    names: list[str] = []
    for split in splits:
        names += [n for n in metrics[split] if n not in names]
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for split in splits:
        table.add_column(split, justify="right")
    for name in names:
        table.add_row(name, *(format_value(metrics[s].get(name)) for s in splits))
    return table
