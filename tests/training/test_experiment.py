"""Training end to end in-process: run folder contents, statuses, determinism, failures."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from e2e_support import IRIS_CONFIG, LINEAR_CONFIG

from dltool.commands.train import train
from dltool.config import config_from_text
from dltool.errors import ConfigError, TrainingError

pytestmark = pytest.mark.slow


def test_run_folder_holds_every_promised_file(iris_run):
    names = {p.name for p in iris_run.path.iterdir()}
    assert {
        "config.yaml",
        "run.json",
        "history.csv",
        "metrics.json",
        "model.keras",
        "summary.txt",
        "preprocessing.json",
        "train.log",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")], "no temporary file may be left behind"


def test_run_json_records_status_versions_and_data(iris_run):
    info = json.loads(iris_run.file("run.json").read_text())
    assert info["status"] == "COMPLETED"
    assert info["epochs_done"] == info["epochs_planned"] == 5
    assert set(info["versions"]) >= {"dltool", "keras", "tensorflow", "python"}
    assert info["device"].startswith(("CPU", "GPU"))
    assert info["params"] == 4 * 8 + 8 + 8 * 3 + 3
    assert len(info["data_fingerprint"]) == 16
    assert info["data"] == {
        "train": 96,
        "validation": 24,
        "test": 30,
        "validation_is_test": False,
        "test_split": "fraction 0.2 of the data (seed 0)",
    }
    assert info["ended"] and info["error"] is None
    # From this (pytest's) process's start to the first batch's end: after imports, before the fit ended.
    from dltool.system_info import process_age

    assert 0 < info["first_step_seconds"] < process_age() and info["fit_seconds"] > 0
    # Each phase of the run, in the order it ran; start_up only for a process's first run (pytest trains many).
    phases = info["phase_seconds"]
    assert [p for p in phases if p != "start_up"] == ["data", "model", "run_folder", "fit", "test", "save", "plots"]
    assert phases["fit"] == info["fit_seconds"] and all(seconds >= 0 for seconds in phases.values())
    assert info["precision"] == {"policy": "float32"}


def test_history_has_one_row_per_epoch_with_train_and_validation_columns(iris_run):
    rows = list(csv.DictReader(iris_run.file("history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.05)


def test_metrics_json_has_train_validation_and_test(iris_run):
    metrics = json.loads(iris_run.file("metrics.json").read_text())
    assert set(metrics["train"]) == set(metrics["validation"]) == set(metrics["test"]) == {"loss", "accuracy"}
    assert metrics["epochs"] == 5 and metrics["stopped_early"] is False
    assert metrics["test"]["accuracy"] > 0.6  # 5 epochs at lr 0.05 learn iris well past chance (0.33)


def test_resolved_config_has_defaults_filled_in_and_validates_again(iris_run):
    saved = yaml.safe_load(iris_run.file("config.yaml").read_text())
    assert saved["train"]["steps_per_execution"] == 32
    assert saved["train"]["callbacks"] == {"early_stopping": None, "reduce_lr_on_plateau": None, "checkpoint": None}
    again = config_from_text(iris_run.file("config.yaml").read_text())
    assert again.train.epochs == 5


def test_preprocessing_state_is_saved_for_predict(iris_run):
    state = json.loads(iris_run.file("preprocessing.json").read_text())
    assert state["class_names"] == ["setosa", "versicolor", "virginica"]
    assert state["input_shape"] == [4]
    assert len(state["mean"]) == len(state["std"]) == 4
    assert state["feature_names"][0] == "sepal length (cm)"


def test_same_config_gives_same_metrics(tmp_path, linear_run):
    again = train(config_from_text(LINEAR_CONFIG), runs_root=tmp_path)
    first = json.loads(linear_run.file("metrics.json").read_text())
    second = json.loads(again.file("metrics.json").read_text())
    assert first["test"] == second["test"]
    assert again.id != linear_run.id


def test_steps_per_execution_does_not_change_results(tmp_path):
    results = []
    for steps in (1, 32):
        config = config_from_text(IRIS_CONFIG, overrides=[f"train.steps_per_execution={steps}"])
        run = train(config, runs_root=tmp_path)
        results.append(json.loads(run.file("metrics.json").read_text())["test"])
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-4)


def test_small_models_report_their_weights(linear_run):
    weights = json.loads(linear_run.file("metrics.json").read_text())["weights"]
    assert set(weights["dense"]) == {"kernel", "bias"}


def test_nan_loss_ends_the_run_failed_with_the_epoch(tmp_path):
    config = config_from_text(LINEAR_CONFIG, overrides=["train.optimizer={name: sgd, learning_rate: 1e10}"])
    with pytest.raises(TrainingError, match=r"loss became (NaN|infinite) at epoch 1"):
        train(config, runs_root=tmp_path)
    (run_dir,) = tmp_path.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "FAILED"
    assert "at epoch 1" in info["error"]


def test_config_error_found_at_build_time_creates_no_run_folder(tmp_path):
    config = config_from_text(IRIS_CONFIG, source="iris.yaml", overrides=["model.layers[1].Dense.units=2"])
    with pytest.raises(ConfigError, match=r"the last layer has 2 outputs but the data has 3 classes"):
        train(config, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model.layers[1].Dense.units=4"],
            r"iris.yaml:\d+: model.layers\[1\]: the last layer has 4 outputs but the data has 3 classes "
            r"\(setosa, versicolor, virginica\); set units: 3 \(each output is one class's probability",
        ),
        (
            ["model.layers[1].Dense={units: 1, activation: sigmoid}", "train.loss=binary_crossentropy"],
            r"the last layer has 1 output but the data has 3 classes; use \{Dense: \{units: 3, activation: softmax\}\}",
        ),
        (
            ["train.loss=binary_crossentropy"],
            r"binary_crossentropy takes one sigmoid output per sample, but the last layer has 3 outputs",
        ),
    ],
)
def test_output_width_that_does_not_fit_the_classes_is_refused(tmp_path, overrides, expected):
    # More outputs than classes used to train, and predict then wrote a header shorter than its rows.
    config = config_from_text(IRIS_CONFIG, source="iris.yaml", overrides=overrides)
    with pytest.raises(ConfigError, match=expected):
        train(config, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_validate_refuses_more_outputs_than_classes(tmp_path):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    config_file = tmp_path / "iris.yaml"
    config_file.write_text(IRIS_CONFIG.replace("units: 3", "units: 5"))
    result = CliRunner().invoke(app, ["validate", str(config_file)])
    assert result.exit_code == 2
    assert "the last layer has 5 outputs but the data has 3 classes" in result.output
    assert "set units: 3" in result.output


def test_input_shape_mismatch_names_both_shapes_and_the_line(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(IRIS_CONFIG.replace("input_shape: [4]", "input_shape: [5]"))
    with pytest.raises(ConfigError) as caught:
        train(config_file, runs_root=tmp_path / "runs")
    message = str(caught.value)
    assert message.startswith(f"{config_file}:6: model.input_shape:")
    assert "[5]" in message and "[4]" in message
    assert not (tmp_path / "runs").exists()


def test_keras_refusing_a_layer_argument_is_a_config_error(tmp_path):
    config = config_from_text(IRIS_CONFIG, source="iris.yaml", overrides=["model.layers[0].Dense.units=-3"])
    with pytest.raises(ConfigError, match=r"iris.yaml:\d+: model.layers\[0\].Dense: Keras refused Dense"):
        train(config, runs_root=tmp_path)


def test_callbacks_early_stopping_and_best_checkpoint(tmp_path):
    config = config_from_text(
        IRIS_CONFIG,
        overrides=[
            "train.epochs=40",
            "train.callbacks={early_stopping: {patience: 0, min_delta: 10}, checkpoint: true}",
        ],
    )
    run = train(config, runs_root=tmp_path)
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs"] == 2
    assert run.file("checkpoints/best.keras").is_file()
    # evaluate and predict can use it instead of the final model
    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict

    best = evaluate(run, checkpoint="best")
    assert (best["name"], best["model"]) == ("test@best", "checkpoints/best.keras")
    assert run.file("evaluations/test@best.json").is_file()
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((2, 4)))
    assert len(predict(run, [rows], checkpoint="best").output.splitlines()) == 3


def test_keras_download_failure_names_data_path(monkeypatch):
    import keras

    from dltool.data import prepare_data
    from dltool.errors import DataError

    def offline():
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    config = config_from_text("""
name: m
data: {source: keras, name: mnist, scale: 255}
model: {input_shape: [28, 28], layers: [Flatten, {Dense: {units: 10, activation: softmax}}]}
train: {loss: sparse_categorical_crossentropy}
""")
    with pytest.raises(DataError, match=r"could not load keras dataset 'mnist': the download failed .*set data.path"):
        prepare_data(config)


def test_a_write_failure_during_training_ends_the_run_failed(tmp_path, monkeypatch):
    from dltool.runs import Run

    real_write = Run.write_text

    def failing_write(self, name, text):
        if name == "history.csv":
            raise OSError(28, "No space left on device")
        return real_write(self, name, text)

    monkeypatch.setattr(Run, "write_text", failing_write)
    with pytest.raises(TrainingError, match="No space left on device"):
        train(config_from_text(LINEAR_CONFIG), runs_root=tmp_path)
    (run_dir,) = tmp_path.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "FAILED" and "No space left on device" in info["error"]


def test_from_run_starts_a_new_run_from_its_trained_weights(tmp_path, linear_run):
    parent_history = list(csv.DictReader(linear_run.file("history.csv").open()))
    config = config_from_text(LINEAR_CONFIG, overrides=["train.epochs=2"])
    child = train(config, runs_root=tmp_path, init_from=linear_run)
    assert json.loads(child.file("run.json").read_text())["parent"] == linear_run.id
    assert f"weights from run {linear_run.id}" in child.file("train.log").read_text()
    first = float(next(csv.DictReader(child.file("history.csv").open()))["loss"])
    # A fresh model starts far above the parent's last loss; the child continues near it.
    assert first < float(parent_history[0]["loss"]) / 2


def test_from_run_refuses_a_model_of_another_shape(tmp_path, linear_run):
    config = config_from_text(LINEAR_CONFIG, overrides=["model.layers=[{Dense: {units: 4}}, {Dense: {units: 1}}]"])
    with pytest.raises(ConfigError, match=r"--from .*: its model has weights of shapes \[\(1, 1\), \(1,\)\]"):
        train(config, runs_root=tmp_path / "runs", init_from=linear_run)
    assert not (tmp_path / "runs").exists()


def test_restored_best_weights_report_the_best_epochs_figures(tmp_path):
    config = config_from_text(
        IRIS_CONFIG,
        overrides=[
            "train.epochs=8",
            "train.optimizer.learning_rate=0.3",
            "train.callbacks={early_stopping: {patience: 8, restore_best_weights: true}}",
        ],
    )
    run = train(config, runs_root=tmp_path)
    rows = list(csv.DictReader(run.file("history.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["restored_epoch"] == int(best["epoch"])
    assert metrics["validation"]["loss"] == pytest.approx(float(best["val_loss"]))
    assert metrics["train"]["loss"] == pytest.approx(float(best["loss"]))
