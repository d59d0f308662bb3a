"""Metrics of model outputs in NumPy alone: predicted classes, confusion matrix, per-class scores, regression totals.

One implementation for `evaluate`, the run plots and run reports. The totals
add up chunk by chunk, so a file read in bounded chunks gets exactly the
report it would get read whole.
"""

from __future__ import annotations

import numpy as np


def predicted_classes(outputs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices from model outputs: argmax, or a 0.5 threshold for a single sigmoid output.

    ``threshold`` (a binary run's decision threshold, see :mod:`dltool.decision`; default None) makes a
    sample class 1 when its score (the sigmoid output, or a 2-class softmax's second column) is >= it.
    """
    outputs = np.asarray(outputs)
    if threshold is not None and (outputs.ndim < 2 or outputs.shape[1] <= 2):
        scores = outputs[:, 1] if outputs.ndim == 2 and outputs.shape[1] == 2 else outputs.reshape(-1)
        return (scores >= threshold).astype(np.int32)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(axis=1).astype(np.int32)
    return (outputs.reshape(-1) >= 0.5).astype(np.int32)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class by row, predicted class by column) as int64, ``classes`` x ``classes``.

    Pairs with a class outside 0..classes-1 (a model with more outputs than the
    run has classes) are left out, as scikit-learn does with ``labels=range(classes)``.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    known = (y_true >= 0) & (y_true < classes) & (y_pred >= 0) & (y_pred < classes)
    flat = y_true[known] * classes + y_pred[known]
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def classification_report(matrix: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro averages and the matrix, from confusion counts.

    A score whose denominator is zero is 0, as scikit-learn's ``zero_division=0``.
    """
    matrix = np.asarray(matrix)
    true_positive = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.tolist(),
    }


class ClassificationTotals:
    """Confusion counts added up over chunks of (class indices, model outputs)."""

    name = "classification"

    def __init__(self, class_names: list[str], threshold: float | None = None):
        self.class_names = list(class_names)
        self.threshold = threshold  # a binary run's decision threshold; None: argmax, or 0.5 for a sigmoid
        self.matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)

    def add(self, y_true: np.ndarray, outputs: np.ndarray) -> None:
        """Count one chunk: true class indices and the model's outputs for them."""
        self.matrix += confusion_matrix(y_true, predicted_classes(outputs, self.threshold), len(self.class_names))

    def report(self) -> dict:
        """The classification report of every chunk added so far (with the decision threshold used, if any)."""
        report = classification_report(self.matrix, self.class_names)
        return report if self.threshold is None else {"decision_threshold": self.threshold, **report}


class RegressionTotals:
    """Running sums for MSE, MAE and R² over chunks (R² averaged over outputs, as scikit-learn does)."""

    name = "regression"

    def __init__(self):
        self.count = 0
        self.sums: dict[str, np.ndarray | float] = {}

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add one chunk of targets and the model's outputs for them."""
        y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
        error = y_true - y_pred
        parts = {
            "sse": np.square(error).sum(axis=0),
            "sae": np.abs(error).sum(axis=0),
            "sy": y_true.sum(axis=0),
            "syy": np.square(y_true).sum(axis=0),
        }
        for key, value in parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += len(y_true)

    def report(self) -> dict:
        """MSE, MAE and R² (None for fewer than 2 samples or a constant target) of every chunk added so far."""
        n, s = self.count, self.sums
        if n == 0:
            return {"mse": None, "mae": None, "r2": None}
        mse = float(np.mean(s["sse"]) / n)
        mae = float(np.mean(s["sae"]) / n)
        total = s["syy"] - np.square(s["sy"]) / n
        r2 = float(np.mean(1 - s["sse"] / total)) if n > 1 and np.all(total > 0) else None
        return {"mse": mse, "mae": mae, "r2": r2}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, MAE and R² (averaged over outputs) of targets and outputs held at once."""
    totals = RegressionTotals()
    totals.add(y_true, y_pred)
    return totals.report()
