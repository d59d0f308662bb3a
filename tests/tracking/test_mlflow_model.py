"""The run's model in MLflow (dltool.tracking.model): a pyfunc model that predicts as `dltool predict` does, and its
registration; logged by a tracked run's end and by `dltool runs sync`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dltool.cli.app import app

pytestmark = pytest.mark.slow

SPECIES = ("setosa", "versicolor", "virginica")
# Features named in another order than the file's, one file column that is no feature: the model takes them by name.
IRIS = """
name: iris-mlflow
seed: {seed}
data: {{source: csv, path: {path}, target: species, features: [petal_length, sepal_length, petal_width, sepal_width],
        exclude: [id], standardize: true, test: 0.2, validation: 0.2}}
model: {{input_shape: [4], layers: [{{Dense: {{units: 8, activation: relu}}}}, {{Dense: {{units: 3, activation: softmax}}}}]}}
train: {{optimizer: {{name: adam, learning_rate: 0.05}}, loss: sparse_categorical_crossentropy, metrics: [accuracy],
         epochs: 2, batch_size: 16, plots: false, tensorboard: false}}
tracking: {{mlflow: {{uri: '{uri}', experiment: pyfunc, register: iris-classifier}}}}
"""
# Raw uint8 8x8 images: scaled, standardized and given their channel axis by the run.
IMAGES = """
name: tiny-cnn
seed: 0
data: {{source: npz, path: {path}, scale: 255, standardize: true, test: 0.25, validation: null}}
model: {{input_shape: [8, 8, 1], layers: [{{Conv2D: {{filters: 2, kernel_size: 3, activation: relu}}}}, Flatten,
        {{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, batch_size: 8, plots: false,
         tensorboard: false}}
"""
ENV = {"NO_COLOR": "1", "COLUMNS": "250"}


def _iris_csv(path):
    from sklearn.datasets import load_iris

    data = load_iris()
    lines = ["id,sepal_length,sepal_width,petal_length,petal_width,species"]
    for number, (row, target) in enumerate(zip(data.data, data.target)):
        lines.append(f"{number}," + ",".join(f"{value:g}" for value in row) + f",{SPECIES[target]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(text: str, root):
    from dltool.commands.train import train
    from dltool.config import config_from_text

    return train(config_from_text(text, source=str(root / "config.yaml")), runs_root=root / "runs")


def _dltool_predict(run, path, **kwargs) -> list[dict]:
    from dltool.commands.predict import predict

    return json.loads(predict(run, [path], fmt="json", **kwargs).output)


def _pyfunc(uri: str, model_uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)  # runs:/ and models:/ URIs are looked up in the global tracking store
    return mlflow.pyfunc.load_model(model_uri)


@pytest.fixture(scope="module")
def iris(tmp_path_factory, mlflow_uri):
    """Two tracked iris runs (seeds 0 and 1), both registered as iris-classifier, and the CSV they read."""
    root = tmp_path_factory.mktemp("iris")
    csv = _iris_csv(root / "iris.csv")
    runs = []
    for seed in (0, 1):
        folder = root / f"seed{seed}"
        folder.mkdir()
        runs.append(_train(IRIS.format(seed=seed, path=json.dumps(str(csv)), uri=mlflow_uri), folder))
    return runs, csv


def test_the_pyfunc_model_predicts_as_dltool_predict_does(iris, mlflow_uri):
    import pandas as pd

    (run, _), csv = iris
    record = run.info["tracking"]["mlflow"]
    assert record["synced"] is True and record["model_uri"].startswith("models:/m-")
    model = _pyfunc(mlflow_uri, f"runs:/{record['run_id']}/model")
    got = model.predict(pd.read_csv(csv))  # raw rows, every file column: the model picks its features by name
    expected = _dltool_predict(run, csv, keep=["id"])
    assert list(got.columns) == ["label", "prob_setosa", "prob_versicolor", "prob_virginica"]
    assert got["label"].tolist() == [row["label"] for row in expected]
    probabilities = np.array([[row["probabilities"][name] for name in SPECIES] for row in expected])
    np.testing.assert_allclose(
        got[["prob_" + name for name in SPECIES]].to_numpy(), probabilities, rtol=1e-5, atol=1e-6
    )
    assert set(got["label"]) == set(SPECIES)  # a trained model, not one answer for every row


def test_the_signature_and_input_example_are_raw_rows_by_name(iris, mlflow_uri):
    import mlflow
    from mlflow.models import Model

    (run, _), csv = iris
    _pyfunc(mlflow_uri, run.info["tracking"]["mlflow"]["model_uri"])  # sets the tracking URI for the download
    local = mlflow.artifacts.download_artifacts(run.info["tracking"]["mlflow"]["model_uri"])
    logged = Model.load(local)
    assert [(spec["name"], spec["type"]) for spec in logged.signature.inputs.to_dict()] == [
        ("petal_length", "double"), ("sepal_length", "double"), ("petal_width", "double"), ("sepal_width", "double"),
    ]  # fmt: skip
    assert [spec["name"] for spec in logged.signature.outputs.to_dict()] == [
        "label", "prob_setosa", "prob_versicolor", "prob_virginica",
    ]  # fmt: skip
    example = logged.load_input_example(local)
    assert list(example.columns) == ["petal_length", "sepal_length", "petal_width", "sepal_width"]
    assert len(example) == 3


def test_each_run_registers_a_new_version_tagged_with_its_run_id(iris, client):
    runs, _ = iris
    assert [run.info["tracking"]["mlflow"]["registered"] for run in runs] == [
        {"name": "iris-classifier", "version": 1},
        {"name": "iris-classifier", "version": 2},
    ]
    for number, run in enumerate(runs, start=1):
        version = client.get_model_version("iris-classifier", str(number))
        assert version.tags["dltool.run_id"] == run.id
        assert version.run_id == run.info["tracking"]["mlflow"]["run_id"]
    code = CliRunner().invoke(app, ["runs", "show", runs[1].id, "--runs-dir", str(runs[1].path.parent)], env=ENV)
    assert code.exit_code == 0
    assert "; model registered as iris-classifier version 2" in code.output


def test_runs_sync_logs_the_model_of_a_run_trained_untracked(tmp_path, mlflow_uri):
    from dltool.data.splits import raw_test_inputs
    from dltool.saved_run import SavedRun

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", x=images, y=np.arange(40) % 2)
    run = _train(IMAGES.format(path=json.dumps(str(tmp_path / "images.npz"))), tmp_path)
    assert "tracking" not in run.info
    result = CliRunner().invoke(
        app, ["runs", "sync", run.id, "--mlflow", mlflow_uri, "--runs-dir", str(tmp_path / "runs")], env=ENV
    )
    assert result.exit_code == 0, result.output
    record = run.info["tracking"]["mlflow"]
    assert result.output.rstrip().endswith(f"artifacts, the model {record['model_uri']}")
    raw = raw_test_inputs(SavedRun.open(run).config, 10)
    np.save(tmp_path / "raw.npy", raw)
    model = _pyfunc(mlflow_uri, f"runs:/{record['run_id']}/model")
    assert model.metadata.signature.inputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": (-1, 8, 8)}}
    ]
    got = model.predict(raw)
    expected = _dltool_predict(run, tmp_path / "raw.npy")
    assert got["label"].tolist() == [row["label"] for row in expected]
    probabilities = np.array([[row["probabilities"][name] for name in ("0", "1")] for row in expected])
    np.testing.assert_allclose(got[["prob_0", "prob_1"]].to_numpy(), probabilities, rtol=1e-5, atol=1e-6)
    # Synced again (its record marked unsynced): the model is not logged twice.
    run.update_info(tracking={"mlflow": {**record, "synced": False}})
    result = CliRunner().invoke(app, ["runs", "sync", run.id, "--runs-dir", str(tmp_path / "runs")], env=ENV)
    assert result.exit_code == 0 and f"the model {record['model_uri']}" in result.output


def test_a_registry_that_refuses_costs_one_warning_and_the_run_completes(iris, tmp_path, mlflow_uri):
    import socket

    from dltool.runs import Run

    _, csv = iris
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once the probe is closed
    config = tmp_path / "iris.yaml"
    config.write_text(IRIS.format(seed=0, path=json.dumps(str(csv)), uri=mlflow_uri).replace("iris-classifier", "away"))
    env = {**ENV, "MLFLOW_REGISTRY_URI": f"http://127.0.0.1:{closed}"}  # the model registry's server is away
    result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    run = Run.resolve("latest", tmp_path / "runs")
    record = run.info["tracking"]["mlflow"]
    assert record["synced"] is True and record["register_error"] == "connection refused"
    assert "registered" not in record
    assert [line for line in result.output.splitlines() if "MLflow" in line] == [
        f"warning: MLflow: the model is logged ({record['model_uri']}) but not registered (connection refused)"
    ]
    warnings = [line for line in run.file("train.log").read_text().splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        f"warning: MLflow at {mlflow_uri}: the model is logged but not registered as away (connection refused)"
    )
