"""Rendering of reports: `runs`, `runs show`, `runs compare`, `evaluate`, `sweep show` and `smoke` (with cli, the only printing).

The live training display and the shared formatting helpers are in :mod:`dltool.cli.display.training`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .training import (
    calibration_line,
    class_weight_line,
    expectations_cell,
    file_size,
    format_value,
    metrics_table,
    mlflow_line,
    print_expectations,
    resample_line,
    status_markup,
    threshold_line,
)


def runs_table(rows: list[dict], title: str) -> Table:
    """`dltool runs`: one line per run (an expect column when any run has expectations)."""
    table = Table(title=title, title_justify="left")
    expect = any(row.get("expectations") for row in rows)
    columns = ("id", "name", "status", "backend", "epochs", "test metrics", "duration")
    for column in columns + (("expect",) if expect else ()):
        table.add_column(column, no_wrap=True)
    for row in rows:
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in list(row["test"].items())[:3])
        duration = f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else "-"
        epochs = f"{row.get('epochs_done') or 0}/{row.get('epochs_planned') or '?'}"
        table.add_row(
            row["id"],
            row.get("name") or "-",
            status_markup(row["status"]),
            row.get("backend") or "-",
            epochs,
            metrics or (row.get("error") or "")[:70],
            duration,
            *((expectations_cell(row.get("expectations")),) if expect else ()),
        )
    return table


def data_line(sizes: dict) -> str:
    """`runs show`'s line on a run's data: split sizes, how the test split was drawn, in memory or streamed, the
    cache of a streamed folder and the unreadable files it left out."""
    validation = (
        "validation: the test split"
        if sizes.get("validation_is_test")
        else (f"{sizes['validation']} validation" if sizes.get("validation") else "no validation")
    )
    test_split = f" ({sizes['test_split']})" if sizes.get("test_split") else ""
    line = f"data: {sizes.get('train')} train, {validation}, {sizes.get('test')} test{test_split}; "
    line += "streamed from disk each epoch" if sizes.get("streamed") else "in memory"
    cache = sizes.get("cache") or {}
    if cache.get("kind") == "disk":
        line += f"; disk cache {cache.get('state')}: {cache.get('folder')}"
    elif cache.get("kind") == "memory":
        line += "; memory cache"
    if sizes.get("unreadable_files"):
        line += f"; {sizes['unreadable_files']} unreadable file(s) left out"
    return line


def parameter_lines(shown: dict) -> list[str]:
    """'backbone: MobileNetV3Small (weights imagenet, sha256 1a2b...)' and the parameters trainable and frozen, per phase
    for a run with fine-tuning; nothing for a run that recorded neither (runs made before)."""
    lines = []
    backbone = shown.get("backbone")
    if backbone:
        what = backbone.get("application") or backbone.get("preset") or f"run {backbone.get('run')}"
        details = [f"weights {backbone['weights']}"] if backbone.get("weights") else []
        if backbone.get("up_to"):
            details.append(f"up to {backbone['up_to']}")
        if backbone.get("weights_sha256"):
            details.append(f"sha256 {backbone['weights_sha256'][:12]}")
        lines.append(f"backbone: {what}" + (f" ({', '.join(details)})" if details else ""))
    phases = shown.get("phases") or []
    if phases:
        for phase in phases:
            name = "frozen backbone" if phase.get("phase") == 1 else "fine-tuning"
            rate = f", learning rate {phase['learning_rate']:g}" if phase.get("learning_rate") else ""
            lines.append(
                f"phase {phase.get('phase')} ({name}, from epoch {phase.get('first_epoch')}{rate}): "
                f"{phase.get('trainable', 0):,} trainable, {phase.get('frozen', 0):,} frozen parameters"
            )
    elif shown.get("parameters") and shown["parameters"].get("frozen"):
        counts = shown["parameters"]
        lines.append(f"parameters: {counts['trainable']:,} trainable, {counts['frozen']:,} frozen")
    return lines


def record_lines(shown: dict) -> list[str]:
    """The run's record in lines: data, class weights, resampling, MLflow, threshold, calibration, parameters."""
    lines = []
    if shown.get("data"):
        lines.append(data_line(shown["data"]))
    if shown.get("class_weight"):
        lines.append(class_weight_line(shown["class_weight"]))
    if shown.get("resample"):
        lines.append(resample_line(shown["resample"]))
    if (shown.get("tracking") or {}).get("mlflow"):
        lines.append(mlflow_line(shown["id"], shown["tracking"]["mlflow"], shown["status"]))
    if shown.get("threshold"):
        lines.append(threshold_line(shown["threshold"]))
    if shown.get("calibration"):
        lines.append(calibration_line(shown["calibration"]))
    return lines + list(parameter_lines(shown))


