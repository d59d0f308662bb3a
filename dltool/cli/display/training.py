"""Terminal output: the live training display and result tables (with the rest of dltool.cli, the only code that prints)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ...training.observer import Observer
from ..common import err

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
    values = "  ".join(f"{k}={format_value(v)}" for k, v in row.items() if k not in ("epoch", "phase", "epoch_seconds"))
    tuning = "  fine-tuning" if row.get("phase") == 2 else ""
    return f"epoch {row['epoch']}/{epochs}{tuning}  {values}  ({row.get('epoch_seconds', 0):.2f}s)"


class RemainingColumn(TimeRemainingColumn):
    """rich's time remaining, except for a task with an ``epoch_seconds`` field (the epochs bar).

    rich estimates speed from the samples of its last 30 s and needs two of them, so with epochs of 20 s or more
    the epochs bar showed no estimate until two epochs were done. The epochs bar instead gets the mean duration
    of the finished epochs times the epochs left, less the time already spent in the current one.
    """

    def render(self, task) -> Text:
        if "epoch_seconds" not in task.fields:
            return super().render(task)
        mean = task.fields["epoch_seconds"]
        if mean is None or task.total is None:
            return Text("-:--:--", style="progress.remaining")
        epochs_left = max(0.0, task.total - task.completed)
        # An epoch that runs longer than the mean does not count below the epochs after it.
        into_current = min(max(0.0, task.get_time() - task.fields["epoch_started"]), mean) if epochs_left else 0.0
        minutes, seconds = divmod(int(max(0.0, mean * epochs_left - into_current)), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class TrainingDisplay(Observer):
    """Receives training events (see :class:`dltool.training.observer.Observer`) and shows them.

    Live mode: an epoch bar with ETA and a step bar with the current loss,
    one printed line per finished epoch. Plain mode: the epoch lines only.
    ``get_time`` is the clock for elapsed times and estimates (default: time.monotonic).
    """

    def __init__(self, console: Console, plain: bool, get_time: Callable[[], float] = time.monotonic):
        self.console = console
        self.plain = plain
        self.get_time = get_time
        self.progress: Progress | None = None
        self.epochs = 0
        self._first_epoch: int | None = None
        self._last_refresh = 0.0
        self._printed = 0
        self._epoch_durations: list[float] = []
        self._epoch_started = 0.0
        self.figures_shown = False  # the metrics table, shown once the run is tested (before its plots)

    def on_run_created(self, run) -> None:
        info = run.info
        sizes = info.get("data", {})
        validation = "the test split" if sizes.get("validation_is_test") else sizes.get("validation") or "none"
        counts = info.get("parameters") or {}
        frozen = f" ({counts['trainable']:,} trainable)" if counts.get("frozen") else ""
        self.console.print(
            f"run {run.id}: {sizes.get('train')} train, validation {validation}, {sizes.get('test')} test; "
            f"{info.get('params', 0):,} parameters{frozen}; {info.get('device')}",
            highlight=False,
        )
        if info.get("class_weight"):
            self.console.print(class_weight_line(info["class_weight"]), highlight=False, markup=False)
        if info.get("resample"):
            self.console.print(resample_line(info["resample"]), highlight=False, markup=False)
        for warning in info.get("warnings", []):  # the data's (an id-like feature column): training goes on
            self.console.print(f"warning: {warning}", highlight=False, markup=False)

    def on_train_begin(self, epochs: int, steps: int | None) -> None:
        self.epochs, self.steps = epochs, steps
        self._every = max(1, math.ceil(epochs / MAX_PLAIN_LINES))
        self._first_epoch = None  # shown always: the run's first, a resumed run's first, the fine-tuning's first
        if self.plain:
            return
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            RemainingColumn(),
            # No refresh thread: on 2 cores it competes with training; we refresh at REFRESH_SECONDS ourselves.
            console=self.console,
            transient=True,
            auto_refresh=False,
            get_time=self.get_time,
        )
        self._epoch_durations = []
        self._epoch_started = self.get_time()
        self.epoch_task = self.progress.add_task(
            "epochs", total=epochs, metrics="", epoch_seconds=None, epoch_started=self._epoch_started
        )
        self.step_task = self.progress.add_task("steps ", total=steps or 1, metrics="")
        self.progress.start()
        self.progress.refresh()

    def on_epoch_begin(self, epoch: int) -> None:
        self._epoch_started = self.get_time()
        if self.progress is not None:
            # reset(), not update(completed=0): the step task finished last epoch, and only reset() restarts its
            # clock and speed samples (else its elapsed time freezes and its eta reads 0:00:00 all epoch).
            self.progress.reset(self.step_task, total=self.steps or 1, description=f"epoch {epoch}", metrics="")
            # A resumed run starts at a later epoch.
            self.progress.update(self.epoch_task, completed=epoch - 1, epoch_started=self._epoch_started)
            self.progress.refresh()

    def on_batch_end(self, step: int, logs) -> None:
        if self.progress is None:
            return
        now = self.get_time()
        if now - self._last_refresh < REFRESH_SECONDS:
            return
        self._last_refresh = now
        loss = (logs or {}).get("loss")
        shown = f"loss {float(loss):.4g}" if loss is not None else ""
        self.progress.update(self.step_task, completed=step, metrics=shown)
        self.progress.refresh()

    def on_epoch_end(self, row: dict) -> None:
        epoch = row["epoch"]
        if self._first_epoch is None:
            self._first_epoch = epoch
        now = self.get_time()
        self._epoch_durations.append(now - self._epoch_started)
        if self.progress is not None:
            mean = sum(self._epoch_durations) / len(self._epoch_durations)
            self.progress.update(
                self.epoch_task,
                completed=epoch,
                epoch_seconds=mean,
                epoch_started=now,
                metrics=f"loss {format_value(row.get('loss'))}",
            )
            self.progress.update(self.step_task, completed=self.steps or 1)
            self.progress.refresh()
        if epoch % self._every == 0 or epoch == self.epochs or epoch in (1, self._first_epoch):
            line = epoch_line(row, self.epochs)
            if self.progress is not None:
                self.progress.console.print(line, highlight=False)
            else:
                self.console.print(line, highlight=False, soft_wrap=True)

    def on_tested(self, run, metrics: dict, expectations: list[dict]) -> None:
        self.figures_shown = True
        print_training_figures(self.console, run, metrics, expectations or None)
        if run.info.get("threshold"):
            self.console.print(threshold_line(run.info["threshold"]), highlight=False, markup=False)

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


# --------------------------------------------------------------------------- runs, runs show, runs compare, evaluate
STATUS_COLOURS = {
    "COMPLETED": "green",
    "FAILED": "red",
    "INTERRUPTED": "yellow",
    "RUNNING": "cyan",
    "DIED": "magenta",
    "passed": "green",
    "failed": "red",
    "skipped": "yellow",
    "unmet": "magenta",
}


def status_markup(status: str) -> str:
    """A status in its colour (rich markup)."""
    return f"[{STATUS_COLOURS.get(status, 'white')}]{status}[/]"


def file_size(size: float) -> str:
    """Bytes as '512 B', '1.5 KB', '2.0 MB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def expectations_cell(checked: list[dict] | None) -> str:
    """'met', 'met 2/2' or '1 of 2 unmet' in colour ('-' when the run expected nothing)."""
    if not checked:
        return "-"
    unmet = sum(not e["met"] for e in checked)
    return f"[red]{unmet} of {len(checked)} unmet[/]" if unmet else f"[green]met {len(checked)}/{len(checked)}[/]"


