"""Temperature scaling (train.calibrate: temperature): the fit, the layer, and calibrated runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from scipy.special import expit, softmax

from dltool.training.calibration import (
    fit_temperature,
    negative_log_likelihood,
    probabilities_of,
    probability_figures,
    two_columns,
)
from tests.e2e_support import REPO


def _sampled(rng, logits: np.ndarray) -> np.ndarray:
    """A class per row drawn from softmax(logits): labels for which these logits are calibrated."""
    p = softmax(logits, axis=1)
    return (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)


def test_the_fit_recovers_the_temperature_of_logits_scaled_by_3():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(20000, 4))
    y = _sampled(rng, logits)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.05)
    assert fit_temperature(3 * logits, y) == pytest.approx(3.0, abs=0.15)
    assert fit_temperature(logits / 2, y) == pytest.approx(0.5, abs=0.03)  # under-confident: T < 1 sharpens
    assert fit_temperature(3 * logits, y) == fit_temperature(3 * logits, y)  # deterministic


def test_the_fit_recovers_it_for_a_single_sigmoid_output_too():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(20000, 1))
    positive = (rng.random(20000) < expit(z[:, 0])).astype(int)
    assert two_columns(3 * z)[:5, 0].tolist() == [0.0] * 5
    assert fit_temperature(two_columns(3 * z), positive) == pytest.approx(3.0, abs=0.15)


def test_scaling_changes_probabilities_but_not_the_predicted_class():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4.0, size=(200, 5))
    for temperature in (0.5, 2.0, 3.7):
        scaled = probabilities_of(logits, temperature)
        assert scaled.shape == logits.shape and scaled.sum(axis=1) == pytest.approx(np.ones(200))
        assert (scaled.argmax(axis=1) == logits.argmax(axis=1)).all()
    assert probabilities_of(logits) == pytest.approx(softmax(logits, axis=1))
    assert probabilities_of(logits, 2.0).max(axis=1).mean() < probabilities_of(logits).max(axis=1).mean()
    z = np.array([[-2.0], [0.0], [3.0]])
    assert probabilities_of(z, 2.0) == pytest.approx(expit(z / 2))  # a sigmoid column stays one
    assert ((probabilities_of(z, 2.0) > 0.5) == (expit(z) > 0.5)).all()


def test_the_likelihood_and_the_figures_are_scikit_learn_s():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 3))
    y = _sampled(rng, logits)
    assert negative_log_likelihood(logits, y) == pytest.approx(log_loss(y, softmax(logits, axis=1), labels=[0, 1, 2]))
    figures = probability_figures(y, softmax(logits, axis=1).astype(np.float32), ["a", "b", "c"])
    assert set(figures) == {"nll", "brier", "ece"} and figures["nll"] == pytest.approx(
        negative_log_likelihood(logits, y), rel=1e-5
    )
    assert probability_figures(np.zeros(0), np.zeros((0, 3)), ["a", "b", "c"]) == {
        "nll": None,
        "brier": None,
        "ece": None,
    }


# ------------------------------------------------------------------ the layer (Keras)
@pytest.mark.slow
def test_the_layer_is_the_softmax_or_sigmoid_of_logits_over_t_in_float32():
    import keras

    from dltool.keras_layers import TemperatureScaling

    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3.0, size=(16, 4)).astype(np.float32)
    out = keras.ops.convert_to_numpy(TemperatureScaling(2.5)(logits))
    assert out.dtype == np.float32 and out == pytest.approx(softmax(logits / 2.5, axis=1), abs=1e-6)
    z = rng.normal(scale=3.0, size=(16, 1)).astype(np.float32)
    out = keras.ops.convert_to_numpy(TemperatureScaling(2.5, kind="sigmoid")(z))
    assert out.shape == (16, 1) and out == pytest.approx(expit(z / 2.5), abs=1e-6)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        assert TemperatureScaling(2.0).compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)
    for bad, message in ((0.0, "temperature must be > 0, received 0.0"), (-1.0, "temperature must be > 0")):
        with pytest.raises(ValueError, match=message):
            TemperatureScaling(bad)
    with pytest.raises(ValueError, match="kind must be 'softmax' or 'sigmoid', received 'tanh'"):
        TemperatureScaling(2.0, kind="tanh")


@pytest.mark.slow
def test_a_model_ending_in_the_layer_saves_and_loads_safely_with_the_same_outputs(tmp_path):
    import keras

    from dltool.keras_io import load_model_safely, save_model_atomic
    from dltool.keras_layers import TemperatureScaling

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), TemperatureScaling(1.7, name="temperature")])
    x = np.random.default_rng(5).normal(size=(8, 3)).astype(np.float32)
    save_model_atomic(model, tmp_path / "model.keras")
    loaded = load_model_safely(tmp_path / "model.keras")
    last = loaded.layers[-1]
    assert isinstance(last, TemperatureScaling) and (last.temperature, last.kind) == (1.7, "softmax")
    assert len(loaded.weights) == 2  # the Dense's kernel and bias: the temperature is config, not a weight
    assert keras.ops.convert_to_numpy(loaded(x)) == pytest.approx(keras.ops.convert_to_numpy(model(x)), abs=1e-7)
    config = json.loads(zipfile.ZipFile(tmp_path / "model.keras").read("config.json"))
    assert config["config"]["layers"][-1]["registered_name"] == "dltool>TemperatureScaling"


# ------------------------------------------------------------------ calibrated runs, end to end
# Unscaled pixels (0..16) and a high learning rate: the MLP fits its 270 training digits at once and is
# over-confident on the others (validation ECE about 0.03, halved by a temperature of about 1.4).
OVERCONFIDENT = """
name: overconfident
seed: 0
data: {source: sklearn, name: digits, test: 0.5, validation: 0.7}
model:
  input_shape: [64]
  layers:
    - Dense: {units: 64, activation: relu}
    - Dense: {units: 10, activation: softmax}
