"""A trained binary classifier's decision threshold (``train.threshold``), chosen on the validation split.

One step of a completed run, after the fit and before the test: the rule of :mod:`dltool.decision` is applied
to the validation split's scores, and run.json's ``threshold`` records the value, the rule and the figures at
it on the validation and test splits. predict, serve, evaluate and export read it from there.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..config import ExperimentConfig
from ..decision import choose_threshold, describe, figures_at, positive_scores
from ..runs import Run, log_time
from ..system_info import PhaseClock
from .recorder import RunRecorder


def _validation_batches(data, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, class indices) of the validation split: one array pair in memory, or a streamed split's batches."""
    validation = data.fit_inputs(lambda y: y, batch_size, False).get("validation_data")
    if validation is None:
        return
    if isinstance(validation, tuple):
        yield validation
    else:  # a tf.data.Dataset of a streamed split
        yield from validation.as_numpy_iterator()


def _scored(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and positive-class scores of every sample of ``batches``."""
    from ..keras_io import predict_eagerly

    labels, scores = [], []
    for x, y in batches:
        labels.append(np.asarray(y).reshape(-1))
        scores.append(positive_scores(predict_eagerly(model, x)))
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(labels), np.concatenate(scores)


def decide_threshold(
    run: Run, config: ExperimentConfig, data, model, recorder: RunRecorder, clock: PhaseClock
) -> dict | None:
    """Choose (or take) the run's decision threshold, record it in run.json and the log; None without one.

    ``train.threshold`` is a rule (chosen on the validation split) or a fixed number. The record has the
    value, the rule (``fixed`` for a number), ``at`` for a targeted rule, ``fallback`` where the rule could not
    be met, and the figures (accuracy, precision, recall, F1) at the threshold on the validation split (where
    the run has its own) and the test split. Timed as the clock's ``threshold`` phase. Several processes:
    process 0 calls this with its share of the validation split (the test split stays whole).
    """
    from ..keras_io import inference_batch_size

    setting = config.train.threshold
    if setting is None:
        return None
    with clock.phase("threshold"):
        own_validation = not data.validation_is_test and data.sizes().get("validation")
        batch_size = inference_batch_size(config.train.batch_size)
        if own_validation:
            y_val, s_val = _scored(model, _validation_batches(data, batch_size))
        if isinstance(setting, float):
            record: dict = {"rule": "fixed", "value": setting}
        else:
            record = choose_threshold(y_val, s_val, setting.optimize, setting.at)
        if own_validation:
            record["validation"] = figures_at(y_val, s_val, record["value"])
        if data.sizes().get("test"):
            y_test, s_test = _scored(model, data.test_chunks())
            record["test"] = figures_at(y_test, s_test, record["value"])
    run.update_info(threshold=record)
    recorder.log(f"{log_time()} {describe(record)}")
    return record


def threshold_metrics(run: Run) -> dict:
    """metrics.json's ``test_at_threshold`` (the threshold, and accuracy, precision, recall and F1 of the positive
    class at it on the test split), kept apart from ``test``: Keras's compiled accuracy counts p >= 0.5."""
    record = run.info.get("threshold") or {}
    if "test" not in record:
        return {}
    return {"test_at_threshold": {"threshold": record["value"], **record["test"]}}
