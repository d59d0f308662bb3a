"""A binary classifier's decision threshold: choosing it on the validation split, and applying it.

A sample is predicted positive (the second class, ``class_names[1]``) when its score is >= the threshold, as
scikit-learn's curves count it; the score is a single sigmoid output, or the second column of a 2-class softmax.
The rules (``train.threshold.optimize``) pick a threshold among the scores themselves, from scikit-learn's
``precision_recall_curve`` and ``roc_curve``:

- ``f1``: the highest F1;
- ``youden``: the highest Youden's J (true positive rate - false positive rate);
- ``precision_at_recall`` (``at`` = a recall): the highest precision among thresholds whose recall >= ``at``;
- ``recall_at_precision`` (``at`` = a precision): the highest recall among thresholds whose precision >= ``at``.

Ties go to the larger threshold (fewer positives predicted). A target no threshold reaches falls back to the
F1 rule, and the choice says so (``fallback``). No NumPy beyond this module's own arrays, no Keras.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

RULES = ("f1", "youden", "precision_at_recall", "recall_at_precision")
TARGETED = ("precision_at_recall", "recall_at_precision")
DEFAULT = 0.5  # the decision of a run without a threshold: p >= 0.5 (argmax for a 2-class softmax, ties aside)
# Fewer positive validation samples than this and a chosen threshold is said to be uncertain: a recall target met
# on n positives is met in steps of 1/n, and the lowest positive score the rule keeps is one draw among n.
FEW_POSITIVES = 20


def positive_scores(outputs: np.ndarray) -> np.ndarray | None:
    """The positive class's score of each sample: a single sigmoid output, or a 2-class softmax's second column;
    None for outputs of more than two classes."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 2:
        return None
    if outputs.ndim == 2 and outputs.shape[1] == 2:
        return outputs[:, 1]
    return outputs.reshape(-1)


def figures_at(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall and F1 of the positive class when scores >= ``threshold`` are positive
    (scikit-learn's, with ``zero_division=0``), and the samples counted."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    predicted = (np.asarray(scores).reshape(-1) >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, predicted, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "samples": int(len(y_true)),
    }


def _best(values: np.ndarray, thresholds: np.ndarray, allowed: np.ndarray) -> int:
    """Index of the highest value among ``allowed``; of equal values, the one at the largest threshold."""
    candidates = np.flatnonzero(allowed)
    best = values[candidates].max()
    tied = candidates[values[candidates] >= best]
    return int(tied[np.argmax(thresholds[tied])])


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, rule: str, at: float | None = None) -> dict:
    """The threshold ``rule`` picks on labelled scores (0/1 labels):
    ``{"value", "rule", ["at"], "positives", "fallback"?, "caution"?}``.

    ``fallback`` (present only when used) says why the rule's own choice was not possible: a target no
    threshold reaches (then the F1 rule decides), or a split with only one class (then 0.5). ``caution``
    (present only then) says that the validation split had fewer than FEW_POSITIVES positive samples.
    """
    positives = int(np.asarray(y_true).reshape(-1).astype(np.int64).sum())
    chosen = {**_choose(y_true, scores, rule, at), "positives": positives}
    if 0 < positives < FEW_POSITIVES and "fallback" not in chosen:
        chosen["caution"] = (
            f"chosen on {positives} positive validation sample{'s' if positives > 1 else ''} only: on new data its "
            f"recall and precision can differ widely (a recall is counted in steps of 1/{positives} here); a larger "
            "validation split gives a steadier threshold"
        )
    return chosen


def _choose(y_true: np.ndarray, scores: np.ndarray, rule: str, at: float | None) -> dict:
    """choose_threshold's choice itself."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {', '.join(RULES)}")
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    chosen: dict = {"rule": rule, **({"at": at} if rule in TARGETED else {})}
    positives = int(y_true.sum())
    if positives == 0 or positives == len(y_true):
        side = "no positive" if positives == 0 else "no negative"
        return {**chosen, "value": DEFAULT, "fallback": f"the validation split has {side} sample: kept {DEFAULT}"}
    if rule == "youden":
        fpr, tpr, thresholds = roc_curve(y_true, scores, drop_intermediate=False)
        # The first point is (0, 0) at an infinite threshold: no sample is positive there.
        index = _best((tpr - fpr)[1:], thresholds[1:], np.ones(len(thresholds) - 1, dtype=bool))
        return {**chosen, "value": float(thresholds[1:][index])}
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point (precision 1, recall 0) has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    everywhere = np.ones(len(thresholds), dtype=bool)
    if rule == "f1":
        return {**chosen, "value": float(thresholds[_best(f1, thresholds, everywhere)])}
    if rule == "precision_at_recall":
        reached, values, measure, best_reached = recall >= at, precision, "recall", float(recall.max())
    else:
        reached, values, measure, best_reached = precision >= at, recall, "precision", float(precision.max())
    if reached.any():
        return {**chosen, "value": float(thresholds[_best(values, thresholds, reached)])}
    value = float(thresholds[_best(f1, thresholds, everywhere)])
    return {
        **chosen,
        "value": value,
        "fallback": f"no threshold reaches {measure} >= {at:g} on the validation split (the best is "
        f"{best_reached:.4g}): chose the F1-optimal threshold instead",
    }


def describe(record: dict) -> str:
    """One line for the run log and the console, from run.json's ``threshold`` record."""
    rule = record["rule"]
    rule_text = f"{rule} {record['at']:g}" if record.get("at") is not None else rule
    figures = record.get("validation")
    at_validation = (
        f"; on validation precision {figures['precision']:.4g}, recall {figures['recall']:.4g}, F1 {figures['f1']:.4g}"
        if figures
        else ""
    )
    test = record.get("test")
    at_test = (
        f"; on test precision {test['precision']:.4g}, recall {test['recall']:.4g}, F1 {test['f1']:.4g}" if test else ""
    )
    fallback = f" ({record['fallback']})" if record.get("fallback") else ""
    caution = f"; caution: {record['caution']}" if record.get("caution") else ""
    return f"decision threshold {record['value']:.4g} ({rule_text}){fallback}{at_validation}{at_test}{caution}"


def check_override(value: float | None, class_names: list[str] | None, outputs: int | None = None) -> None:
    """Refuse a ``--threshold`` outside (0, 1), or on a run that is not a binary classifier."""
    if value is None:
        return
    if not (0.0 < value < 1.0):
        raise UsageError(f"--threshold: expected a number between 0 and 1 (exclusive), received {value:g}")
    if class_names is None or len(class_names) != 2 or (outputs is not None and outputs > 2):
        kind = "a regression" if class_names is None else f"a classifier of {len(class_names)} classes"
        raise UsageError(
            f"--threshold applies to binary classifiers only (one sigmoid output or a 2-class softmax); this run is "
            f"{kind}; leave out --threshold"
        )


def run_threshold(info: dict, override: float | None = None) -> float | None:
    """The threshold a run decides with: ``override`` (``--threshold``), else run.json's, else None (0.5/argmax)."""
    if override is not None:
        return float(override)
    record = info.get("threshold")
    return float(record["value"]) if isinstance(record, dict) and "value" in record else None
