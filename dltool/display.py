"""Terminal output: the live training display and result tables (with cli.py, the only code that prints)."""

from __future__ import annotations

import math
import os
import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

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


class TrainingDisplay:
    """Receives training events (see :func:`dltool.fitting.fit`) and shows them.

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
        self._last_refresh = 0.0
        self._printed = 0
        self._epoch_durations: list[float] = []
        self._epoch_started = 0.0

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
            TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TextColumn("eta"), RemainingColumn(),
            # No refresh thread: on 2 cores it competes with training; we refresh at REFRESH_SECONDS ourselves.
            console=self.console, transient=True, auto_refresh=False, get_time=self.get_time,
        )  # fmt: skip
        self._epoch_durations = []
        self._epoch_started = self.get_time()
        self.epoch_task = self.progress.add_task("epochs", total=epochs, metrics="", epoch_seconds=None,
                                                 epoch_started=self._epoch_started)  # fmt: skip
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
        now = self.get_time()
        self._epoch_durations.append(now - self._epoch_started)
        if self.progress is not None:
            mean = sum(self._epoch_durations) / len(self._epoch_durations)
            self.progress.update(self.epoch_task, completed=epoch, epoch_seconds=mean, epoch_started=now,
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


# --------------------------------------------------------------------------- runs, runs show, runs compare, evaluate
STATUS_COLOURS = {"COMPLETED": "green", "FAILED": "red", "INTERRUPTED": "yellow", "RUNNING": "cyan", "DIED": "magenta",
                  "passed": "green", "failed": "red", "skipped": "yellow", "unmet": "magenta"}  # fmt: skip


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


def runs_table(rows: list[dict], title: str) -> Table:
    """`dltool runs`: one line per run (an expect column when any run has expectations)."""
    table = Table(title=title, title_justify="left")
    expect = any(row.get("expectations") for row in rows)
    for column in ("id", "name", "status", "epochs", "test metrics", "duration") + (("expect",) if expect else ()):
        table.add_column(column, no_wrap=True)
    for row in rows:
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in list(row["test"].items())[:3])
        duration = f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else "-"
        epochs = f"{row.get('epochs_done') or 0}/{row.get('epochs_planned') or '?'}"
        table.add_row(row["id"], row.get("name") or "-", status_markup(row["status"]), epochs,
                      metrics or (row.get("error") or "")[:70], duration,
                      *((expectations_cell(row.get("expectations")),) if expect else ()))  # fmt: skip
    return table


def print_expectations(console: Console, checked: list[dict] | None) -> None:
    """One line per expectation: key = value (condition): met or NOT met."""
    from .config.expectations import describe_expectation

    for result in checked or []:
        colour = "green" if result["met"] else "red"
        console.print(f"expect [{colour}]{describe_expectation(result)}[/]", highlight=False)


def print_run(console: Console, shown: dict) -> None:
    """`dltool runs show`: header, reason, final metrics, best epoch, history chart, config, files."""
    from .commands.runs_report import sparkline
    from .config.yamlio import dump_yaml

    console.print(f"[bold]{shown['id']}[/]  {status_markup(shown['status'])}  {shown.get('epochs_done') or 0}/"
                  f"{shown.get('epochs_planned') or '?'} epochs  {shown.get('device') or ''}  "
                  f"{shown.get('params') or 0:,} parameters", highlight=False)  # fmt: skip
    if shown.get("error"):
        console.print(f"reason: {shown['error']}", highlight=False)
    print_expectations(console, shown.get("expectations"))
    metrics = shown.get("metrics")
    if metrics:
        restored = f" (weights of epoch {metrics['restored_epoch']}: restore_best_weights)" if metrics.get("restored_epoch") else ""
        console.print(metrics_table(metrics, title="final metrics" + restored))
        best = metrics.get("best_epoch") or {}
        if best:
            values = "  ".join(f"{k}={format_value(v)}" for k, v in best.items()
                               if k not in ("epoch", "epoch_seconds", "learning_rate"))  # fmt: skip
            console.print(f"best epoch {int(best['epoch'])}: {values}", highlight=False)
    history = shown["history"]
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
        console.print(chart)
    if shown.get("evaluations"):
        console.print(evaluations_table(shown["evaluations"]))
    console.print("[bold]config[/]", highlight=False)
    console.print(dump_yaml(shown["config"]).rstrip(), highlight=False, markup=False)
    files = "  ".join(f"{name} ({file_size(size)})" for name, size in shown["files"].items()
                      if not name.startswith("tensorboard/"))  # fmt: skip
    console.print("[bold]files[/]  " + files, highlight=False)


def evaluations_table(evaluations: dict[str, dict]) -> Table:
    """`runs show`: one line per evaluated data set: its data, samples, model file and compiled metrics."""
    table = Table(title="evaluations (dltool evaluate)", title_justify="left")
    for column in ("name", "data", "samples", "model", "metrics"):
        table.add_column(column, justify="right" if column == "samples" else "left")
    for name, evaluation in evaluations.items():
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in (evaluation.get("compiled") or {}).items())
        table.add_row(name, str(evaluation.get("data", "")), str(evaluation.get("samples", "")),
                      str(evaluation.get("model", "model.keras")), metrics)  # fmt: skip
    return table


def print_comparison(console: Console, compared: dict) -> None:
    """`dltool runs compare`: the config values that differ, then test metrics with the best in bold."""
    from .commands.runs_report import lower_is_better

    ids, differences = compared["runs"], compared["config_differences"]
    table = Table(title="config differences" if differences else "configs are identical", title_justify="left")
    table.add_column("key")
    for run_id in ids:
        table.add_column(run_id, overflow="fold")
    for key, values in differences.items():
        table.add_row(key, *(f"[yellow]{format_value(v)}[/]" for v in values))
    console.print(table)
    results = Table(title="test metrics (best in bold)", title_justify="left")
    results.add_column("metric")
    for run_id in ids:
        results.add_column(run_id, justify="right", overflow="fold")
    for metric, values in compared["test"].items():
        present = [v for v in values if v is not None]
        best = (min if lower_is_better(metric) else max)(present) if present else None
        results.add_row(metric, *(("[bold green]" + format_value(v) + "[/]") if v == best and len(present) > 1
                                  else format_value(v) for v in values))  # fmt: skip
    results.add_row("status", *(status_markup(s) for s in compared["status"]))
    results.add_row("best epoch", *(str(int(b["epoch"])) if b else "-" for b in compared["best_epoch"]))
    results.add_row("duration", *(f"{d:.1f}s" if d else "-" for d in compared["duration_s"]))
    console.print(results)


def print_evaluation(console: Console, result: dict) -> None:
    """`dltool evaluate`: compiled metrics and report totals, then per-class figures for a classifier."""
    table = Table(title=f"{result['run']} on {result['samples']} samples ({result['data']})", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["compiled"].items():
        table.add_row(name, format_value(value))
    report = result.get("classification") or result.get("regression")
    for name, value in report.items():
        if not isinstance(value, (dict, list)) and name not in result["compiled"]:
            table.add_row(name, format_value(value))
    console.print(table)
    if "classification" in result:
        per_class = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, values in result["classification"]["per_class"].items():
            per_class.add_row(name, *(format_value(values[k]) for k in ("precision", "recall", "f1", "support")))
        console.print(per_class)


def print_training_result(console: Console, run) -> None:
    """After `dltool train`: the metrics table, a small model's learned weights, where the run is."""
    metrics = run.read_json("metrics.json")
    title = f"{run.info.get('name')}: {metrics['epochs']} epochs"
    if metrics.get("restored_epoch"):
        title += f"; weights, train and validation figures of epoch {metrics['restored_epoch']} (restore_best_weights)"
    console.print(metrics_table(metrics, title=title))
    if metrics.get("weights"):
        learned = "  ".join(f"{layer}.{name}={[round(v, 4) for v in values]}"
                            for layer, weights in metrics["weights"].items() for name, values in weights.items())  # fmt: skip
        console.print(f"learned weights: {learned}", highlight=False)
    print_expectations(console, run.info.get("expectations"))
    console.print(f"run {run.id} COMPLETED in {run.info.get('duration_s', 0):.1f}s -> {run.path}", highlight=False)
    console.print(f"next: dltool evaluate {run.id}", highlight=False)


