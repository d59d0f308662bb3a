"""data.resample and data.sample_weight end to end (issue 25): a resampled run trains on the resampled split (the
minority's recall goes up), records the counts in run.json and the log; sample weights reach Keras's fit in memory
and streamed (a class weighing 0 is never learned); evaluate and predict ignore the weight column."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.evaluate import evaluate
from dltool.commands.predict import predict
from dltool.commands.train import train
from dltool.config import config_from_text

pytestmark = pytest.mark.slow

# One feature: the minority class (8 % of the rows) is the majority shifted by 1.5 standard deviations, as in
# test_class_weight_fit.py: unweighted and not resampled, its recall is about 0.2.
SKEWED = """
name: skewed
seed: 0
data: {{source: csv, path: {path}, target: label, test: 0.25, validation: null, stream: {stream}{extra}}}
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
"""


@pytest.fixture(scope="module")
def skewed_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    is_minority = rng.random(1200) < 0.08
    x = rng.normal(size=len(is_minority)) + 1.5 * is_minority
    path = tmp_path_factory.mktemp("skewed") / "skewed.csv"
    with path.open("w") as handle:
        handle.write("x,label,w\n")
        # w: 0 for every minority row, 1 (or 2) for the majority's
        handle.writelines(
            f"{v:.5f},{'minority' if m else 'majority'},{0 if m else 1 + i % 2}\n"
            for i, (v, m) in enumerate(zip(x, is_minority))
        )
    return path


def _config(path, stream: str = "false", extra: str = "", epochs: int = 15):
    return config_from_text(SKEWED.format(path=json.dumps(str(path)), stream=stream, extra=extra, epochs=epochs))


def _test_recall(run) -> float:
    return json.loads(run.file("metrics.json").read_text())["test"]["Recall"]  # of class 1: minority


@pytest.mark.parametrize("stream", ["false", "true"])
def test_oversampling_raises_the_minority_recall_and_is_recorded(tmp_path, skewed_csv, stream):
    plain = train(_config(skewed_csv, stream, ", exclude: [w]"), runs_root=tmp_path / "runs")
    resampled = train(
        _config(skewed_csv, stream, ", exclude: [w], resample: {oversample: minority}"), runs_root=tmp_path / "runs"
    )
    assert _test_recall(plain) < 0.4 < 0.6 < _test_recall(resampled)
    info = json.loads(resampled.file("run.json").read_text())
    record = info["resample"]
    before, after = record["before"], record["after"]
    assert record["mode"] == "oversample" and record["setting"] == "minority" and record["seed"] == 0
    assert after == {"majority": before["majority"], "minority": before["majority"]}
    assert info["data"]["train"] == 2 * before["majority"]  # what the model trains on; the test split as drawn
    assert info["data"]["test"] == json.loads(plain.file("run.json").read_text())["data"]["test"]
    assert "resample" not in json.loads(plain.file("run.json").read_text())
    log = resampled.file("train.log").read_text()
    assert (
        f"resample: oversample minority: {sum(before.values())} -> {2 * before['majority']} training samples "
        f"(majority {before['majority']} -> {before['majority']}, minority {before['minority']} -> "
        f"{before['majority']})"
    ) in log
    shown = CliRunner().invoke(
        app, ["runs", "show", resampled.id, "--runs-dir", str(tmp_path / "runs")], env={"NO_COLOR": "1"}
    )
    assert shown.exit_code == 0
    assert f"resample: oversample minority: {sum(before.values())} -> {2 * before['majority']} training" in shown.output


@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_class_weighing_zero_is_never_learned(tmp_path, skewed_csv, stream):
    # Without weights but with the minority oversampled it is found; with its weights 0, never.
    found = train(
        _config(skewed_csv, stream, ", exclude: [w], resample: {oversample: minority}", epochs=5),
        runs_root=tmp_path / "runs",
    )
    unseen = train(
        _config(skewed_csv, stream, ", sample_weight: w, resample: {oversample: minority}", epochs=5),
        runs_root=tmp_path / "runs",
    )
    assert _test_recall(found) > 0.6
    assert _test_recall(unseen) == 0.0
    # The weight column is no input: evaluate on the file and predict on it ignore it.
    assert json.loads(unseen.file("preprocessing.json").read_text())["feature_names"] == ["x"]
    scored = evaluate(unseen, data_file=skewed_csv, runs_root=tmp_path / "runs", plots=False)
    assert scored["samples"] == 1200 and scored["compiled"]["Recall"] == 0.0
    result = predict(unseen, [skewed_csv], runs_root=tmp_path / "runs")
    assert len(result.output.splitlines()) == 1201


def test_resume_trains_on_the_same_resampled_split(tmp_path, skewed_csv):
    from e2e_support import stop_after

    from dltool.commands.resume import resume
    from dltool.errors import TrainingInterrupted
    from dltool.training.observer import Observer

    config = _config(skewed_csv, "true", ", exclude: [w], resample: {undersample: {majority: 0.5}}", epochs=3)
    with pytest.raises(TrainingInterrupted):
        train(config, runs_root=tmp_path / "runs", observer=stop_after(1))
    (stopped,) = (tmp_path / "runs").iterdir()
    record = json.loads((stopped / "run.json").read_text())["resample"]

    class Seen(Observer):
        def on_run_completed(self, run, model, data) -> None:
            self.counts, self.plan = data.class_counts()["train"], data.resampling.record()

    seen = Seen()
    resumed = resume(stopped.name, runs_root=tmp_path / "runs", observer=seen)
    assert resumed.status == "COMPLETED"
    assert seen.plan == record == json.loads(resumed.file("run.json").read_text())["resample"]
    assert seen.counts == list(record["after"].values())
    assert record["after"]["majority"] == round(record["before"]["majority"] * 0.5)