def print_run(console: Console, shown: dict) -> None:
    """`dltool runs show`: header, reason, data, final metrics, best epoch, history chart, config, files."""
    from ...commands.runs_report import sparkline
    from ...config.yamlio import dump_yaml

    console.print(
        f"[bold]{shown['id']}[/]  {status_markup(shown['status'])}  {shown.get('epochs_done') or 0}/"
        f"{shown.get('epochs_planned') or '?'} epochs  "
        f"{(shown['backend'] + ' on ') if shown.get('backend') else ''}{shown.get('device') or ''}  "
        f"{shown.get('params') or 0:,} parameters",
        highlight=False,
    )
    if shown.get("error"):
        console.print(f"reason: {shown['error']}", highlight=False)
    for line in record_lines(shown):
        console.print(line, highlight=False, markup=False)
    print_expectations(console, shown.get("expectations"))
    metrics = shown.get("metrics")
    if metrics:
        restored = (
            f" (weights of epoch {metrics['restored_epoch']}: restore_best_weights)"
            if metrics.get("restored_epoch")
            else ""
        )
        console.print(metrics_table(metrics, title="final metrics" + restored))
        best = metrics.get("best_epoch") or {}
        if best:
            values = "  ".join(
                f"{k}={format_value(v)}"
                for k, v in best.items()
                if k not in ("epoch", "epoch_seconds", "learning_rate")
            )
            console.print(f"best epoch {int(best['epoch'])}: {values}", highlight=False)
    history = shown["history"]
    if history:
        chart = Table(title="history (first → last epoch)", title_justify="left")
        for column in ("value", "first", "last", "min", "max", "curve"):
            chart.add_column(column, justify="left" if column in ("value", "curve") else "right")
        for key in history[0]:
            if key in ("epoch", "phase", "epoch_seconds"):
                continue
            values = [row.get(key) for row in history]
            clean = [v for v in values if v is not None]
            chart.add_row(
                key, *(format_value(v) for v in (clean[0], clean[-1], min(clean), max(clean))), sparkline(values)
            )
        console.print(chart)
    if shown.get("evaluations"):
        console.print(evaluations_table(shown["evaluations"]))
    if shown.get("exports"):
        from .export import exports_table

        console.print(exports_table(shown["exports"], str(Path(shown["path"]).resolve())))
    console.print("[bold]config[/]", highlight=False)
    console.print(dump_yaml(shown["config"]).rstrip(), highlight=False, markup=False)
    files = "  ".join(
        f"{name} ({file_size(size)})" for name, size in shown["files"].items() if not name.startswith("tensorboard/")
    )
    console.print("[bold]files[/]  " + files, highlight=False)


def evaluation_figures(evaluation: dict) -> dict:
    """An evaluation's headline figures: the compiled metrics, then for a classifier ROC AUC, PR AUC (binary, or the
    one-vs-rest macro average), Brier score and ECE, and a decision threshold's own when the run has one."""
    figures = dict(evaluation.get("compiled") or {})
    classification = evaluation.get("classification") or {}
    ranking, calibration = classification.get("ranking") or {}, classification.get("calibration") or {}
    for key, value in (
        *((k, ranking.get(k)) for k in ("roc_auc", "pr_auc")),
        *((k, calibration.get(k)) for k in ("brier", "ece")),
    ):
        if value is not None:
            figures[key] = value
    decision = evaluation.get("decision") or {}
    if decision.get("threshold") is not None:
        figures["threshold"] = decision["threshold"]
    return figures


def evaluations_table(evaluations: dict[str, dict]) -> Table:
    """`runs show`: one line per evaluated data set: its data, samples, model file and its figures (compiled
    metrics, ranking, calibration, decision threshold)."""
    table = Table(title="evaluations (dltool evaluate)", title_justify="left")
    for column in ("name", "data", "samples", "model", "metrics"):
        table.add_column(column, justify="right" if column == "samples" else "left")
    for name, evaluation in evaluations.items():
        metrics = "  ".join(f"{k} {format_value(v)}" for k, v in evaluation_figures(evaluation).items())
        table.add_row(
            name,
            str(evaluation.get("data", "")),
            str(evaluation.get("samples", "")),
            str(evaluation.get("model", "model.keras")),
            metrics,
        )
    return table


def print_comparison(console: Console, compared: dict) -> None:
    """`dltool runs compare`: the config values that differ, then test metrics with the best in bold."""
    from ...commands.runs_report import lower_is_better

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
        results.add_row(
            metric,
            *(
                ("[bold green]" + format_value(v) + "[/]") if v == best and len(present) > 1 else format_value(v)
                for v in values
            ),
        )
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
    for name, value in probability_rows(report):
        table.add_row(name, value)
    console.print(table)
    if "classification" in result:
        ranked = (report.get("ranking") or {}).get("per_class") or {}
        columns = ("precision", "recall", "f1", "support") + (("roc_auc", "pr_auc") if ranked else ())
        per_class = Table(title="per class", title_justify="left")
        per_class.add_column("class")
        for column in columns:
            per_class.add_column({"roc_auc": "ROC AUC", "pr_auc": "PR AUC"}.get(column, column), justify="right")
        for name, values in report["per_class"].items():
            values = {**values, **ranked.get(name, {})}
            per_class.add_row(name, *(format_value(values[k]) for k in columns))
        console.print(per_class)
    for note in probability_notes(report):
        console.print(note, highlight=False, markup=False)
    if result.get("decision"):
        console.print(decision_note(result["decision"]), highlight=False, markup=False)


