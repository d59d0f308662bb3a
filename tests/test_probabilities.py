"""dltool.probabilities: ranking metrics against scikit-learn, Brier and ECE against hand-computed values, chunks
equal to the whole, and what happens to a class absent from the data or outputs that are not probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.preprocessing import label_binarize

from dltool.probabilities import (
    ProbabilityTotals,
    brier_score,
    calibration_report,
    confidence_bins,
    expected_calibration_error,
    not_probabilities,
    operating_points,
    probability_matrix,
    ranking_curves,
    ranking_report,
)

CLASSES = ["ant", "bee", "cat", "dog"]


def _softmax(seed: int, n: int = 300, classes: int = 4, signal: float = 1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), y] += signal
    return y, (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)


def _sigmoid(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, (1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.2, n))))).astype(np.float32).reshape(-1, 1)


# --------------------------------------------------------------------------- ranking
@pytest.mark.parametrize("seed", [0, 1])
def test_binary_ranking_equals_scikit_learn_for_a_sigmoid_and_a_two_class_softmax(seed):
    y, p = _sigmoid(seed)
    sigmoid = ranking_report(y, p, ["no", "yes"])
    assert sigmoid["average"] == "binary" and sigmoid["positive_class"] == "yes"
    assert sigmoid["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p[:, 0]))
    assert sigmoid["pr_auc"] == pytest.approx(sk.average_precision_score(y, p[:, 0]))
    assert sigmoid["positive_rate"] == pytest.approx(y.mean())
    softmax = ranking_report(y, np.hstack([1 - p, p]), ["no", "yes"])
    assert softmax == pytest.approx(sigmoid)


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_class_one_vs_rest_and_macro_equal_scikit_learn(seed):
    y, p = _softmax(seed)
    report = ranking_report(y, p, CLASSES)
    per_class_roc = sk.roc_auc_score(y, p, multi_class="ovr", average=None)
    per_class_ap = sk.average_precision_score(label_binarize(y, classes=range(4)), p, average=None)
    assert list(report["per_class"]) == CLASSES
    for i, name in enumerate(CLASSES):
        assert report["per_class"][name]["roc_auc"] == pytest.approx(per_class_roc[i])
        assert report["per_class"][name]["pr_auc"] == pytest.approx(per_class_ap[i])
    assert report["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert report["pr_auc"] == pytest.approx(np.mean(per_class_ap))
    assert report["classes_averaged"] == 4 and report["classes_left_out"] == []


def test_a_class_absent_from_the_data_gets_no_auc_and_is_left_out_of_the_macro_average():
    y, p = _softmax(2)
    keep = y != 2  # no cat in the evaluated data
    y, p = y[keep], p[keep]
    report = ranking_report(y, p, CLASSES)
    assert report["per_class"]["cat"] == {
        "roc_auc": None,
        "pr_auc": None,
        "positive_rate": 0.0,
        "reason": "no sample of this class in the evaluated data",
    }
    others = [report["per_class"][n]["roc_auc"] for n in ("ant", "bee", "dog")]
    assert report["roc_auc"] == pytest.approx(np.mean(others))
    assert report["classes_averaged"] == 3 and report["classes_left_out"] == ["cat"]
    # scikit-learn raises (older versions) or warns and gives NaN for that class: the report has neither
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(("label", "reason"), [(0, "no sample of this class"), (1, "every evaluated sample")])
def test_binary_data_of_one_class_gets_no_auc(label, reason):
    report = ranking_report(np.full(5, label), np.full((5, 1), 0.7), ["no", "yes"])
    assert report["roc_auc"] is None and report["pr_auc"] is None
    assert report["reason"].startswith(reason)


# --------------------------------------------------------------------------- calibration
def test_brier_binary_is_scikit_learns_and_multi_class_is_the_squared_distance_to_one_hot():
    y, p = _sigmoid(3)
    score, kind = brier_score(y, p, 2)
    assert score == pytest.approx(sk.brier_score_loss(y, p[:, 0]))
    assert kind.startswith("binary")
    matrix = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    score, kind = brier_score(np.array([0, 1]), matrix, 3)
    # (0.3² + 0.2² + 0.1²) + (0.1² + 0.9² + 0.8²) = 0.14 + 1.46, over 2 samples
    assert score == pytest.approx(0.8)
    assert kind.startswith("multi-class")


def test_ece_of_a_perfectly_calibrated_model_is_zero():
    # p(positive) 0.8 for 10 samples, 8 of them positive; p 0.3 for 10, 3 positive (7 right at confidence 0.7)
    y = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)
    p = np.array([0.8] * 10 + [0.3] * 10).reshape(-1, 1)
    report = calibration_report(y, p, ["no", "yes"])
    assert report["ece"] == pytest.approx(0.0, abs=1e-12)
    assert report["ece_bins"] == 15 and sum(b["count"] for b in report["reliability"]) == 20


def test_ece_of_a_known_case():
    # 10 samples at confidence 0.9 with 6 right: gap 0.3; 4 at confidence 0.6 (p = 0.4, class 0) all right: gap 0.4
    y = np.array([1] * 6 + [0] * 4 + [0] * 4)
    p = np.array([0.9] * 10 + [0.4] * 4).reshape(-1, 1)
    bins = confidence_bins(y, p)
    filled = {(round(b["low"], 4), round(b["high"], 4)): b for b in bins if b["count"]}
    assert list(filled) == [(0.5333, 0.6), (0.8667, 0.9333)]
    assert expected_calibration_error(bins) == pytest.approx((10 * 0.3 + 4 * 0.4) / 14)
    # the same with a softmax of 3 classes: the top-class probability is the confidence
    matrix = np.array([[0.05, 0.05, 0.9]] * 10 + [[0.6, 0.3, 0.1]] * 4)
    labels = np.array([2] * 6 + [1] * 4 + [0] * 4)
    assert expected_calibration_error(confidence_bins(labels, matrix)) == pytest.approx((10 * 0.3 + 4 * 0.4) / 14)


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_it_closes():
    edge = np.linspace(0.0, 1.0, 16)[8]  # 8/15: closes bin (7/15, 8/15]
    bins = confidence_bins(np.array([1, 1]), np.array([[edge], [1.0]]))
    assert [i for i, b in enumerate(bins) if b["count"]] == [7, 14]


def test_outputs_that_are_not_probabilities_get_ranking_but_no_calibration():
    y, p = _softmax(4)
    logits = np.log(p) + 3.0  # same order, but no softmax
    assert not_probabilities(p) is None
    reason = not_probabilities(logits)
    assert reason.startswith("the model's outputs range from") and "not within [0, 1]" in reason
    report = calibration_report(y, logits, CLASSES)
    assert report["brier"] is None and report["ece"] is None
    assert report["reason"].endswith(": calibration is measured on probabilities only")
    assert ranking_report(y, logits, CLASSES)["roc_auc"] == pytest.approx(ranking_report(y, p, CLASSES)["roc_auc"])
    halves = np.full((3, 4), 0.5)  # within [0, 1], but rows sum to 2
    assert not_probabilities(halves) == "a row of the model's outputs sums to 2, not 1 (no softmax on the last layer)"


# --------------------------------------------------------------------------- chunks, operating points, curves
@pytest.mark.parametrize("make", [_sigmoid, _softmax])
def test_totals_over_chunks_equal_the_whole(make):
    y, p = make(5)
    names = CLASSES if p.shape[1] > 1 else ["no", "yes"]
    whole = ProbabilityTotals(names)
    whole.add(y, p)
    chunked = ProbabilityTotals(names)
    for start in range(0, len(y), 37):
        chunked.add(y[start : start + 37], p[start : start + 37])
    labels, outputs = chunked.arrays()
    assert labels.dtype == np.int32 and outputs.dtype == np.float32 and outputs.shape == p.shape
    assert chunked.report() == whole.report()


def test_operating_point_is_the_runs_rule():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.6, 0.5, 0.9, 0.1]).reshape(-1, 1)  # p >= 0.5: 0.6 (false), 0.5 and 0.9 (true)
    assert operating_points(y, p, 2) == [{"class": 1, "fpr": 0.5, "tpr": pytest.approx(2 / 3), "precision": 2 / 3}]
    assert probability_matrix(p)[:, 1].tolist() == p[:, 0].tolist()


def test_curves_per_class_up_to_ten_classes_then_the_macro_average_alone():
    y, p = _softmax(6, n=600, classes=4)
    drawn = ranking_curves(y, p, CLASSES, "roc")
    assert [c["label"] for c in drawn["curves"]] == CLASSES
    macro = drawn["macro"]
    assert macro["x"][0] == 0 and macro["x"][-1] == 1 and macro["y"][-1] == pytest.approx(1)
    assert np.all(np.diff(macro["y"]) >= -1e-12)  # a mean of non-decreasing curves
    pr = ranking_curves(y, p, CLASSES, "pr")
    assert pr["macro"]["score"] == pytest.approx(ranking_report(y, p, CLASSES)["pr_auc"])
    assert np.all(np.diff(pr["macro"]["y"]) <= 1e-12)  # interpolated precision never rises with recall
    names = [f"c{i}" for i in range(12)]
    y, p = _softmax(7, n=600, classes=12)
    many = ranking_curves(y, p, names, "roc")
    assert many["curves"] == [] and many["macro"]["label"] == "macro average"
    binary = ranking_curves(*_sigmoid(8), ["no", "yes"], "pr")
    assert [c["label"] for c in binary["curves"]] == ["yes"] and binary["macro"] is None
