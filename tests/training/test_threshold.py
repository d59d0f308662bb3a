"""train.threshold end to end: a binary breast_cancer run chooses its threshold on validation, and predict, evaluate,
serve, export and runs show use it; --threshold overrides it; resume and --from choose it again.

Real tiny Keras models (a logistic regression, 3 epochs); every test here trains, so all are slow.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from e2e_support import stop_after
from serve_support import running_server
from sklearn.metrics import confusion_matrix
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.evaluate import evaluate
from dltool.commands.predict import predict
from dltool.commands.resume import resume
from dltool.commands.train import train
from dltool.config import config_from_text
from dltool.decision import choose_threshold, figures_at
from dltool.errors import ConfigError, TrainingInterrupted, UsageError

pytestmark = pytest.mark.slow

CONFIG = """
name: threshold-test
seed: 0
data: {source: sklearn, name: breast_cancer, standardize: true, test: 0.25, validation: 0.25}
model: {input_shape: [30], layers: [{Dense: {units: %s}}]}
train: {optimizer: {name: adam, learning_rate: 0.05}, loss: %s, metrics: [accuracy], epochs: 3,
        batch_size: 32, plots: false, threshold: %s}
"""
SIGMOID = ("1, activation: sigmoid", "binary_crossentropy")
SOFTMAX = ("2, activation: softmax", "sparse_categorical_crossentropy")


def _config(threshold: str, head=SIGMOID, **changes):
    text = CONFIG % (*head, threshold)
    for old, new in changes.items():
        text = text.replace(old, new)
    return config_from_text(text, source="threshold.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(_config("{optimize: f1}"), runs_root=tmp_path_factory.mktemp("threshold") / "runs")


def _validation_scores(run) -> tuple[np.ndarray, np.ndarray]:
    """The validation split's labels and the run's model's positive-class scores, rebuilt from its config."""
    from dltool.data import prepare_data
    from dltool.decision import positive_scores
    from dltool.saved_run import SavedRun

    saved = SavedRun.open(run)
    data = prepare_data(saved.config)
    return data.y_val, positive_scores(saved.load_model().predict(data.x_val, verbose=0))


@pytest.fixture(scope="module")
def validation_scores(run):
    return _validation_scores(run)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer

    path = tmp_path_factory.mktemp("rows") / "rows.npy"
    np.save(path, load_breast_cancer().data[:120].astype(np.float32))
    return path


def _labels(output: str) -> list[str]:
    return [row["label"] for row in json.loads(output)]


def test_the_run_records_the_threshold_chosen_on_validation(run, validation_scores):
    record = run.info["threshold"]
    y_val, scores = validation_scores
    expected = choose_threshold(y_val, scores, "f1")
    assert record["rule"] == "f1" and "fallback" not in record
    assert record["value"] == pytest.approx(expected["value"], abs=1e-6)
    assert record["validation"] == pytest.approx(figures_at(y_val, scores, record["value"]))
    assert set(record["test"]) == {"accuracy", "precision", "recall", "f1", "samples"}
    assert record["test"]["samples"] == run.info["data"]["test"]
    assert "threshold" in run.info["phase_seconds"]
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["test_at_threshold"] == {"threshold": record["value"], **record["test"]}
    assert set(metrics["test"]) == {"loss", "accuracy"}  # Keras's own, at 0.5
    log = run.file("train.log").read_text()
    assert f"decision threshold {record['value']:.4g} (f1); on validation precision " in log


