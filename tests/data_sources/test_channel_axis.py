"""input_shape [8, 8, 1] on [8, 8] images: preprocessing adds the channel axis, in training, evaluate and predict."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.data.preprocessing import Preprocessing
from dltool.errors import ConfigError, InputError

CNN_CONFIG = """
name: tiny-cnn
seed: 0
data: {{source: npz, path: {path}, scale: 255, standardize: true, test: 0.25, validation: null}}
model:
  input_shape: {input_shape}
  layers:
    - Conv2D: {{filters: 2, kernel_size: 3, activation: relu}}
    - Flatten
    - Dense: {{units: 2, activation: softmax}}
train: {{loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, batch_size: 8}}
"""


def _images(path, count: int = 40, seed: int = 0):
    """An npz of ``count`` 8x8 grayscale images without a channel axis, classes 0 and 1."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 256, size=(count, 8, 8), dtype=np.uint8), y=np.arange(count) % 2)
    return path


def _config(npz, input_shape):
    return config_from_text(CNN_CONFIG.format(path=json.dumps(str(npz)), input_shape=input_shape), source="cnn.yaml")


# --------------------------------------------------------------------------- pure: preprocessing and splits
def test_preprocessing_adds_the_channel_axis_to_raw_samples_only():
    raw = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    state = Preprocessing.fit(
        raw, input_shape=[8, 8, 1], task="classification", scale=255, standardize=True, add_channel_axis=True
    )
    assert np.shape(state.mean) == (8, 8, 1)  # statistics of the model's inputs, axis included
    assert state.transform(raw).shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(state.transform(raw[..., None]), state.transform(raw))
    state.check_shape(raw, "raw.npy")
    state.check_shape(raw[..., None], "with-axis.npy")
    with pytest.raises(InputError) as caught:
        state.check_shape(np.zeros((2, 8, 8, 2)), "two.npy")
    assert (
        str(caught.value)
        == "two.npy: expected samples of shape [8, 8, 1] or [8, 8], received [8, 8, 2] (array shape [2, 8, 8, 2])"
    )


def test_preprocessing_json_of_older_runs_reads_without_the_field():
    written = Preprocessing(input_shape=[8, 8], task="classification").to_dict()
    assert written["add_channel_axis"] is False
    del written["add_channel_axis"]
    state = Preprocessing.from_dict(written)
    assert state.add_channel_axis is False
    with pytest.raises(InputError, match=r"expected samples of shape \[8, 8\], received \[8, 8, 1\]"):
        state.check_shape(np.zeros((2, 8, 8, 1)), "x.npy")


def test_a_trailing_channel_axis_of_1_is_accepted_and_added(tmp_path):
    prepared = prepare_data(_config(_images(tmp_path / "images.npz"), [8, 8, 1]))
    assert prepared.preprocessing.add_channel_axis
    assert prepared.x_train.shape == (30, 8, 8, 1) and prepared.x_test.shape == (10, 8, 8, 1)


@pytest.mark.parametrize("input_shape", [[8, 8, 2], [8, 8, 1, 1], [1, 8, 8]])
def test_any_other_input_shape_mismatch_is_still_refused(tmp_path, input_shape):
    with pytest.raises(ConfigError) as caught:
        prepare_data(_config(_images(tmp_path / "images.npz"), input_shape))
    assert caught.value.path == "model.input_shape"
    assert str(caught.value) == (
        f"model.input_shape: expected the data's sample shape, received {input_shape}: the data has 40 samples of shape [8, 8]; "
        "set model.input_shape: [8, 8]"
    )


# --------------------------------------------------------------------------- slow: train, predict, evaluate
@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A COMPLETED 2-epoch Conv2D classifier with input_shape [8, 8, 1], trained on [n, 8, 8] images."""
    from dltool.commands.train import train

    root = tmp_path_factory.mktemp("cnn")
    return train(_config(_images(root / "images.npz"), [8, 8, 1]), runs_root=root / "runs")


@pytest.mark.slow
def test_the_run_records_the_added_axis(cnn_run):
    assert cnn_run.info["status"] == "COMPLETED"
    saved = cnn_run.read_json("preprocessing.json")
    assert saved["input_shape"] == [8, 8, 1] and saved["add_channel_axis"] is True


@pytest.mark.slow
def test_predict_takes_arrays_with_or_without_the_axis_and_pngs(cnn_run, tmp_path):
    from PIL import Image

    from dltool.commands.predict import predict

    pixels = np.random.default_rng(5).integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "raw.npy", pixels)
    np.save(tmp_path / "with-axis.npy", pixels[..., None])
    Image.fromarray(pixels[0], mode="L").save(tmp_path / "first.png")
    inputs = [tmp_path / "raw.npy", tmp_path / "with-axis.npy", tmp_path / "first.png"]
    rows = list(csv.DictReader(io.StringIO(predict(cnn_run, inputs).output)))
    assert [row["input"].rsplit("/", 1)[-1] for row in rows] == ["raw.npy"] * 3 + ["with-axis.npy"] * 3 + ["first.png"]
    probabilities = [float(row["prob_1"]) for row in rows]
    assert probabilities[:3] == pytest.approx(probabilities[3:6], abs=1e-6)
    assert probabilities[6] == pytest.approx(probabilities[0], abs=1e-5)  # the PNG is read as 8x8x1 pixels


@pytest.mark.slow
def test_predict_still_refuses_other_shapes(cnn_run, tmp_path):
    from dltool.commands.predict import predict

    np.save(tmp_path / "two.npy", np.zeros((3, 8, 8, 2), dtype=np.uint8))
    with pytest.raises(
        InputError, match=r"two.npy: expected samples of shape \[8, 8, 1\] or \[8, 8\], received \[8, 8, 2\]"
    ):
        predict(cnn_run, [tmp_path / "two.npy"])


@pytest.mark.slow
def test_evaluate_on_the_test_split_and_on_a_file_without_the_axis(cnn_run, tmp_path):
    from dltool.commands.evaluate import evaluate

    own = evaluate(cnn_run)
    assert own["samples"] == 10
    given = evaluate(cnn_run, data_file=_images(tmp_path / "more.npz", count=12, seed=3))
    assert given["samples"] == 12 and 0.0 <= given["compiled"]["accuracy"] <= 1.0