def decision_note(decision: dict) -> str:
    """Which threshold a binary run's labels used, and that Keras's compiled metrics did not."""
    return (
        f"labels at decision threshold {decision['threshold']:.4g} ({decision['source']}): class "
        f"{decision['positive_class']} when its probability >= it; precision {decision['precision']:.4g}, recall "
        f"{decision['recall']:.4g}, F1 {decision['f1']:.4g}, accuracy {decision['accuracy']:.4g} (Keras's compiled "
        "metrics count a sigmoid's p >= 0.5)"
    )


def probability_rows(report: dict) -> list[tuple[str, str]]:
    """`evaluate`'s ROC AUC, PR AUC, Brier and ECE lines of a classifier ('-' where undefined); none for regression."""
    ranking, calibration = report.get("ranking"), report.get("calibration")
    if ranking is None or calibration is None:
        return []
    over = f"positive class {ranking['positive_class']}" if "positive_class" in ranking else "macro, one-vs-rest"
    return [
        (f"ROC AUC ({over})", format_value(ranking["roc_auc"])),
        (f"PR AUC ({over})", format_value(ranking["pr_auc"])),
        ("Brier score", format_value(calibration["brier"])),
        (f"ECE ({calibration.get('ece_bins', '-')} bins)", format_value(calibration["ece"])),
    ]


def probability_notes(report: dict) -> list[str]:
    """Why a ranking or calibration figure is missing: a class absent from the data, outputs not probabilities."""
    ranking, calibration = report.get("ranking") or {}, report.get("calibration") or {}
    notes = []
    if ranking.get("reason"):
        notes.append(f"no ROC or PR AUC: {ranking['reason']}")
    for name, scores in (ranking.get("per_class") or {}).items():
        if scores.get("reason"):
            notes.append(f"class {name}: no ROC or PR AUC ({scores['reason']}); left out of the macro average")
    if calibration.get("reason"):
        notes.append(f"no Brier score or ECE: {calibration['reason']}")
    return notes


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
    table = Table(
        title=f"sweep {report['id']}: {report['method']} on {report['experiment']}, "
        f"{report['trials_done']}/{report['trials_planned']} trials done ({counts})",
        title_justify="left",
    )
    for column in ("trial", "status", metric, "epochs", "parameters", "run / reason"):
        table.add_column(column, no_wrap=column != "run / reason")
    for row in report["rows"]:
        table.add_row(
            str(row["trial"]),
            status_markup(row["status"]),
            format_value(row["objective"]),
            format_value(row["epochs"]),
            _params_text(row["params"]),
            row["run"] if row["status"] == "COMPLETED" else (row.get("reason") or row.get("run") or ""),
        )
    console.print(table)
    best = report["best"]
    if best is None:
        console.print("no trial has completed yet", highlight=False)
        return
    console.print(
        f"best: trial {best['trial']}, {metric} {format_value(best['objective'])} ({report['objective']['goal']}), "
        f"run {best['run']}",
        highlight=False,
        markup=False,
    )
    console.print(
        f"use it: dltool evaluate {best['run']}   |   dltool predict {best['run']} INPUT   |   "
        f"dltool runs show {best['run']}",
        highlight=False,
        markup=False,
    )
    console.print(
        f"deploy it: dltool export {best['run']} --format saved_model   |   dltool serve {best['run']}",
        highlight=False,
        markup=False,
    )


# --------------------------------------------------------------------------- smoke
def smoke_line(result: dict) -> str:
    """One config's result as it finishes: status, seconds, config, and what failed or why it was skipped, or what
    the smoke run changed in it (an imagenet backbone built untrained)."""
    why = f"  {result['stage']}: {result['message']}" if result["status"] != "passed" else ""
    notes = f"  ({'; '.join(result['notes'])})" if result.get("notes") and not why else ""
    return f"{result['status']:<8} {result['seconds']:6.1f}s  {result['config']}{why}{notes}"


def smoke_table(report: dict) -> Table:
    """`dltool smoke`: one row per config (config, status, seconds, what failed), totals in the title."""
    counts = ", ".join(
        f"{report[s]} {s}" for s in ("passed", "failed", "unmet", "skipped") if report[s] or s == "passed"
    )
    configs = f"{len(report['configs'])} config" + ("" if len(report["configs"]) == 1 else "s")
    table = Table(
        title=f"smoke: {configs}, {counts} in {report['seconds']:.1f}s",
        title_justify="left",
    )
    for column in ("config", "status", "seconds", "what failed"):
        table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
    for row in report["configs"]:
        failed = "" if row["status"] == "passed" else f"{row['stage']}: {row['message']}"
        table.add_row(row["config"], status_markup(row["status"]), f"{row['seconds']:.1f}", Text(failed))
    return table
