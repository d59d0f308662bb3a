"""Decision thresholds: the rules on hand-made scores against scikit-learn, the figures at a threshold, overrides."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_curve

from dltool.decision import check_override, choose_threshold, describe, figures_at, positive_scores, run_threshold
from dltool.errors import UsageError
from dltool.metrics import ClassificationTotals, predicted_classes

# 12 samples, 5 positive, interleaved so that no threshold separates them.
Y = np.array([0, 0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1])
S = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9])


def _choice(chosen: dict) -> dict:
    """The rule's choice without the validation split's positive count and its caution (tested apart)."""
    return {k: v for k, v in chosen.items() if k not in ("positives", "caution")}


def _at(threshold: float) -> tuple[float, float, float]:
    predicted = (S >= threshold).astype(int)
    return precision_score(Y, predicted), recall_score(Y, predicted), f1_score(Y, predicted)


def test_f1_picks_the_threshold_with_the_highest_f1_of_every_candidate():
    chosen = choose_threshold(Y, S, "f1")
    best = max(_at(t)[2] for t in S)
    assert _choice(chosen) == {"rule": "f1", "value": pytest.approx(0.35)}
    assert _at(chosen["value"])[2] == pytest.approx(best)


def test_youden_picks_the_highest_tpr_minus_fpr_of_sklearns_roc_curve():
    fpr, tpr, thresholds = roc_curve(Y, S)
    expected = thresholds[1:][np.argmax((tpr - fpr)[1:])]
    chosen = choose_threshold(Y, S, "youden")
    assert _choice(chosen) == {"rule": "youden", "value": pytest.approx(expected)}
    assert chosen["value"] == pytest.approx(0.35)


def test_precision_at_recall_takes_the_best_precision_that_still_reaches_the_recall():
    chosen = choose_threshold(Y, S, "precision_at_recall", 0.6)
    assert _choice(chosen) == {"rule": "precision_at_recall", "at": 0.6, "value": pytest.approx(0.6)}
    precision, recall, _ = _at(0.6)
    assert recall >= 0.6
    reaching = [_at(t)[0] for t in S if _at(t)[1] >= 0.6]
    assert precision == pytest.approx(max(reaching))


def test_recall_at_precision_takes_the_best_recall_that_still_reaches_the_precision():
    chosen = choose_threshold(Y, S, "recall_at_precision", 0.7)
    precision, recall, _ = _at(chosen["value"])
    assert precision >= 0.7
    assert recall == pytest.approx(max(_at(t)[1] for t in S if _at(t)[0] >= 0.7))
    assert _choice(chosen) == {"rule": "recall_at_precision", "at": 0.7, "value": pytest.approx(0.6)}


def test_an_unreachable_target_falls_back_to_f1_and_says_so():
    # The best score is a negative: no threshold has precision 1.
    chosen = choose_threshold(np.array([1, 0, 1, 0]), np.array([0.2, 0.9, 0.6, 0.1]), "recall_at_precision", 0.99)
    assert chosen["value"] == pytest.approx(0.2)
    assert chosen["fallback"] == (
        "no threshold reaches precision >= 0.99 on the validation split (the best is 0.6667): "
        "chose the F1-optimal threshold instead"
    )
    assert "fallback" not in choose_threshold(Y, S, "precision_at_recall", 1.0)  # the lowest score reaches recall 1


def test_a_split_with_one_class_keeps_one_half():
    chosen = choose_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]), "f1")
    assert _choice(chosen) == {
        "rule": "f1",
        "value": 0.5,
        "fallback": "the validation split has no positive sample: kept 0.5",
    }


def test_a_threshold_chosen_on_few_positives_says_so_and_counts_them():
    few = choose_threshold(Y, S, "precision_at_recall", 0.9)
    assert few["positives"] == 5
    assert few["caution"] == (
        "chosen on 5 positive validation samples only: on new data its recall and precision can differ widely (a "
        "recall is counted in steps of 1/5 here); a larger validation split gives a steadier threshold"
    )
    assert describe(few).endswith("; caution: " + few["caution"])
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    enough = choose_threshold(y, rng.random(80) * 0.5 + y * 0.4, "precision_at_recall", 0.9)
    assert enough["positives"] == 40 and "caution" not in enough


def test_figures_at_a_threshold_are_sklearns():
    figures = figures_at(Y, S, 0.45)
    predicted = (S >= 0.45).astype(int)
    assert figures == {
        "accuracy": pytest.approx(np.mean(predicted == Y)),
        "precision": pytest.approx(precision_score(Y, predicted)),
        "recall": pytest.approx(recall_score(Y, predicted)),
        "f1": pytest.approx(f1_score(Y, predicted)),
        "samples": 12,
    }


def test_scores_of_a_sigmoid_and_a_two_class_softmax():
    assert positive_scores(np.array([[0.2], [0.7]])).tolist() == [0.2, 0.7]
    assert positive_scores(np.array([[0.8, 0.2], [0.3, 0.7]])).tolist() == [0.2, 0.7]
    assert positive_scores(np.full((2, 3), 1 / 3)) is None


def test_predicted_classes_at_a_threshold():
    sigmoid = np.array([[0.2], [0.3], [0.7]])
    assert predicted_classes(sigmoid).tolist() == [0, 0, 1]
    assert predicted_classes(sigmoid, 0.3).tolist() == [0, 1, 1]
    softmax = np.array([[0.8, 0.2], [0.7, 0.3], [0.3, 0.7]])
    assert predicted_classes(softmax, 0.25).tolist() == [0, 1, 1]
    three = np.array([[0.5, 0.3, 0.2]])
    assert predicted_classes(three, 0.1).tolist() == [0]  # not binary: argmax


def test_classification_totals_name_their_threshold():
    totals = ClassificationTotals(["no", "yes"], threshold=0.3)
    totals.add(np.array([0, 1, 1]), np.array([[0.2], [0.35], [0.9]]))
    report = totals.report()
    assert report["decision_threshold"] == 0.3
    assert report["confusion_matrix"] == [[1, 0], [0, 2]]
    assert "decision_threshold" not in ClassificationTotals(["no", "yes"]).report()


def test_describe_says_value_rule_fallback_and_figures():
    record = {
        "rule": "precision_at_recall",
        "at": 0.9,
        "value": 0.31234,
        "validation": {"precision": 0.8, "recall": 0.92, "f1": 0.855},
    }
    assert describe(record) == (
        "decision threshold 0.3123 (precision_at_recall 0.9); on validation precision 0.8, recall 0.92, F1 0.855"
    )
    assert describe({"rule": "fixed", "value": 0.3}) == "decision threshold 0.3 (fixed)"


def test_override_checks():
    check_override(None, None)
    check_override(0.3, ["no", "yes"])
    with pytest.raises(UsageError, match=r"^--threshold: expected a number between 0 and 1 \(exclusive\), received 1$"):
        check_override(1.0, ["no", "yes"])
    with pytest.raises(UsageError) as raised:
        check_override(0.3, ["a", "b", "c"])
    assert str(raised.value) == (
        "--threshold applies to binary classifiers only (one sigmoid output or a 2-class softmax); this run is a "
        "classifier of 3 classes; leave out --threshold"
    )
    with pytest.raises(UsageError, match="this run is a regression"):
        check_override(0.3, None)


def test_run_threshold_prefers_the_override():
    info = {"threshold": {"rule": "f1", "value": 0.25}}
    assert run_threshold(info) == 0.25
    assert run_threshold(info, 0.6) == 0.6
    assert run_threshold({}) is None


def test_equal_candidates_go_to_the_larger_threshold():
    # Youden's J is 0.5 at both 0.2 and 0.4: the larger threshold predicts fewer positives.
    assert choose_threshold(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]), "youden")["value"] == 0.4
