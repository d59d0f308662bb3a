"""Runs with a Backbone through the commands (issue 23): predict on image files, and `--from` a frozen run
straight into fine-tuning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from e2e_support import BACKBONE_CONFIG, train_in
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.config import load_config

pytestmark = pytest.mark.slow  # every test trains or loads a Keras model

runner = CliRunner()
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def _photos(run) -> list[Path]:
    return sorted(Path(load_config(run.file("config.yaml")).data.path).rglob("*.png"))


def _pixels(files) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) for path in files])


def _history(run) -> list[dict]:
    with open(run.file("history.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_takes_image_files_as_raw_pixels(backbone_run, tmp_path):
    from PIL import Image

    from dltool.commands.predict import predict
    from dltool.keras_io import load_model_safely

    photos = _photos(backbone_run)[::6]  # one of each class, 32x32 as the model takes them
    larger = tmp_path / "larger.png"
    Image.open(photos[-1]).resize((48, 40)).save(larger)  # resized to 32x32 as training resized its images
    records = json.loads(predict(backbone_run, [*photos, larger], fmt="json").output)
    assert [record["input"] for record in records] == [str(path) for path in [*photos, larger]]
    probabilities = np.array([list(record["probabilities"].values()) for record in records])
    assert list(records[0]["probabilities"]) == ["blue", "green", "red"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The files' own pixels into model.keras: its backbone's preprocessing is inside it.
    expected = load_model_safely(backbone_run.file("model.keras")).predict(_pixels(photos), verbose=0)
    np.testing.assert_allclose(probabilities[: len(photos)], expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(expected, axis=0).max() > 0.1  # the answers depend on the image


def test_from_a_frozen_run_with_a_new_fine_tune_goes_straight_to_fine_tuning(backbone_run, tmp_path):
    from dltool.keras_io import load_model_safely
    from dltool.runs import Run

    frozen_text = BACKBONE_CONFIG.replace("  fine_tune: {{unfreeze: 10, epochs: 1}}\n", "").format(
        path=json.dumps(str(_photos(backbone_run)[0].parents[1])),
        weights=json.dumps(backbone_run.info["backbone"]["weights_file"]),
    )
    assert "fine_tune" not in frozen_text
    config = tmp_path / "frozen.yaml"
    config.write_text(frozen_text)
    parent = train_in(tmp_path, load_config(config))
    assert "phases" not in parent.info and [row.get("phase") for row in _history(parent)] == [None]

    args = ["train", str(config), "--from", parent.id, "--runs-dir", str(tmp_path / "runs"), "-q"]
    result = runner.invoke(app, [*args, "--set", "train.epochs=0", "--set", "train.fine_tune.epochs=1"], env=WIDE)
    assert result.exit_code == 0, result.output
    (child,) = [Run(path) for path in (tmp_path / "runs").iterdir() if path.name != parent.id]
    assert child.status == "COMPLETED" and child.info["parent"] == parent.id
    assert [(row["epoch"], row["phase"]) for row in _history(child)] == [("1", "2")]
    assert float(_history(child)[0]["learning_rate"]) == pytest.approx(1e-5)
    (phase,) = child.info["phases"]  # no first phase: it had no epochs
    assert phase["phase"] == 2 and phase["first_epoch"] == 1 and phase["unfrozen_layers"] > 10
    assert "fine-tuning from epoch 1" in child.file("train.log").read_text()
    # It started from the parent's trained head: Adam moves a weight by about its learning rate a step, so two
    # steps at 1e-5 stay within 1e-4 of the parent's, where the parent's two at 1e-3 moved from the start by ~2e-3.
    head = [load_model_safely(run.file("model.keras")).layers[-1].get_weights()[0] for run in (parent, child)]
    np.testing.assert_allclose(head[1], head[0], atol=1e-4)
