"""Plots written into runs (curves, confusion matrix, predicted vs true) and overlays of several runs.

matplotlib runs headless (Agg); every plot is written to a temporary file and renamed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from .errors import UsageError
from .fileio import atomic_write_bytes

DPI = 100
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}  # file suffix -> matplotlib's


def plot_format(path: Path) -> str:
    """The matplotlib format that ``path``'s suffix names (case-insensitive); UsageError for any other suffix."""
    suffix = Path(path).suffix
    if suffix.lower() not in FORMATS:
        received = f"'{suffix}'" if suffix else "no suffix"
        raise UsageError(
            f"{path}: a plot is written in the format its file name's suffix names; expected one of "
            f"{', '.join(FORMATS)}, received {received}. Name the file e.g. {Path(path).stem or 'plot'}.png"
        )
    return FORMATS[suffix.lower()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=plot_format(path), dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


def metric_names(rows: list[dict]) -> list[str]:
    """Metrics present in history rows ('loss' first), without their 'val_' twins."""
    skip = {"epoch", "phase", "learning_rate", "epoch_seconds"}
    names: list[str] = []
    for row in rows[:1]:
        for key in row:
            base = key[4:] if key.startswith("val_") else key
            if key not in skip and base not in names:
                names.append(base)
    return sorted(names, key=lambda n: (n != "loss", n))


def _values(rows: list[dict], key: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(key)
        out.append(float(value) if value not in (None, "") else math.nan)
    return out


def _grid(count: int):
    plt = _pyplot()
    cols = min(count, 2)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def curves(rows: list[dict], path: Path, title: str) -> None:
    """One panel per metric: train (solid) and validation (dashed) per epoch; a run with a fine-tuning phase has its
    epochs shaded."""
    names = metric_names(rows)
    fig, axes = _grid(len(names))
    epochs = _values(rows, "epoch")
    for ax, name in zip(axes, names):
        ax.plot(epochs, _values(rows, name), label=f"train {name}", color="tab:blue")
        if f"val_{name}" in rows[0]:
            ax.plot(
                epochs, _values(rows, f"val_{name}"), label=f"validation {name}", color="tab:orange", linestyle="--"
            )
        _mark_fine_tuning(ax, rows)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if name == "loss" and all(v > 0 for v in _values(rows, name) if not math.isnan(v)) and _spread(rows, name) > 50:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)


def _mark_fine_tuning(ax, rows: list[dict]) -> None:
    """Shade the second phase's epochs (history rows with phase 2), labelled, behind the curves."""
    tuned = [float(row["epoch"]) for row in rows if str(row.get("phase", "")) == "2"]
    if not tuned:
        return
    ax.axvspan(min(tuned) - 0.5, max(tuned) + 0.5, color="tab:green", alpha=0.08, label="fine-tuning", zorder=0)
    ax.axvline(min(tuned) - 0.5, color="tab:green", linewidth=1, linestyle=":")


def _spread(rows, name) -> float:
    values = [v for v in _values(rows, name) if v > 0 and not math.isnan(v)]
    return max(values) / min(values) if values else 1.0


def confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path, title: str) -> None:
    """A confusion matrix heat map: true class by row, predicted by column, counts written in the cells."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    size = len(class_names)
    side = min(max(4.5, 0.55 * size + 2.5), 16)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="samples")
    if size <= 30:
        ax.set_xticks(
            range(size),
            labels=class_names,
            rotation=45 if max(map(len, class_names)) > 3 else 0,
            ha="right" if max(map(len, class_names)) > 3 else "center",
        )
        ax.set_yticks(range(size), labels=class_names)
    if size <= 20:
        threshold = counts.max() / 2 if counts.size else 0
        for i in range(size):
            for j in range(size):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if counts[i, j] > threshold else "black",
                )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / counts.sum() if counts.sum() else 0.0
    ax.set_title(f"{title}\naccuracy {accuracy:.4f} on {counts.sum()} test samples")
    _save(fig, path)


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str, target: str = "target") -> None:
    """Scatter of predictions against true values with the y = x line (first output only)."""
    plt = _pyplot()
    true = np.asarray(y_true).reshape(len(y_true), -1)[:, 0]
    pred = np.asarray(y_pred).reshape(len(y_pred), -1)[:, 0]
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.scatter(true, pred, s=12, alpha=0.6, label="test samples")
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([low, high], [low, high], color="tab:red", linewidth=1, label="prediction = truth")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    mse = float(np.mean((true - pred) ** 2))
    ax.set_title(f"{title}\ntest MSE {mse:.4g} on {len(true)} samples")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def forecast(
    y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str, target: str = "target", first_step: int = 0
) -> None:
    """The test stretch of a series in time order: true values and one-step forecasts (first output only)."""
    plt = _pyplot()
    true = np.asarray(y_true).reshape(len(y_true), -1)[:, 0]
    pred = np.asarray(y_pred).reshape(len(y_pred), -1)[:, 0]
    steps = np.arange(first_step, first_step + len(true))
    fig, ax = plt.subplots(figsize=(9.6, 4.2))
    ax.plot(steps, true, color="tab:gray", linewidth=1.2, label=f"true {target}")
    ax.plot(steps, pred, color="tab:blue", linewidth=1.2, label=f"forecast {target}")
    ax.set_xlabel("test window (time order)")
    ax.set_ylabel(target)
    mse = float(np.mean((true - pred) ** 2))
    ax.set_title(f"{title}\ntest MSE {mse:.4g} on {len(true)} windows")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def overlay(histories: dict[str, list[dict]], path: Path, metrics: list[str] | None = None) -> list[str]:
    """Overlay several runs' curves (one colour per run; validation dashed) into ``path`` (its suffix names the
    format: see :func:`plot_format`). Returns the metrics drawn."""
    plot_format(path)  # an unknown suffix is refused before any drawing
    plt = _pyplot()
    common = None
    for rows in histories.values():
        names = set(metric_names(rows))
        common = names if common is None else common & names
    names = [m for m in (metrics or sorted(common or [], key=lambda n: (n != "loss", n))) if m in (common or set())]
    if not names:
        return []
    fig, axes = _grid(len(names))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes, names):
        for index, (label, rows) in enumerate(histories.items()):
            colour = colours[index % len(colours)]
            ax.plot(_values(rows, "epoch"), _values(rows, name), color=colour, label=f"{label}")
            if f"val_{name}" in rows[0]:
                ax.plot(_values(rows, "epoch"), _values(rows, f"val_{name}"), color=colour, linestyle="--")
        ax.set_title(f"{name} (solid: train, dashed: validation)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    return names


MAX_PLOTTED_TEST_SAMPLES = 200_000  # the confusion matrix / scatter of a streamed test split use its first rows


def write_run_plots(run, config, rows: list[dict], model, data, test_outputs=None) -> None:
    """curves.png, and confusion_matrix.png (classifiers) or predictions.png (regression), into the run.

    ``test_outputs``: (targets, model outputs) of the first test samples where the caller has them already
    (None: predicted here, up to MAX_PLOTTED_TEST_SAMPLES)."""
    from .decision import run_threshold
    from .keras_io import predict_eagerly
    from .metrics import confusion_matrix as count_confusion
    from .metrics import predicted_classes

    title = f"{config.name} ({run.id})"
    curves(rows, run.file("curves.png"), title)
    if test_outputs is None:
        chunks = [(y, predict_eagerly(model, x)) for x, y in data.test_chunks(limit=MAX_PLOTTED_TEST_SAMPLES)]
        test_outputs = np.concatenate([y for y, _ in chunks]), np.concatenate([o for _, o in chunks])
    y_test, outputs = test_outputs
    state = data.preprocessing
    if config.is_classifier:
        threshold = run_threshold(run.info)  # train.threshold: the matrix counts the run's own decisions
        matrix = count_confusion(y_test, predicted_classes(outputs, threshold), len(state.class_names)).tolist()
        shown = title if threshold is None else f"{title}, decision threshold {threshold:.4g}"
        confusion_matrix(matrix, state.class_names, run.file("confusion_matrix.png"), shown)
    elif state.kind == "timeseries":
        forecast(y_test, outputs, run.file("predictions.png"), title, state.target_names[0])
    else:
        target = state.target_names[0] if state.target_names else "target"
        predicted_vs_true(y_test, outputs, run.file("predictions.png"), title, target)


def scatter_panels(panels: list[dict], path: Path, title: str) -> None:
    """One scatter per panel: {title, x, y, xlabel, ylabel, optional line (drawn over x) and line_label, log_x}."""
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels):
        ax.scatter(panel["x"], panel["y"], color="tab:blue", alpha=0.7)
        if panel.get("line") is not None:
            ax.plot(
                panel["x"], panel["line"], color="tab:orange", drawstyle="steps-post", label=panel.get("line_label")
            )
            ax.legend()
        if panel.get("log_x"):
            ax.set_xscale("log")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def _class_colours(count: int) -> list:
    plt = _pyplot()
    return [plt.get_cmap("tab10")(i % 10) for i in range(count)]


def ranking_curves(drawn: dict, kind: str, path: Path, title: str) -> None:
    """ROC (``kind`` "roc") or precision-recall ("pr") curves from :func:`dltool.probabilities.ranking_curves`:
    the score in each legend entry, the chance line (the diagonal, or each class's base rate), and the run's
    operating point (argmax, or p >= 0.5, or a binary run's decision threshold) on each class curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    curves, macro = drawn["curves"], drawn["macro"]
    score_name = "AUC" if kind == "roc" else "AP"
    step = {"drawstyle": "steps-post"} if kind == "pr" else {}
    pointed = False
    for curve, colour in zip(curves, _class_colours(len(curves))):
        x, y = curve["x"], curve["y"]
        label = curve["label"] if macro is not None or len(curves) > 1 else f"positive class {curve['label']}"
        ax.plot(x, y, color=colour, linewidth=1.6, label=f"{label} ({score_name} {curve['score']:.3f})", **step)
        if kind == "pr":
            ax.axhline(curve["base_rate"], color=colour, linewidth=0.8, linestyle=":")
        point = curve["point"]
        if point is not None and None not in point:
            ax.plot(*point, marker="o", markersize=7, markeredgecolor="black", color=colour, linestyle="none")
            pointed = True
    if macro is not None:
        ax.plot(
            macro["x"],
            macro["y"],
            color="black",
            linewidth=2.2,
            linestyle="--" if curves else "-",
            label=f"macro average (mean {score_name} {macro['score']:.3f})",
        )
        if kind == "pr" and not curves:
            ax.axhline(macro["base_rate"], color="gray", linewidth=0.8, linestyle=":")
    if pointed:  # one legend entry for the points of every class
        threshold = drawn.get("threshold")
        rule = "argmax" if macro is not None else f"p(positive) >= {0.5 if threshold is None else threshold:.4g}"
        ax.plot(
            [], [], marker="o", markeredgecolor="black", color="white", linestyle="none", label=f"run's rule: {rule}"
        )
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="gray", linewidth=1, linestyle=":", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate (recall)")
    else:
        base = "positive base rate" if macro is None else ("each class's base rate" if curves else "mean base rate")
        ax.plot([], [], color="gray", linewidth=0.8, linestyle=":", label=f"chance ({base})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    what = "ROC" if kind == "roc" else "precision-recall"
    ax.set_title(f"{title}\n{what}" + (f", {drawn['average']}" if macro is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    _save(fig, path)


def reliability_diagram(calibration: dict, path: Path, title: str) -> None:
    """Accuracy against mean top-class confidence per bin, with the diagonal of perfect calibration; the samples
    per bin as a histogram below. ``calibration``: :func:`dltool.probabilities.calibration_report`'s result."""
    plt = _pyplot()
    bins = calibration["reliability"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.0, 6.6), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
    )
    lows = np.array([b["low"] for b in bins])
    widths = np.array([b["high"] - b["low"] for b in bins])
    filled = [b for b in bins if b["count"]]
    top.bar(
        [b["low"] for b in filled],
        [b["accuracy"] for b in filled],
        width=[b["high"] - b["low"] for b in filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.6,
        alpha=0.8,
        label="accuracy in the bin",
    )
    top.plot(
        [b["confidence"] for b in filled],
        [b["accuracy"] for b in filled],
        marker="o",
        markersize=4,
        color="tab:orange",
        linestyle="none",
        label="(mean confidence, accuracy)",
    )
    top.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1.2, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    top.set_title(
        f"{title}\nreliability: ECE {calibration['ece']:.4f} ({len(bins)} bins), Brier {calibration['brier']:.4f}"
    )
    bottom.bar(lows, [b["count"] for b in bins], width=widths, align="edge", color="tab:gray", edgecolor="black")
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("samples")
    bottom.grid(alpha=0.3)
    _save(fig, path)


def write_evaluation_plots(
    folder: Path,
    name: str,
    labels,
    outputs,
    class_names: list[str],
    calibration: dict,
    title: str,
    threshold: float | None = None,
) -> list[str]:
    """<name>-roc.png, <name>-pr.png and <name>-reliability.png into ``folder``; returns the file names written
    (no ROC or PR plot when no class has both sides in the data, no reliability diagram without an ECE: outputs
    that are not probabilities). ``calibration``: the evaluation's calibration report; ``threshold``: a binary
    run's decision threshold, marked on the ROC and PR curves (default None: 0.5)."""
    from .probabilities import ranking_curves as curves_to_draw

    written = []
    for kind in ("roc", "pr"):
        drawn = curves_to_draw(labels, outputs, class_names, kind, threshold)
        if drawn["curves"] or drawn["macro"]:
            ranking_curves(drawn, kind, folder / f"{name}-{kind}.png", title)
            written.append(f"{name}-{kind}.png")
    if calibration.get("ece") is not None:
        reliability_diagram(calibration, folder / f"{name}-reliability.png", title)
        written.append(f"{name}-reliability.png")
    return written