def print_expectations(console: Console, checked: list[dict] | None) -> None:
    """One line per expectation: key = value (condition): met or NOT met."""
    from ...config.expectations import describe_expectation

    for result in checked or []:
        colour = "green" if result["met"] else "red"
        console.print(f"expect [{colour}]{describe_expectation(result)}[/]", highlight=False)


def print_training_result(console: Console, run, figures_shown: bool = False) -> None:
    """After `dltool train`: the metrics table, a small model's learned weights and the expectations (unless
    ``figures_shown``: the display showed them as soon as the run was tested), then where the run is."""
    if not figures_shown:
        print_training_figures(console, run, run.read_json("metrics.json"), run.info.get("expectations"))
    console.print(f"run {run.id} COMPLETED in {run.info.get('duration_s', 0):.1f}s -> {run.path}", highlight=False)
    console.print(f"next: dltool evaluate {run.id}", highlight=False)
    print_unsynced_warning(run)


def mlflow_line(run_id: str, record: dict, status: str | None = None) -> str:
    """'MLflow: synced, run abc123 in experiment 1 at sqlite:///...' or why it is not, and how to sync it."""
    if record.get("synced") is False and record.get("error") is None and status == "RUNNING":
        return f"MLflow: logging to {record.get('uri')} (experiment {record.get('experiment')})"
    if record.get("synced"):
        line = f"MLflow: synced, run {record.get('run_id')} in experiment {record.get('experiment_id')} at {record.get('uri')}"
        if record.get("parent_run_id"):  # a sweep's trial or a cv's fold
            line += f", nested in run {record['parent_run_id']}"
        return line + model_note(record)
    reason = f" ({record['error']})" if record.get("error") else ""
    return f"MLflow: not synced to {record.get('uri')}{reason}; send it with: dltool runs sync {run_id}"


