"""dltool.metrics: NumPy metrics against scikit-learn, and totals over chunks equal to the whole at once."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from dltool.metrics import (
    ClassificationTotals,
    RegressionTotals,
    classification_report,
    confusion_matrix,
    predicted_classes,
    regression_report,
)

CLASSES = ["ant", "bee", "cat", "dog"]


def _labels(seed: int, n: int = 500, classes: int = 4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, classes, n), rng.integers(0, classes, n)


def test_predicted_classes_argmax_and_sigmoid_threshold():
    assert predicted_classes(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])).tolist() == [1, 0]
    assert predicted_classes(np.array([[0.2], [0.5], [0.9]])).tolist() == [0, 1, 1]
    assert predicted_classes(np.array([0.49, 0.51])).tolist() == [0, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_equals_scikit_learn(seed):
    y_true, y_pred = _labels(seed)
    ours = confusion_matrix(y_true, y_pred, 4)
    assert ours.dtype == np.int64
    assert ours.tolist() == sk.confusion_matrix(y_true, y_pred, labels=range(4)).tolist()


def test_confusion_matrix_leaves_out_classes_beyond_the_run_as_scikit_learn_does():
    y_true = np.array([0, 1, 2, 1])
    y_pred = np.array([0, 4, 2, 1])  # a model with more outputs than the run has classes
    ours = confusion_matrix(y_true, y_pred, 3)
    assert ours.tolist() == sk.confusion_matrix(y_true, y_pred, labels=range(3)).tolist()
    assert ours.sum() == 3


def test_a_class_never_seen_has_an_empty_row_and_column():
    matrix = confusion_matrix(np.array([0, 0, 2]), np.array([0, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]  # class 1: neither true nor predicted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_f1_equal_scikit_learn(seed):
    y_true, y_pred = _labels(seed, n=300)
    y_pred[y_pred == 3] = 0  # class 3 is never predicted: its precision is 0 (zero_division=0)
    report = classification_report(confusion_matrix(y_true, y_pred, 4), CLASSES)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=range(4), zero_division=0
    )
    assert list(report["per_class"]) == CLASSES
    for i, name in enumerate(CLASSES):
        scores = report["per_class"][name]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == support[i]
    assert report["per_class"]["dog"]["precision"] == 0.0
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert report["macro_precision"] == pytest.approx(np.mean(precision))
    assert report["macro_recall"] == pytest.approx(np.mean(recall))
    assert report["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert report["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=range(4)).tolist()


def test_classification_totals_over_chunks_equal_the_whole():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, 1000)
    outputs = rng.random((1000, 4))
    whole = ClassificationTotals(CLASSES)
    whole.add(y_true, outputs)
    chunked = ClassificationTotals(CLASSES)
    for start in range(0, 1000, 77):
        chunked.add(y_true[start : start + 77], outputs[start : start + 77])
    assert chunked.report() == whole.report()
    assert whole.report()["confusion_matrix"] == sk.confusion_matrix(y_true, outputs.argmax(axis=1)).tolist()


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_totals_over_chunks_equal_the_whole_and_scikit_learn(outputs):
    rng = np.random.default_rng(outputs)
    y_true = rng.normal(5, 2, (1000, outputs))
    y_pred = y_true + rng.normal(0, 0.5, (1000, outputs))
    whole = regression_report(y_true, y_pred)
    chunked = RegressionTotals()
    for start in range(0, 1000, 64):
        chunked.add(y_true[start : start + 64], y_pred[start : start + 64])
    assert chunked.report() == pytest.approx(whole, rel=1e-12)
    assert whole["mse"] == pytest.approx(sk.mean_squared_error(y_true, y_pred))
    assert whole["mae"] == pytest.approx(sk.mean_absolute_error(y_true, y_pred))
    assert whole["r2"] == pytest.approx(sk.r2_score(y_true, y_pred), rel=1e-9)


def test_regression_r2_is_none_for_a_constant_target_or_one_sample():
    assert regression_report(np.full(5, 2.0), np.arange(5.0))["r2"] is None
    assert regression_report(np.array([1.0]), np.array([2.0])) == {"mse": 1.0, "mae": 1.0, "r2": None}
    assert RegressionTotals().report() == {"mse": None, "mae": None, "r2": None}
