"""Metrics of a classifier's predicted probabilities: ranking (ROC AUC, PR AUC) and calibration (Brier score, ECE).

Unlike the confusion counts of :mod:`dltool.metrics`, these need every score at
once, so :class:`ProbabilityTotals` keeps the labels and outputs of each chunk.
scikit-learn computes the ranking metrics and curves (imported when a report is
made); the expected calibration error is written here, scikit-learn has none.

The outputs are taken as probabilities: dltool names the loss by a string
(``train.loss``), which Keras builds with ``from_logits=False``, so a run's
classifier ends in a sigmoid or softmax by contract. Outputs that are not
probabilities (values outside [0, 1], or rows that do not sum to 1) still get
ranking metrics, which only need an order, but no calibration.
"""

from __future__ import annotations

import numpy as np

from .metrics import predicted_classes

ECE_BINS = 15  # Guo et al. 2017, "On Calibration of Modern Neural Networks"
PROBABILITY_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; a logit row misses by far more
MAX_CLASS_CURVES = 10  # more classes than this: the plots show the macro-average curve only


def probability_matrix(outputs: np.ndarray) -> np.ndarray:
    """One column per class: a single sigmoid output p becomes the two columns (1 - p, p)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs
    positive = outputs.reshape(-1)
    return np.stack([1.0 - positive, positive], axis=1)


def not_probabilities(outputs: np.ndarray) -> str | None:
    """Why ``outputs`` are not probabilities (values outside [0, 1], or softmax rows not summing to 1), or None."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.size == 0:
        return None
    low, high = float(outputs.min()), float(outputs.max())
    if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
        return f"the model's outputs range from {low:.4g} to {high:.4g}, not within [0, 1]"
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        sums = outputs.sum(axis=1)
        worst = float(sums[np.argmax(np.abs(sums - 1))])
        if abs(worst - 1) > PROBABILITY_TOLERANCE:
            return f"a row of the model's outputs sums to {worst:.4g}, not 1 (no softmax on the last layer)"
    return None


def _binary_scores(truth: np.ndarray, scores: np.ndarray) -> dict:
    """ROC AUC and average precision of one positive class against the rest; None with a reason when the data has
    only one of the two sides (scikit-learn raises for ROC AUC, and AP is meaningless without positives)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(truth.sum())
    result = {"positive_rate": float(positives / len(truth)) if len(truth) else None}
    if positives == 0:
        return {"roc_auc": None, "pr_auc": None, **result, "reason": "no sample of this class in the evaluated data"}
    if positives == len(truth):
        return {"roc_auc": None, "pr_auc": None, **result, "reason": "every evaluated sample is of this class"}
    return {
        "roc_auc": float(roc_auc_score(truth, scores)),
        "pr_auc": float(average_precision_score(truth, scores)),
        **result,
    }


def ranking_report(y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict:
    """ROC AUC and PR AUC (scikit-learn's average precision): of the second class against the first for a binary
    run, else one-vs-rest per class and their macro average over the classes that have both sides in the data."""
    y_true = np.asarray(y_true).reshape(-1)
    matrix = probability_matrix(outputs)
    if len(class_names) == 2:
        scores = _binary_scores(y_true == 1, matrix[:, 1])
        return {"average": "binary", "positive_class": class_names[1], **scores}
    per_class = {
        name: _binary_scores(y_true == index, matrix[:, index])
        for index, name in enumerate(class_names[: matrix.shape[1]])
    }
    scored = [s for s in per_class.values() if s["roc_auc"] is not None]
    return {
        "average": "macro over one-vs-rest classes",
        "roc_auc": float(np.mean([s["roc_auc"] for s in scored])) if scored else None,
        "pr_auc": float(np.mean([s["pr_auc"] for s in scored])) if scored else None,
        "classes_averaged": len(scored),
        "classes_left_out": [name for name, s in per_class.items() if s["roc_auc"] is None],
        "per_class": per_class,
    }


def confidence_bins(y_true: np.ndarray, outputs: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins (low, high] of the top-class probability: sample count, mean confidence and accuracy each.

    The predicted class is the one the run's reports use (argmax, or p >= 0.5
    for a sigmoid output); its probability is the confidence.
    """
    y_true = np.asarray(y_true).reshape(-1)
    predicted = predicted_classes(outputs)
    confidence = probability_matrix(outputs)[np.arange(len(predicted)), predicted]
    correct = (predicted == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") puts a confidence equal to an edge in the bin that edge closes: (low, high]
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidence, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int(counts[b]),
            "confidence": float(confidence_sums[b] / counts[b]) if counts[b] else None,
            "accuracy": float(correct_sums[b] / counts[b]) if counts[b] else None,
        }
        for b in range(bins)
    ]