train:
  optimizer: {name: adam, learning_rate: 0.01}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: 40
  batch_size: 64
  calibrate: temperature
  tensorboard: false
  plots: false
"""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A COMPLETED calibrated digits run of its own (export writes into it)."""
    from dltool.config import config_from_text
    from tests.e2e_support import train_in

    root = tmp_path_factory.mktemp("calibrated")
    return train_in(root, config_from_text(OVERCONFIDENT, source="overconfident.yaml"))


def _digits_rows(path):
    """Five raw digits as a CSV with the feature names dltool's sklearn digits source uses."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    lines = [",".join(digits.feature_names)] + [",".join(f"{v:g}" for v in row) for row in digits.data[:5]]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_a_calibrated_run_lowers_the_validation_ece_and_records_the_temperature(calibrated):
    from dltool.keras_io import load_model_safely
    from dltool.keras_layers import TemperatureScaling

    metrics = json.loads(calibrated.file("metrics.json").read_text())
    report = metrics["calibration"]
    assert report == calibrated.info["calibration"]
    validation, test = report["validation"], report["test"]
    assert report["method"] == "temperature" and report["temperature"] > 1.1  # over-confident: softened
    assert validation["after"]["ece"] <= validation["before"]["ece"]
    assert validation["after"]["nll"] < validation["before"]["nll"] and test["after"]["nll"] < test["before"]["nll"]
    assert validation["samples"] == calibrated.info["data"]["validation"]
    assert test["samples"] == calibrated.info["data"]["test"]
    # The test figures are the calibrated model's: Keras's loss is the NLL after scaling.
    assert metrics["test"]["loss"] == pytest.approx(test["after"]["nll"], rel=1e-4)
    assert "calibrate" in calibrated.info["phase_seconds"]
    log = calibrated.file("train.log").read_text()
    line = next(line for line in log.splitlines() if "calibrated:" in line)
    before, after = validation["before"]["ece"], validation["after"]["ece"]
    expected = f"calibrated: temperature {report['temperature']:.4g}; validation ECE {before:.3g} -> {after:.3g}, NLL "
    assert expected in line and "; test ECE " in line
    model = load_model_safely(calibrated.file("model.keras"))
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "TemperatureScaling"]
    assert isinstance(model.layers[-1], TemperatureScaling) and model.layers[-1].temperature == report["temperature"]
    assert model.layers[1].activation.__name__ == "linear" and model.layers[-1].kind == "softmax"
    assert "temperature_scaling (TemperatureScaling)" in calibrated.file("summary.txt").read_text()


@pytest.mark.slow
def test_predict_gives_the_calibrated_probabilities_with_the_same_classes(calibrated, tmp_path):
    import keras
    from sklearn.datasets import load_digits

    from dltool.commands.predict import predict
    from dltool.keras_io import load_model_safely
    from dltool.training.calibration import to_logits

    rows = json.loads(predict(calibrated, [str(_digits_rows(tmp_path / "rows.csv"))], fmt="json").output)
    predicted = np.array([list(row["probabilities"].values()) for row in rows])
    model = load_model_safely(calibrated.file("model.keras"))
    assert to_logits(model) == "softmax" and [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]
    logits = keras.ops.convert_to_numpy(model(load_digits().data[:5].astype(np.float32)))
    expected = probabilities_of(logits, calibrated.info["calibration"]["temperature"])
    assert predicted == pytest.approx(expected, abs=1e-5)
    assert (predicted.argmax(axis=1) == logits.argmax(axis=1)).all()
    assert predicted.max() < probabilities_of(logits).max()


@pytest.mark.slow
def test_the_calibrated_model_exports_to_onnx_and_passes_verification(calibrated, tmp_path):
    from dltool.commands.export import export

    record = export(calibrated, "onnx", output=tmp_path)
    assert record["max_abs_diff"] <= 1e-5 and (tmp_path / "overconfident.onnx").is_file()


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_the_calibrated_model_loads_and_predicts_alike_on_jax(calibrated, tmp_path):
    pytest.importorskip("jax")
    from dltool.commands.predict import predict

    rows = str(_digits_rows(tmp_path / "rows.csv"))
    script = (
        "import sys\n"
        "from dltool.backend import import_keras\n"
        "import_keras(backend='jax')\n"
        "from dltool.commands.predict import predict\n"
        "predict(sys.argv[1], [sys.argv[2]], output=sys.argv[3], fmt='json')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(calibrated.path), rows, str(tmp_path / "jax.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    on_jax = json.loads((tmp_path / "jax.json").read_text())
    on_tensorflow = json.loads(predict(calibrated, [rows], fmt="json").output)
    pairs = [
        (a, b)
        for x, y in zip(on_jax, on_tensorflow)
        for a, b in zip(x["probabilities"].values(), y["probabilities"].values())
    ]
    assert len(pairs) == 50 and max(abs(a - b) for a, b in pairs) <= 1e-5


@pytest.mark.slow
def test_from_a_calibrated_run_takes_its_weights_without_the_layer_and_calibrates_once_again(calibrated, tmp_path):
    from dltool.commands.train import train
    from dltool.config import config_from_text
    from dltool.keras_io import load_model_safely

    config = config_from_text(OVERCONFIDENT, source="overconfident.yaml", overrides=["train.epochs=1"])
    child = train(config, runs_root=tmp_path / "runs", init_from=calibrated)
    layers = [type(layer).__name__ for layer in load_model_safely(child.file("model.keras")).layers]
    assert layers == ["Dense", "Dense", "TemperatureScaling"]  # one temperature, fitted on the child's outputs
    assert child.info["calibration"]["temperature"] != calibrated.info["calibration"]["temperature"]
    plain = config_from_text(OVERCONFIDENT, overrides=["train.epochs=1", "train.calibrate=null"])
    child = train(plain, runs_root=tmp_path / "runs", init_from=calibrated)
    model = load_model_safely(child.file("model.keras"))
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]
    assert model.layers[-1].activation.__name__ == "softmax"  # the config's model, with its parent's weights
    assert "calibration" not in child.info and "calibration" not in json.loads(child.file("metrics.json").read_text())


@pytest.mark.slow
def test_a_model_that_ends_in_a_temperature_already_is_calibrated_once(calibrated):
    """What a run interrupted after calibrating and then resumed holds: the layer goes, and one is fitted again."""
    from dltool.config import config_from_text
    from dltool.data import prepare_data
    from dltool.keras_io import load_model_safely
    from dltool.training.calibration import calibrate_model

    config = config_from_text(OVERCONFIDENT)
    model = load_model_safely(calibrated.file("model.keras"))
    report = calibrate_model(model, config, prepare_data(config))
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "TemperatureScaling"]
    assert report["temperature"] == pytest.approx(calibrated.info["calibration"]["temperature"], rel=1e-6)


@pytest.mark.slow
def test_runs_show_lists_the_temperature_and_the_figures_before_and_after(calibrated):
    from typer.testing import CliRunner

    from dltool.cli.app import app
    from dltool.training.calibration import describe

    shown = CliRunner().invoke(app, ["runs", "show", str(calibrated.path)], env={"NO_COLOR": "1", "COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert f"calibrated: {describe(calibrated.info['calibration'])}" in shown.output
    as_json = CliRunner().invoke(app, ["runs", "show", str(calibrated.path), "--json"])
    assert json.loads(as_json.output)["calibration"]["temperature"] == calibrated.info["calibration"]["temperature"]


BINARY = """
name: binary-calibrated
seed: 0
data: {source: sklearn, name: breast_cancer, standardize: true, test: 0.3, validation: 0.3}
model:
  input_shape: [30]
  layers:
    - Dense: {units: 32, activation: relu}
    - Dense: {units: 1}
    - Activation: {activation: sigmoid}
