"""Class counts per split, and the class weights of ``train.class_weight`` resolved against a run's classes.

Counting and weighing are NumPy and scikit-learn alone (no Keras): `dltool validate` prints the counts, and a
run records the weights in run.json, where ``--resume`` reads them back instead of counting again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, did_you_mean

BALANCED = "balanced"
GIVEN = "given"
IMBALANCE_RATIO = 0.05  # warn when the smallest class has fewer than 5 % of the largest class's training samples
SHOWN_CLASSES = 20  # validate lists this many classes' counts, then says how many more


@dataclass(frozen=True)
class ClassWeights:
    """The weight of every class of a run, in class order; ``mode`` is balanced (counted) or given (the config's)."""

    mode: str
    weights: dict[str, float]

    def by_index(self) -> dict[int, float]:
        """{class index: weight} for every class, what Keras's ``fit(class_weight=...)`` takes.

        Every class is listed: Keras turns the mapping into a table of ``max(key) + 1`` entries, and a label beyond
        it would be an index error on a CPU (and a weight of 0 on a GPU)."""
        return {index: weight for index, weight in enumerate(self.weights.values())}

    def record(self) -> dict:
        """What run.json keeps: {"mode": "balanced" | "given", "weights": {class name: weight}}."""
        return {"mode": self.mode, "weights": dict(self.weights)}

    @classmethod
    def from_record(cls, record: dict | None) -> ClassWeights | None:
        """The weights run.json recorded (``--resume`` trains on with them), or None where it has none."""
        if not record:
            return None
        return cls(mode=record["mode"], weights={str(k): float(v) for k, v in record["weights"].items()})

    def listing(self, limit: int = 10) -> str:
        """'benign 0.6725, malignant 1.951': the first ``limit`` classes and their weights, then how many more."""
        shown = [f"{name} {weight:.4g}" for name, weight in list(self.weights.items())[:limit]]
        more = len(self.weights) - limit
        return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")

    def describe(self) -> str:
        """'balanced: benign 0.6725, malignant 1.951', for the run log."""
        return f"{self.mode}: {self.listing()}"


def count_classes(labels: np.ndarray, classes: int) -> list[int]:
    """Samples per class index 0..classes-1 of ``labels`` (class indices)."""
    return np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=classes)[:classes].tolist()


def balanced_weights(train_counts: list[int]) -> list[float]:
    """scikit-learn's ``compute_class_weight("balanced")`` over a training split given by its class counts:
    n_samples / (n_classes * count). A class without training samples is never weighed; it gets 1.

    The split is passed as one sample per class weighted by its count, which gives the weighted bincount
    scikit-learn computes from the labels themselves, without holding a label per row of a streamed table.
    """
    from sklearn.utils.class_weight import compute_class_weight

    counts = np.asarray(train_counts, dtype=np.int64)
    present = np.flatnonzero(counts)
    weights = np.ones(len(counts))
    if len(present):
        weights[present] = compute_class_weight(
            BALANCED, classes=present, y=present, sample_weight=counts[present].astype(np.float64)
        )
    return [float(w) for w in weights]


def resolve_class_weights(config, class_names: list[str] | None, counts: dict | None) -> ClassWeights | None:
    """``train.class_weight`` as a weight per class of the run: balanced from the training split's ``counts``
    (from :meth:`~dltool.data.TrainingData.class_counts`), or the labels given checked against ``class_names``
    (those not named weigh 1). None when the config sets none. An unknown label is a ConfigError with a
    did-you-mean."""
    setting = config.train.class_weight
    if setting is None:
        return None
    names = list(class_names or [])
    if setting == BALANCED:
        if counts is None:
            raise ConfigError(
                "class_weight: balanced counts the classes of the training split, and these data cannot be counted; "
                "give the weights as {label: weight}",
                path="train.class_weight",
            )
        return ClassWeights(BALANCED, dict(zip(names, balanced_weights(counts["train"]))))
    for label in setting:
        if label not in names:
            shown = ", ".join(names[:SHOWN_CLASSES]) + (", ..." if len(names) > SHOWN_CLASSES else "")
            key = f"train.class_weight.{label}" if re.fullmatch(r"[A-Za-z0-9_-]+", label) else "train.class_weight"
            raise ConfigError(
                f"unknown class '{label}' (the run's classes: {shown}){did_you_mean(label, names)}", path=key
            )
    return ClassWeights(GIVEN, {name: float(setting.get(name, 1.0)) for name in names})


def imbalance_warning(train_counts: list[int], class_names: list[str]) -> str | None:
    """A warning when the training split's smallest class has fewer than IMBALANCE_RATIO of its largest class's
    samples, suggesting class weights; None otherwise."""
    if len(train_counts) < 2 or max(train_counts) == 0:
        return None
    small, large = int(np.argmin(train_counts)), int(np.argmax(train_counts))
    ratio = train_counts[small] / train_counts[large]
    if ratio >= IMBALANCE_RATIO:
        return None
    return (
        f"the training split is imbalanced: class '{class_names[small]}' has {train_counts[small]} sample(s), "
        f"{100 * ratio:.1f} % of the {train_counts[large]} of class '{class_names[large]}'; a model can score well by "
        "rarely predicting it. Consider train.class_weight: balanced"
    )