def expected_calibration_error(bins: list[dict]) -> float | None:
    """ECE = sum over bins of (bin count / samples) * |accuracy - mean confidence| (Guo et al. 2017)."""
    total = sum(b["count"] for b in bins)
    if not total:
        return None
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def brier_score(y_true: np.ndarray, outputs: np.ndarray, classes: int) -> tuple[float, str]:
    """The Brier score and which one: binary, scikit-learn's brier_score_loss on p(positive) (0 to 1); else the
    mean over samples of the squared distance between the probability vector and the one-hot truth (0 to 2)."""
    from sklearn.metrics import brier_score_loss

    y_true = np.asarray(y_true).reshape(-1)
    matrix = probability_matrix(outputs)
    if classes == 2:
        positive = np.clip(matrix[:, 1], 0.0, 1.0)  # float32 rounding may step past 1, which scikit-learn refuses
        return float(brier_score_loss(y_true == 1, positive)), "binary: mean squared error of p(positive class)"
    one_hot = np.zeros_like(matrix)
    one_hot[np.arange(len(y_true)), y_true] = 1.0
    return (
        float(np.mean(np.sum(np.square(matrix - one_hot), axis=1))),
        "multi-class: mean over samples of the squared distance between the probability vector and the one-hot truth",
    )


def calibration_report(y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict:
    """Brier score, ECE and the reliability bins they come from; None with a reason for outputs that are not
    probabilities."""
    if len(outputs) == 0:
        return {"brier": None, "ece": None, "reason": "no samples"}
    reason = not_probabilities(outputs)
    if reason is not None:
        return {"brier": None, "ece": None, "reason": reason + ": calibration is measured on probabilities only"}
    bins = confidence_bins(y_true, outputs)
    brier, kind = brier_score(y_true, outputs, len(class_names))
    return {
        "brier": brier,
        "brier_kind": kind,
        "ece": expected_calibration_error(bins),
        "ece_bins": len(bins),
        "reliability": bins,
    }


def operating_points(
    y_true: np.ndarray, outputs: np.ndarray, classes: int, threshold: float | None = None
) -> list[dict]:
    """Where the run's decision rule (argmax, or p >= 0.5 for a sigmoid output; a binary run's ``threshold``
    where given) sits on each one-vs-rest curve: false and true positive rates and precision per class (the
    positive class alone for a binary run)."""
    y_true = np.asarray(y_true).reshape(-1)
    predicted = predicted_classes(outputs, threshold)
    points = []
    for index in [1] if classes == 2 else range(classes):
        truth, chosen = y_true == index, predicted == index
        positives, negatives, flagged = int(truth.sum()), int((~truth).sum()), int(chosen.sum())
        true_positives = int((truth & chosen).sum())
        points.append(
            {
                "class": index,
                "fpr": (flagged - true_positives) / negatives if negatives else None,
                "tpr": true_positives / positives if positives else None,
                "precision": true_positives / flagged if flagged else None,
            }
        )
    return points


def _macro_roc(curves: list[dict]) -> dict:
    """The mean true positive rate of the class curves over the union of their false positive rates."""
    grid = np.unique(np.concatenate([c["x"] for c in curves]))
    return {"x": grid, "y": np.mean([np.interp(grid, c["x"], c["y"]) for c in curves], axis=0)}


def _macro_pr(curves: list[dict]) -> dict:
    """The mean interpolated precision (the best precision at this recall or more) of the class curves."""
    grid = np.linspace(0.0, 1.0, 201)
    rows = []
    for c in curves:
        recall, precision = c["x"][::-1], c["y"][::-1]  # scikit-learn gives recall decreasing
        best = np.maximum.accumulate(precision[::-1])[::-1]  # precision interpolated: max over recall >= r
        rows.append(best[np.clip(np.searchsorted(recall, grid, side="left"), 0, len(recall) - 1)])
    return {"x": grid, "y": np.mean(rows, axis=0)}


def ranking_curves(
    y_true: np.ndarray, outputs: np.ndarray, class_names: list[str], kind: str, threshold: float | None = None
) -> dict:
    """The ROC (``kind`` "roc": x false positive rate, y true positive rate) or precision-recall ("pr": x recall, y
    precision) curves to draw: the positive class of a binary run; one per class (one-vs-rest) up to
    MAX_CLASS_CURVES classes, with their macro average; beyond that the macro average alone. Classes without both
    sides in the data are left out. Each curve: label, x, y, score (AUC or AP), base rate, operating point (at a
    binary run's decision ``threshold`` where given, else 0.5 or argmax)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    y_true = np.asarray(y_true).reshape(-1)
    matrix = probability_matrix(outputs)
    ranking = ranking_report(y_true, outputs, class_names)
    classes = len(class_names)
    points = operating_points(y_true, outputs, classes, threshold if classes == 2 else None)
    score_key = "roc_auc" if kind == "roc" else "pr_auc"
    scored = [(1, class_names[1], ranking)] if classes == 2 else []
    if classes != 2:
        scored = [(i, n, ranking["per_class"][n]) for i, n in enumerate(class_names[: matrix.shape[1]])]
    curves = []
    for index, name, scores in scored:
        if scores["roc_auc"] is None:
            continue
        truth = y_true == index
        if kind == "roc":
            x, y, _ = roc_curve(truth, matrix[:, index])
        else:
            y, x, _ = precision_recall_curve(truth, matrix[:, index])
        point = next(p for p in points if p["class"] == index)
        curves.append(
            {
                "label": name,
                "x": x,
                "y": y,
                "score": scores[score_key],
                "base_rate": scores["positive_rate"],
                "point": (point["fpr"], point["tpr"]) if kind == "roc" else (point["tpr"], point["precision"]),
            }
        )
    macro = None
    if classes != 2 and curves:
        macro = {
            **(_macro_roc(curves) if kind == "roc" else _macro_pr(curves)),
            "label": "macro average",
            "score": ranking[score_key],
            "base_rate": float(np.mean([c["base_rate"] for c in curves])),
            "point": None,
        }
    return {
        "curves": curves if classes <= MAX_CLASS_CURVES else [],
        "macro": macro,
        "average": ranking["average"],
        "threshold": threshold if classes == 2 else None,
    }


class ProbabilityTotals:
    """The true labels and model outputs of every chunk, for metrics that need all scores at once.

    Memory: 4 bytes a sample for the label (int32) and 4 per output (float32),
    so (1 + outputs) x 4 bytes a sample: 8 MB for a million sigmoid outputs,
    44 MB for a million samples of 10 classes. The inputs are not kept.
    """

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        self._labels: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []

    def add(self, y_true: np.ndarray, outputs: np.ndarray) -> None:
        """Keep one chunk: true class indices and the model's outputs for them."""
        outputs = np.asarray(outputs, dtype=np.float32)
        self._labels.append(np.asarray(y_true).reshape(-1).astype(np.int32))
        self._outputs.append(outputs.reshape(len(outputs), -1))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels (n,) int32, outputs (n, outputs) float32) of every chunk added so far."""
        if not self._labels:
            return np.zeros(0, np.int32), np.zeros((0, 1), np.float32)
        return np.concatenate(self._labels), np.concatenate(self._outputs)

    def report(self) -> dict:
        """{"ranking": ..., "calibration": ...} of every chunk added so far."""
        labels, outputs = self.arrays()
        return {
            "ranking": ranking_report(labels, outputs, self.class_names),
            "calibration": calibration_report(labels, outputs, self.class_names),
        }