train:
  optimizer: {name: adam, learning_rate: 0.01}
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: 30
  batch_size: 16
  calibrate: temperature
  tensorboard: false
  plots: false
"""


@pytest.mark.slow
def test_a_sigmoid_run_ending_in_an_activation_layer_calibrates_and_exports_to_onnx_and_litert(tmp_path):
    """Over-confident on breast_cancer (T about 3): its most confident outputs are where a runtime's sigmoid
    rounds differently, which dividing logits recovered from the probabilities turned into 0.0057 apart."""
    from dltool.commands.export import export
    from dltool.config import config_from_text
    from dltool.keras_io import load_model_safely
    from tests.e2e_support import train_in

    run = train_in(tmp_path, config_from_text(BINARY, source="binary.yaml"))
    report = run.info["calibration"]
    assert report["temperature"] > 1.5
    assert report["validation"]["after"]["nll"] < report["validation"]["before"]["nll"]
    model = load_model_safely(run.file("model.keras"))
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "TemperatureScaling"]
    assert model.layers[-1].kind == "sigmoid"
    for fmt in ("onnx", "litert"):
        assert export(run, fmt, output=tmp_path)["max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_a_run_stopped_during_its_fit_and_resumed_calibrates_once_when_the_fit_ends(tmp_path):
    from dltool.commands.resume import resume
    from dltool.commands.train import train
    from dltool.config import config_from_text
    from dltool.errors import TrainingInterrupted
    from dltool.keras_io import load_model_safely
    from tests.e2e_support import stop_after

    config = config_from_text(OVERCONFIDENT, overrides=["train.epochs=4"])
    with pytest.raises(TrainingInterrupted):
        train(config, runs_root=tmp_path / "runs", observer=stop_after(2))
    (stopped,) = (tmp_path / "runs").iterdir()
    assert "calibration" not in json.loads((stopped / "run.json").read_text())
    resumed = resume(stopped.name, runs_root=tmp_path / "runs")
    assert resumed.status == "COMPLETED" and resumed.info["calibration"]["temperature"] > 0
    assert resumed.file("train.log").read_text().count("calibrated: temperature") == 1
    layers = [type(layer).__name__ for layer in load_model_safely(resumed.file("model.keras")).layers]
    assert layers == ["Dense", "Dense", "TemperatureScaling"]


@pytest.mark.slow
def test_evaluate_measures_the_calibrated_model_as_the_run_reported_it(calibrated):
    from dltool.commands.evaluate import evaluate

    after = calibrated.info["calibration"]["test"]["after"]
    report = evaluate(str(calibrated.path), plots=False)
    assert report["classification"]["calibration"]["ece"] == pytest.approx(after["ece"], abs=1e-4)
    assert report["classification"]["calibration"]["brier"] == pytest.approx(after["brier"], rel=1e-4)
    assert report["compiled"]["loss"] == pytest.approx(after["nll"], rel=1e-4)


@pytest.mark.slow
def test_a_calibrated_run_as_a_backbone_counts_its_layers_as_trained(calibrated):
    """up_to: -2 drops the head, as it does for the run before calibration; the temperature is not a layer of it."""
    from dltool.config import config_from_text
    from dltool.training.model import build_model

    text = OVERCONFIDENT.replace(
        "    - Dense: {units: 64, activation: relu}\n", f"    - Backbone: {{run: {calibrated.path}, up_to: -2}}\n"
    )
    from dltool.keras_io import load_model_safely

    first = load_model_safely(calibrated.file("model.keras")).layers[0].name
    model = build_model(config_from_text(text))
    assert model.dltool_backbone.record["up_to"] == first and model.layers[0].output.shape[1:] == (64,)