# --------------------------------------------------------------------------- sweep
def _params_text(params: dict) -> str:
    return "  ".join(f"{key.rsplit('.', 1)[-1]}={format_value(value)}" for key, value in params.items())


def trial_line(row: dict, metric: str) -> str:
    """One finished trial of a sweep, as a plain line."""
    result = f"{metric}={format_value(row['objective'])}" if row["objective"] is not None else (row.get("reason") or "")
    return f"trial {row['trial']:>3} {row['status']:<9} {result}  {_params_text(row['params'])}  run {row.get('run') or '-'}"


def print_sweep(console: Console, report: dict) -> None:
    """`dltool sweep show`: the ranked trials, then the best run and how to use it."""
    metric = report["objective"]["metric"]
    counts = ", ".join(f"{n} {s}" for s, n in report["counts"].items())
    table = Table(title=f"sweep {report['id']}: {report['method']} on {report['experiment']}, "
                        f"{report['trials_done']}/{report['trials_planned']} trials done ({counts})",
                  title_justify="left")  # fmt: skip
    for column in ("trial", "status", metric, "epochs", "parameters", "run / reason"):
        table.add_column(column, no_wrap=column != "run / reason")
    for row in report["rows"]:
        table.add_row(str(row["trial"]), status_markup(row["status"]), format_value(row["objective"]),
                      format_value(row["epochs"]), _params_text(row["params"]),
                      row["run"] if row["status"] == "COMPLETED" else (row.get("reason") or row.get("run") or ""))  # fmt: skip
    console.print(table)
    best = report["best"]
    if best is None:
        console.print("no trial has completed yet", highlight=False)
        return
    console.print(f"best: trial {best['trial']}, {metric} {format_value(best['objective'])} ({report['objective']['goal']}), "
                  f"run {best['run']}", highlight=False, markup=False)  # fmt: skip
    console.print(f"use it: dltool evaluate {best['run']}   |   dltool predict {best['run']} INPUT   |   "
                  f"dltool runs show {best['run']}", highlight=False, markup=False)  # fmt: skip


# --------------------------------------------------------------------------- smoke
def smoke_line(result: dict) -> str:
    """One config's result as it finishes: status, seconds, config, and what failed or why it was skipped."""
    why = f"  {result['stage']}: {result['message']}" if result["status"] != "passed" else ""
    return f"{result['status']:<8} {result['seconds']:6.1f}s  {result['config']}{why}"


def smoke_table(report: dict) -> Table:
    """`dltool smoke`: one row per config (config, status, seconds, what failed), totals in the title."""
    counts = ", ".join(f"{report[s]} {s}" for s in ("passed", "failed", "unmet", "skipped") if report[s] or s == "passed")
    table = Table(title=f"smoke: {len(report['configs'])} configs, {counts} in {report['seconds']:.1f}s",
                  title_justify="left")  # fmt: skip
    for column in ("config", "status", "seconds", "what failed"):
        table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
    for row in report["configs"]:
        failed = "" if row["status"] == "passed" else f"{row['stage']}: {row['message']}"
        table.add_row(row["config"], status_markup(row["status"]), f"{row['seconds']:.1f}", Text(failed))
    return table
