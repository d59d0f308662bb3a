"""Model outputs as what a user reads: labels and class probabilities, or named values.

Shared by ``predict`` (CSV and JSON rows) and ``serve`` (the ``:label`` endpoint),
so both name and shape their answers the same way.
"""

from __future__ import annotations

import numpy as np

from .data.preprocessing import Preprocessing
from .metrics import predicted_classes


def value_columns(state: Preprocessing, outputs: int) -> list[str]:
    """Names of the output values: ``label`` and ``prob_<class>`` for a classifier, else the targets' names."""
    if state.task == "classification":
        return ["label"] + [f"prob_{name}" for name in state.class_names]
    if state.target_names and len(state.target_names) == outputs:
        return list(state.target_names)
    if outputs == 1:
        return ["value"]
    return [f"value_{i}" for i in range(outputs)]


def labelled_values(state: Preprocessing, outputs: np.ndarray, threshold: float | None = None) -> list[list]:
    """One list per sample: ``[label, p_class0, p_class1, ...]`` for a classifier, else the output values.

    A single sigmoid output (P(class 1)) is shown as both classes' probabilities. ``threshold`` (a binary
    run's decision threshold; default None: argmax, or 0.5 for a sigmoid) decides the label.
    """
    outputs = np.asarray(outputs).reshape(len(outputs), -1)
    if state.task != "classification":
        return outputs.tolist()
    labels = np.asarray(state.class_names, dtype=object)[predicted_classes(outputs, threshold)]
    if outputs.shape[1] == 1:
        outputs = np.hstack([1 - outputs, outputs])
    return [[label, *row] for label, row in zip(labels, outputs.tolist())]


def prediction_record(state: Preprocessing, columns: list[str], values: list) -> dict:
    """One sample's answer as a JSON object: ``label`` and ``probabilities`` by class, or values by name."""
    if state.task == "classification":
        return {"label": values[0], "probabilities": dict(zip(state.class_names, values[1:]))}
    return dict(zip(columns, values))
