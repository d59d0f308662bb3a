"""Rendering of `dltool cv` and `cv show` (each fold, the summary table) and of `runs compare` on two cvs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .training import format_value, status_markup


def fold_line(row: dict, folds: int) -> str:
    """'fold 2/5 (repeat 1) COMPLETED  accuracy=0.9333  loss=0.2101  run ID' for the console after each fold."""
    figures = "  ".join(f"{k}={format_value(v)}" for k, v in row.get("test", {}).items())
    tail = f"run {row['run']}" if row["status"] == "COMPLETED" else (row.get("reason") or row.get("run") or "")
    return f"fold {row['fold']}/{folds} (repeat {row['repeat']}) {row['status']}  {figures}  {tail}".replace(
        "    ", "  "
    )


def _interval(summary: dict | None) -> str:
    if not summary or summary.get("ci95") is None:
        return "-"
    low, high = summary["ci95"]
    return f"[{format_value(low)}, {format_value(high)}]"


def summary_table(result: dict) -> Table:
    """Every test metric over the completed folds: mean, std, 95 % interval (t), folds."""
    repeats = f" x {result['repeats']} repeats" if result["repeats"] > 1 else ""
    grouped = f", grouped by {result['group']}" if result.get("group") else ""
    table = Table(
        title=f"cv {result['id']}: {result['experiment']}, {result['folds']} folds{repeats}{grouped}; "
        f"{result['completed']}/{result['planned']} folds completed"
        + (f", {result['failed']} failed" if result["failed"] else ""),
        title_justify="left",
    )
    for column in ("test metric", "mean", "std", "95 % interval", "folds"):
        table.add_column(column, justify="left" if column == "test metric" else "right", no_wrap=True)
    for name, summary in result["metrics"].items():
        table.add_row(
            name,
            format_value(summary["mean"]),
            format_value(summary["std"]),
            _interval(summary),
            str(summary["n"]),
        )
    return table


def print_cv(console: Console, result: dict) -> None:
    """`dltool cv show`: one line per fold, then the summary table."""
    folds = Table(title_justify="left")
    for column in ("fold", "repeat", "status", *_metric_names(result), "run / reason"):
        folds.add_column(column, no_wrap=column != "run / reason")
    for row in result["rows"]:
        folds.add_row(
            str(row["fold"]),
            str(row["repeat"]),
            status_markup(row["status"]),
            *(format_value(row.get("test", {}).get(name)) for name in _metric_names(result)),
            row.get("run") if row["status"] == "COMPLETED" else (row.get("reason") or row.get("run") or ""),
        )
    console.print(folds)
    console.print(summary_table(result))


def _metric_names(result: dict) -> list[str]:
    return list(result["metrics"])


def print_cv_comparison(console: Console, compared: dict) -> None:
    """`runs compare CV CV`: each test metric's mean ± std per cv, and the difference of the means."""
    cvs = compared["cvs"]
    table = Table(title="cross-validations compared (test metrics over the completed folds)", title_justify="left")
    table.add_column("test metric", no_wrap=True)
    for cv in cvs:
        table.add_column(f"{cv['id']}\n{cv['experiment']}, {cv['completed']}/{cv['planned']} folds", justify="right")
    two = len(cvs) == 2
    if two:
        table.add_column("difference\n(2nd - 1st)", justify="right")
    for name, summaries in compared["metrics"].items():
        cells = ["-" if s is None else f"{format_value(s['mean'])} ± {format_value(s['std'])}" for s in summaries]
        if two:
            first, second = summaries
            cells.append("-" if first is None or second is None else format_value(second["mean"] - first["mean"]))
        table.add_row(name, *cells)
    console.print(table)
