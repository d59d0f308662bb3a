"""Temperature scaling (``train.calibrate: temperature``): after training, fit one temperature on the validation
split and end the model in a :class:`~dltool.keras_layers.TemperatureScaling` layer.

The temperature divides the logits, which the model is made to give: its last layer's softmax or sigmoid comes
off (a Dense's ``activation`` set to linear; an ``Activation`` or ``Softmax`` layer removed) and the
TemperatureScaling layer applies it again to logits / T. Recovering the logits from the probabilities instead
(log p) was tried first and given up: exact in float64, but ill-conditioned where a runtime rounds tiny
probabilities. onnxruntime's sigmoid gave 0 where Keras gave about 4e-8, which a temperature of 3.3 made 0
against 0.0057, and the ONNX export failed its verification. With the logits inside the model, every runtime
computes the same softmax(z / T).

The trained weights stay as they were and the layer has none: ``--from`` a calibrated run loads the same weights
into the config's model (with its activation, without the layer), which calibrates again if its config asks.
The layer goes at the end of the model, so predict, evaluate, export and serve all give calibrated probabilities.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..config import ExperimentConfig
from ..runs import Run, log_time
from ..system_info import PhaseClock
from .model import summary_text
from .recorder import RunRecorder

TEMPERATURE_BOUNDS = (0.05, 20.0)  # wider than any temperature Guo et al. report (1.0-3.6 on their models)
LAYER_NAME = "temperature_scaling"


def two_columns(logits: np.ndarray) -> np.ndarray:
    """(n, classes) float64 logits: a single sigmoid output's z becomes the two columns (0, z), whose softmax is
    (1 - sigmoid(z), sigmoid(z)); softmax logits stay as they are."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] > 1:
        return logits
    z = logits.reshape(-1)
    return np.stack([np.zeros_like(z), z], axis=1)


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / temperature)[true class] over the samples."""
    from scipy.special import log_softmax

    scaled = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    return float(-np.mean(scaled[np.arange(len(y_true)), y_true]))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 that minimizes the negative log-likelihood of softmax(logits / T) on (logits,
    y_true): a bounded 1-D search over log T in TEMPERATURE_BOUNDS (scipy's minimize_scalar; deterministic).
    ``logits``: (n, classes), see :func:`two_columns` for a sigmoid's."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, y_true, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(found.x))


def probabilities_of(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """What the TemperatureScaling layer makes of ``logits`` (in float64): softmax rows, or a sigmoid column for
    (n, 1) logits."""
    from scipy.special import expit, softmax

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] > 1:
        return softmax(logits / temperature, axis=1)
    return expit(logits / temperature)


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


def to_logits(model) -> str:
    """Make a Sequential classifier ``model`` output its logits, and return the activation it took off ("softmax"
    or "sigmoid"): a TemperatureScaling layer last (a model calibrated already), an Activation or a Softmax layer
    is removed, otherwise the last layer's activation is set to linear. Its weights do not change."""
    import keras

    from ..keras_layers import SIGMOID, SOFTMAX, TemperatureScaling

    last = model.layers[-1]
    if isinstance(last, TemperatureScaling):
        model.pop()
        return last.kind
    if isinstance(last, keras.layers.Softmax):
        model.pop()
        return SOFTMAX
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    if name not in (SOFTMAX, SIGMOID):  # the config was checked: only a model built otherwise gets here
        raise ValueError(f"the last layer {last.name} has activation {name!r}, not softmax or sigmoid")
    if isinstance(last, keras.layers.Activation):
        model.pop()
    else:
        last.activation = keras.activations.get("linear")
    return name


def calibrate_model(model, config: ExperimentConfig, data) -> dict:
    """Fit the temperature on ``data``'s validation split and end ``model`` (a compiled Sequential classifier) in
    its layer, in place of its last activation (:func:`to_logits`); recompiled with its own optimizer, so that
    evaluate sees the layer. Returns the report of run.json and metrics.json: temperature, and NLL, Brier and
    ECE before and after on validation and test.

    A model that ends in a TemperatureScaling layer already (a run interrupted after calibrating, then resumed)
    loses it first: the temperature is fitted on the trained layers' logits, once.
    """
    import keras

    from ..keras_layers import TemperatureScaling

    kind = to_logits(model)
    names = list(data.preprocessing.class_names)
    y_val, val_logits = _outputs_of(model, data.validation_chunks())
    temperature = fit_temperature(two_columns(val_logits), y_val)
    y_test, test_logits = _outputs_of(model, data.test_chunks())
    report = {"method": "temperature", "temperature": temperature}
    for split, y, logits in (("validation", y_val, val_logits), ("test", y_test, test_logits)):
        report[split] = {
            "samples": len(y),
            "before": probability_figures(y, probabilities_of(logits), names),
            "after": probability_figures(y, probabilities_of(logits, temperature), names),
        }
    scope = contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":  # several devices: compiled for them, as start_fine_tuning does
        scope = model.distribute_strategy.scope()
    with scope:
        model.add(TemperatureScaling(temperature, kind=kind, name=LAYER_NAME))
        # Recompiled: the compiled step functions were traced with the old last layers. The optimizer is the
        # trained model's own (its state goes into model.keras as before).
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
    run.write_text("summary.txt", summary_text(model))  # the layers model.keras has now
    recorder.log(f"{log_time()} calibrated: {describe(report)}")
    return report