def model_note(record: dict) -> str:
    """'; model registered as NAME version 2' (or why it is not) for a run whose model was logged."""
    if record.get("registered"):
        return f"; model registered as {record['registered']['name']} version {record['registered']['version']}"
    if record.get("register_error"):
        return f"; model logged, not registered ({record['register_error']})"
    return ""


def print_unsynced_warning(run) -> None:
    """The one console line (on stderr) when the run's MLflow record is not complete (train.log has it too);
    nothing for a run that is synced or not tracked."""
    tracked = (run.info.get("tracking") or {}).get("mlflow")
    if tracked and not tracked.get("synced"):
        err.print(f"warning: {mlflow_line(run.id, tracked)}", highlight=False, markup=False)
    elif tracked and tracked.get("register_error"):
        err.print(
            f"warning: MLflow: the model is logged ({tracked.get('model_uri')}) but not registered "
            f"({tracked['register_error']})",
            highlight=False,
            markup=False,
        )


def print_training_figures(console: Console, run, metrics: dict, expectations: list | None) -> None:
    """The metrics table, a small model's learned weights, the expectations checked."""
    title = f"{run.info.get('name')}: {metrics['epochs']} epochs"
    if metrics.get("restored_epoch"):
        title += f"; weights, train and validation figures of epoch {metrics['restored_epoch']} (restore_best_weights)"
    console.print(metrics_table(metrics, title=title))
    if metrics.get("weights"):
        learned = "  ".join(
            f"{layer}.{name}={[round(v, 4) for v in values]}"
            for layer, weights in metrics["weights"].items()
            for name, values in weights.items()
        )
        console.print(f"learned weights: {learned}", highlight=False)
    if metrics.get("calibration"):
        console.print(calibration_line(metrics["calibration"]), highlight=False, markup=False)
    print_expectations(console, expectations)


def threshold_line(record: dict) -> str:
    """'decision threshold 0.3127 (f1); on validation precision ...' from run.json's threshold record."""
    from ...decision import describe

    return describe(record)


def calibration_line(report: dict) -> str:
    """'calibrated: temperature 1.48; validation ECE 0.0156 -> 0.0112, ...' from a run's calibration record."""
    from ...training.calibration import describe

    return f"calibrated: {describe(report)}"


def class_weight_line(record: dict) -> str:
    """'class weights (balanced): benign 0.6725, malignant 1.951' from run.json's class_weight record."""
    from ...data.class_weights import ClassWeights

    return f"class weights ({record['mode']}): {ClassWeights.from_record(record).listing()}"


def resample_line(record: dict) -> str:
    """'resample: oversample minority: 120 -> 200 training samples (a 100 -> 100, b 20 -> 100)' from run.json."""
    from ...data.resampling import describe_record

    return f"resample: {describe_record(record)}"
