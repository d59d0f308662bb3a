"""train.class_weight end to end (issue 25): the weights reach Keras's fit (the minority class's recall goes up),
are recorded in run.json and the log, shown by `runs show`, refused for sequence outputs, and reused by --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_support import stop_after
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.resume import resume
from dltool.commands.train import train
from dltool.config import config_from_text
from dltool.data.streaming import TRAIN, split_codes
from dltool.errors import ConfigError, TrainingInterrupted
from dltool.training.observer import Observer

pytestmark = pytest.mark.slow

# One feature: the minority class (8 % of the rows) is the majority shifted by 1.5 standard deviations. Unweighted,
# a logistic regression's threshold sits far into the minority's tail (recall about 0.2); balanced, between the
# two (recall about 0.75). Deterministic: the same figures on every run.
SKEWED = """
name: skewed
seed: 0
data: {{source: csv, path: {path}, target: label, test: 0.25, validation: null, stream: {stream}}}
model: {{input_shape: [1], layers: [{{Dense: {{units: 1, activation: sigmoid}}}}]}}
train:
  optimizer: {{name: adam, learning_rate: 0.1}}
  loss: binary_crossentropy
  metrics: [Recall]
  epochs: {epochs}
  batch_size: 64
  tensorboard: false
  plots: false
  deterministic: true
  class_weight: {class_weight}
"""


@pytest.fixture(scope="module")
def skewed_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    is_minority = rng.random(1200) < 0.08
    x = rng.normal(size=len(is_minority)) + 1.5 * is_minority
    path = tmp_path_factory.mktemp("skewed") / "skewed.csv"
    with path.open("w") as handle:
        handle.write("x,label\n")
        handle.writelines(f"{v:.5f},{'minority' if m else 'majority'}\n" for v, m in zip(x, is_minority))
    return path


def _config(path, class_weight: str = "balanced", stream: str = "false", epochs: int = 15):
    return config_from_text(
        SKEWED.format(path=json.dumps(str(path)), stream=stream, epochs=epochs, class_weight=class_weight)
    )


def _test_recall(run) -> float:
    return json.loads(run.file("metrics.json").read_text())["test"]["Recall"]  # of class 1: minority


@pytest.mark.parametrize("stream", ["false", "true"])
def test_balanced_weights_raise_the_minority_recall_and_are_recorded(tmp_path, skewed_csv, stream):
    plain = train(_config(skewed_csv, "null", stream), runs_root=tmp_path / "runs")
    weighted = train(_config(skewed_csv, "balanced", stream), runs_root=tmp_path / "runs")
    assert _test_recall(plain) < 0.4 < 0.6 < _test_recall(weighted)
    assert "class_weight" not in json.loads(plain.file("run.json").read_text())
    record = json.loads(weighted.file("run.json").read_text())["class_weight"]
    assert record["mode"] == "balanced" and list(record["weights"]) == ["majority", "minority"]
    if stream == "true":  # the rows a streamed run trains on: those its hash puts into the training split
        labels = np.array([line.rsplit(",", 1)[1] for line in skewed_csv.read_text().splitlines()[1:]])
        labels = labels[split_codes(np.arange(len(labels)), 0, 0.25, None) == TRAIN]
        expected = compute_class_weight("balanced", classes=np.array(["majority", "minority"]), y=labels)
        assert list(record["weights"].values()) == expected.tolist()
    first = weighted.file("train.log").read_text().splitlines()[0]
    assert first.endswith(
        f"; class weights balanced: majority {record['weights']['majority']:.4g}, "
        f"minority {record['weights']['minority']:.4g}"
    )
    shown = CliRunner().invoke(
        app, ["runs", "show", weighted.id, "--runs-dir", str(tmp_path / "runs")], env={"NO_COLOR": "1"}
    )
    assert shown.exit_code == 0
    assert (
        f"class weights (balanced): majority {record['weights']['majority']:.4g}, "
        f"minority {record['weights']['minority']:.4g}"
    ) in shown.output


def test_an_unknown_label_is_refused_before_a_run_folder_exists(tmp_path, skewed_csv):
    with pytest.raises(ConfigError) as caught:
        train(_config(skewed_csv, "{Minority: 5}"), runs_root=tmp_path / "runs")
    assert (
        "train.class_weight.Minority: unknown class 'Minority' (the run's classes: majority, minority); "
        "did you mean 'minority'?"
    ) in str(caught.value)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_sequence_outputs_are_refused(tmp_path, skewed_csv):
    text = SKEWED.format(path=json.dumps(str(skewed_csv)), stream="false", epochs=1, class_weight="balanced")
    text = text.replace(
        "layers: [{Dense: {units: 1, activation: sigmoid}}]",
        "layers: [{Reshape: {target_shape: [1, 1]}}, {Dense: {units: 1, activation: sigmoid}}]",
    )
    with pytest.raises(ConfigError) as caught:
        train(config_from_text(text), runs_root=tmp_path / "runs")
    assert "train.class_weight: class weights need one prediction per sample, and the model outputs [1, 1] per " in (
        str(caught.value)
    )
    assert "keras#16674" in str(caught.value)


def test_resume_trains_on_with_the_recorded_weights(tmp_path, skewed_csv):
    config = _config(skewed_csv, "{minority: 4}", epochs=3)
    with pytest.raises(TrainingInterrupted):
        train(config, runs_root=tmp_path / "runs", observer=stop_after(1))
    (stopped,) = (tmp_path / "runs").iterdir()
    info = json.loads((stopped / "run.json").read_text())
    assert info["class_weight"] == {"mode": "given", "weights": {"majority": 1.0, "minority": 4.0}}
    # The record, not the config, is what a resumed run trains with: change it and the resumed fit sees the change.
    info["class_weight"]["weights"]["minority"] = 6.0
    (stopped / "run.json").write_text(json.dumps(info))

    class Seen(Observer):
        def on_run_completed(self, run, model, data) -> None:
            self.weights = data.class_weight.by_index()

    seen = Seen()
    resumed = resume(stopped.name, runs_root=tmp_path / "runs", observer=seen)
    assert resumed.status == "COMPLETED"
    assert seen.weights == {0: 1.0, 1: 6.0}
