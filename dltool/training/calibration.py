"""Temperature scaling (``train.calibrate: temperature``): after training, fit one temperature on the validation
split and end the model in a :class:`~dltool.keras_layers.TemperatureScaling` layer.

The logits are recovered from the model's probabilities (log p for a softmax, logit p for a sigmoid) rather than
by rebuilding the model without its last activation: that works for any last layer that outputs probabilities
(a Dense with its activation, an Activation or a Softmax layer), leaves every trained layer as it was, and keeps
the temperature one appended layer without weights, so ``--from`` a calibrated run loads the same weights into
the config's model (which has no such layer) and calibrates again. For a softmax, log p is the logits less their
log-sum-exp, which softmax ignores: exact. What is lost is confined to probabilities float32 rounds to 0 or 1:
a sigmoid output above 1 - 2**-24 counts as a logit of 16.6 (see :mod:`dltool.keras_layers`), in the fit as in
the layer.

The layer goes at the end of the model, so predict, evaluate, export and serve all give calibrated probabilities.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ExperimentConfig
from ..runs import Run, log_time
from ..system_info import PhaseClock
from .model import output_units
from .recorder import RunRecorder

TEMPERATURE_BOUNDS = (0.05, 20.0)  # wider than any temperature Guo et al. report (1.0-3.6 on their models)
LAYER_NAME = "temperature_scaling"


def logits_of(outputs: np.ndarray) -> np.ndarray:
    """(n, classes) float64 logits behind a model's probabilities: log p (clipped as the layer clips) for softmax
    rows; the two columns (0, logit p) for a single sigmoid output, whose softmax is (1 - p, p)."""
    from ..keras_layers import PROBABILITY_FLOOR, SIGMOID_CEILING

    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return np.log(np.maximum(outputs, PROBABILITY_FLOOR))
    p = np.clip(outputs.reshape(-1), PROBABILITY_FLOOR, SIGMOID_CEILING)
    return np.stack([np.zeros_like(p), np.log(p) - np.log1p(-p)], axis=1)


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / temperature)[true class] over the samples."""
    from scipy.special import log_softmax

    scaled = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    return float(-np.mean(scaled[np.arange(len(y_true)), y_true]))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 that minimizes the negative log-likelihood of softmax(logits / T) on (logits,
    y_true): a bounded 1-D search over log T in TEMPERATURE_BOUNDS (scipy's minimize_scalar; deterministic)."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, y_true, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(found.x))


def scaled_outputs(outputs: np.ndarray, temperature: float) -> np.ndarray:
    """What the TemperatureScaling layer makes of ``outputs`` (in float64): the same shape, recalibrated."""
    from scipy.special import softmax

    scaled = softmax(logits_of(outputs) / temperature, axis=1)
    outputs = np.asarray(outputs)
    return scaled if outputs.ndim == 2 and outputs.shape[1] > 1 else scaled[:, 1].reshape(outputs.shape)


def probability_figures(y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict:
    """Negative log-likelihood (scikit-learn's log_loss), Brier score and ECE of probabilities ``outputs``."""
    from sklearn.metrics import log_loss

    from ..probabilities import calibration_report, probability_matrix

    if not len(outputs):
        return {"nll": None, "brier": None, "ece": None}
    report = calibration_report(y_true, outputs, class_names)
    matrix = np.clip(probability_matrix(outputs), 0.0, 1.0)
    nll = log_loss(
        np.asarray(y_true).reshape(-1), matrix / matrix.sum(axis=1, keepdims=True), labels=range(len(class_names))
    )
    return {"nll": float(nll), "brier": report["brier"], "ece": report["ece"]}


def _outputs_of(model, chunks) -> tuple[np.ndarray, np.ndarray]:
    """(targets, model outputs) of every chunk of (inputs, targets)."""
    from ..keras_io import predict_eagerly

    ys, outputs = [], []
    for x, y in chunks:
        ys.append(np.asarray(y).reshape(-1))
        outputs.append(predict_eagerly(model, x).reshape(len(y), -1))
    if not ys:
        return np.zeros(0, np.int32), np.zeros((0, 1), np.float32)
    return np.concatenate(ys), np.concatenate(outputs)


def strip_temperature(model) -> bool:
    """Remove a TemperatureScaling layer from the end of a Sequential ``model``; whether there was one."""
    from ..keras_layers import TemperatureScaling

    if model.layers and isinstance(model.layers[-1], TemperatureScaling):
        model.pop()
        return True
    return False


def temperature_of(model) -> float | None:
    """The temperature the model ends in, or None for a model without a TemperatureScaling layer last."""
    from ..keras_layers import TemperatureScaling

    last = model.layers[-1] if model.layers else None
    return last.temperature if isinstance(last, TemperatureScaling) else None


def calibrate_model(model, config: ExperimentConfig, data) -> dict:
    """Fit the temperature on ``data``'s validation split and append its layer to ``model`` (a compiled
    Sequential, recompiled with its own optimizer so evaluate sees the layer); the report of run.json and
    metrics.json: temperature, and NLL, Brier and ECE before and after on validation and test.

    A model that already ends in a TemperatureScaling layer (a run interrupted after calibrating, then resumed)
    loses it first: the temperature is fitted on the trained layers' outputs, once.
    """
    from ..keras_layers import SIGMOID, SOFTMAX, TemperatureScaling

    strip_temperature(model)
    names = list(data.preprocessing.class_names)
    y_val, val_outputs = _outputs_of(model, data.validation_chunks())
    temperature = fit_temperature(logits_of(val_outputs), y_val)
    y_test, test_outputs = _outputs_of(model, data.test_chunks())
    report = {"method": "temperature", "temperature": temperature}
    for split, y, outputs in (("validation", y_val, val_outputs), ("test", y_test, test_outputs)):
        report[split] = {
            "samples": len(y),
            "before": probability_figures(y, outputs, names),
            "after": probability_figures(y, scaled_outputs(outputs, temperature), names),
        }
    kind = SIGMOID if output_units(model) == 1 else SOFTMAX
    model.add(TemperatureScaling(temperature, kind=kind, name=LAYER_NAME))
    # Recompiled: the compiled step functions were traced without the new layer. The optimizer is the trained
    # model's own (its state goes into model.keras as before).
    train = config.train
    model.compile(
        optimizer=model.optimizer,
        loss=train.loss,
        metrics=list(train.metrics),
        steps_per_execution=train.steps_per_execution,
        jit_compile=train.jit_compile,
    )
    return report


def describe(report: dict) -> str:
    """'temperature 1.83, validation ECE 0.071 -> 0.012, NLL 0.31 -> 0.25; test ECE ...' from a calibration report."""

    def change(figures: dict, name: str, digits: str) -> str | None:
        before, after = figures["before"][name], figures["after"][name]
        if before is None or after is None:
            return None
        return f"{name.upper()} {before:{digits}} -> {after:{digits}}"

    parts = [f"temperature {report['temperature']:.4g}"]
    for split in ("validation", "test"):
        changes = [c for c in (change(report[split], "ece", ".3g"), change(report[split], "nll", ".4g")) if c]
        if changes:
            parts.append(f"{split} " + ", ".join(changes))
    return "; ".join(parts)


def calibrate_run(
    run: Run, config: ExperimentConfig, data, model, recorder: RunRecorder, clock: PhaseClock
) -> dict | None:
    """``train.calibrate`` of a trained run: calibrate ``model`` (:func:`calibrate_model`) in the clock's
    "calibrate" phase, record the report in run.json and log it; returns it for metrics.json, or None when the
    config asks for no calibration."""
    if config.train.calibrate is None:
        return None
    with clock.phase("calibrate"):
        report = calibrate_model(model, config, data)
    run.update_info(calibration=report)
    recorder.log(f"{log_time()} calibrated: {describe(report)}")
    return report