def test_predict_labels_at_the_runs_threshold_and_at_an_override(run, rows):
    threshold = run.info["threshold"]["value"]
    answers = json.loads(predict(run, [rows], fmt="json").output)
    scores = np.array([row["probabilities"]["benign"] for row in answers])
    assert _labels(predict(run, [rows], fmt="json").output) == [
        "benign" if s >= threshold else "malignant" for s in scores
    ]
    # An override between two of the scores moves at least one label.
    override = float(np.sort(scores)[len(scores) // 2])
    overridden = _labels(predict(run, [rows], fmt="json", threshold=override).output)
    assert overridden == ["benign" if s >= override else "malignant" for s in scores]
    assert overridden != _labels(predict(run, [rows], fmt="json").output)


def test_evaluate_counts_at_the_threshold_and_says_which(run):
    from dltool.data import open_test_split
    from dltool.saved_run import SavedRun

    saved = SavedRun.open(run)
    data = open_test_split(saved.config, saved.preprocessing)
    (x, y), model = next(data.test_chunks()), saved.load_model()
    scores = model.predict(x, verbose=0).reshape(-1)
    threshold = run.info["threshold"]["value"]

    report = evaluate(run, plots=False)
    assert report["classification"]["decision_threshold"] == threshold
    assert report["classification"]["confusion_matrix"] == confusion_matrix(y, scores >= threshold).tolist()
    assert report["decision"] == {
        "threshold": threshold,
        "source": "train.threshold",
        "positive_class": "benign",
        **{k: pytest.approx(v) for k, v in figures_at(y, scores, threshold).items() if k != "samples"},
    }
    assert report["decision"]["f1"] == pytest.approx(run.info["threshold"]["test"]["f1"])

    overridden = evaluate(run, plots=False, threshold=0.97)
    assert overridden["decision"]["source"] == "--threshold"
    assert overridden["classification"]["confusion_matrix"] == confusion_matrix(y, scores >= 0.97).tolist()

    shown = CliRunner().invoke(app, ["evaluate", str(run.path), "--no-plots"])
    assert shown.exit_code == 0, shown.output
    assert f"labels at decision threshold {threshold:.4g} (train.threshold): class benign when its probability" in (
        " ".join(shown.output.split())
    )


def test_serve_labels_at_the_threshold_and_names_it(run, rows):
    from dltool.serving.servable import ServedModel

    offline = _labels(predict(run, [rows], fmt="json").output)
    instances = np.load(rows).tolist()
    served = ServedModel.open(run)
    with running_server(served, max_batch=64, batch_wait_ms=2) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            labelled = client.post(f"/v1/models/{served.name}:label", json={"instances": instances})
            assert labelled.status_code == 200, labelled.text
            assert [r["label"] for r in labelled.json()["predictions"]] == offline
            metadata = client.get(f"/v1/models/{served.name}/metadata").json()
    assert metadata["dltool"]["decision_threshold"] == run.info["threshold"]["value"]

    strict = ServedModel(served.saved, served.model, threshold=0.999)
    x = strict.prepare(np.asarray(instances, dtype=np.float32), "instances")
    answers = strict.labelled(strict.run_model(x), [{}] * len(instances))
    assert [a["label"] for a in answers] == _labels(predict(run, [rows], fmt="json", threshold=0.999).output)
    assert strict.metadata()["dltool"]["decision_threshold"] == 0.999


def test_the_onnx_export_sidecar_carries_the_threshold(run, tmp_path):
    from dltool.commands.export import export

    export(run, "onnx", output=tmp_path / "model.onnx")
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["decision_threshold"] == run.info["threshold"]["value"]
    assert sidecar["decision"] == (
        "label benign when the last output value (its probability) >= decision_threshold, else malignant"
    )


def test_runs_show_lists_the_threshold(run):
    shown = CliRunner().invoke(app, ["runs", "show", str(run.path)])
    assert shown.exit_code == 0, shown.output
    assert f"decision threshold {run.info['threshold']['value']:.4g} (f1); on validation precision" in shown.output


def test_a_bad_threshold_override_exits_2(run, rows, iris_run):
    result = CliRunner().invoke(app, ["predict", str(run.path), str(rows), "--threshold", "1.5"])
    assert result.exit_code == 2
    assert "--threshold: expected a number between 0 and 1 (exclusive), received 1.5" in result.output
    with pytest.raises(UsageError, match="this run is a classifier of 3 classes; leave out --threshold"):
        evaluate(iris_run, plots=False, threshold=0.3)


def test_a_two_class_softmax_decides_on_its_second_column(tmp_path, rows):
    run = train(_config("{optimize: precision_at_recall, at: 0.95}", SOFTMAX), runs_root=tmp_path / "runs")
    record = run.info["threshold"]
    assert record["rule"] == "precision_at_recall" and record["at"] == 0.95
    assert record["validation"]["recall"] >= 0.95
    answers = json.loads(predict(run, [rows], fmt="json").output)
    assert [a["label"] for a in answers] == [
        "benign" if a["probabilities"]["benign"] >= record["value"] else "malignant" for a in answers
    ]


def test_a_fixed_threshold_needs_no_validation_split(tmp_path):
    run = train(_config("0.3", **{"validation: 0.25": "validation: null"}), runs_root=tmp_path / "runs")
    record = run.info["threshold"]
    assert {k: record[k] for k in ("rule", "value")} == {"rule": "fixed", "value": 0.3}
    assert "validation" not in record and record["test"]["samples"] == run.info["data"]["test"]
    assert "decision threshold 0.3 (fixed); on test precision " in run.file("train.log").read_text()


def test_more_than_two_classes_are_refused_before_a_run_folder_exists(tmp_path):
    config = _config("{optimize: f1}", SOFTMAX, **{"name: breast_cancer": "name: iris", "[30]": "[4]"})
    with pytest.raises(ConfigError) as caught:
        train(config, runs_root=tmp_path / "runs")
    assert str(caught.value) == (
        "threshold.yaml:7: train.threshold: a decision threshold applies to binary classifiers only, received 3 "
        "classes (setosa, versicolor, virginica); remove train.threshold"
    )
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_resume_and_from_choose_the_threshold_again(tmp_path):
    with pytest.raises(TrainingInterrupted):
        train(_config("{optimize: youden}"), runs_root=tmp_path / "runs", observer=stop_after(1))
    (stopped,) = (tmp_path / "runs").iterdir()
    assert "threshold" not in json.loads((stopped / "run.json").read_text())
    resumed = resume(stopped.name, runs_root=tmp_path / "runs")
    assert resumed.status == "COMPLETED"
    assert resumed.info["threshold"]["rule"] == "youden"
    assert resumed.file("train.log").read_text().count("decision threshold") == 1

    child = train(_config("{optimize: youden}"), runs_root=tmp_path / "runs", init_from=resumed)
    assert child.info["parent"] == resumed.id
    assert child.info["threshold"]["rule"] == "youden"
    # Each run's threshold is its own model's choice on validation.
    for trained in (resumed, child):
        expected = choose_threshold(*_validation_scores(trained), "youden")
        assert trained.info["threshold"]["value"] == pytest.approx(expected["value"], abs=1e-6)
