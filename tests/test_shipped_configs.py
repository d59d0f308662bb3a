"""The shipped CNN, text and forecasting configs train as written, on tiny stand-ins of their datasets.

No downloads: MNIST and CIFAR-10 become small random .npz files in the Keras
layout, IMDB a few fake reviews through keras.datasets.imdb's own interface;
the forecaster uses the series shipped in configs/data. One epoch each; then
evaluate, and predict on raw files (PNG, text lines, a CSV of recent values).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from e2e_support import REPO, run_cli

from dltool.config import load_config

pytestmark = pytest.mark.slow  # every test here trains a shipped config


def _train(path, tmp_path, overrides):
    from dltool.commands.train import train

    config = load_config(REPO / "configs" / path, ["train.epochs=1", "train.tensorboard=false", *overrides])
    return train(config, runs_root=tmp_path / "runs")


def _keras_layout_npz(path, shape, classes=10, samples=(64, 16)):
    rng = np.random.default_rng(0)
    train, test = samples
    np.savez(
        path,
        x_train=rng.integers(0, 256, (train, *shape), dtype=np.uint8),
        y_train=np.arange(train) % classes,
        x_test=rng.integers(0, 256, (test, *shape), dtype=np.uint8),
        y_test=np.arange(test) % classes,
    )
    return path


def _png(path, shape):
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _predict_rows(run, files):
    from dltool.commands.predict import predict

    return list(csv.DictReader(predict(run, files).output.splitlines()))


@pytest.mark.parametrize("config, shape", [("mnist_cnn.yaml", (28, 28)), ("cifar10_cnn.yaml", (32, 32, 3))])
def test_cnn_configs_train_evaluate_and_predict_on_pngs(tmp_path, config, shape):
    from dltool.commands.evaluate import evaluate

    npz = _keras_layout_npz(tmp_path / "stand-in.npz", shape)
    run = _train(config, tmp_path, [f"data.path={npz}"])
    assert run.status == "COMPLETED"
    assert evaluate(run)["samples"] == 16
    rows = _predict_rows(run, [_png(tmp_path / "a.png", shape), _png(tmp_path / "b.png", (50, 40, 3))])
    assert len(rows) == 2 and all(row["label"] for row in rows)


def test_imdb_lstm_config_trains_on_imdb_as_text_and_predicts_raw_reviews(tmp_path, monkeypatch):
    import keras

    from dltool.commands.evaluate import evaluate

    words = {w: i + 1 for i, w in enumerate("the a film was great awful fun boring loved hated".split())}
    rng = np.random.default_rng(0)

    def sequences(n):
        return np.array([[1] + list(rng.integers(4, 14, 12)) for _ in range(n)], dtype=object)

    monkeypatch.setattr(
        keras.datasets.imdb,
        "load_data",
        lambda: ((sequences(40), np.arange(40) % 2), (sequences(10), np.arange(10) % 2)),
    )
    monkeypatch.setattr(keras.datasets.imdb, "get_word_index", lambda: words)
    run = _train("imdb_lstm.yaml", tmp_path, [])
    assert run.status == "COMPLETED"
    assert evaluate(run)["samples"] == 10
    (tmp_path / "reviews.txt").write_text("a great fun film\nboring, I hated it\n", encoding="utf-8")
    rows = _predict_rows(run, [tmp_path / "reviews.txt"])
    assert [row["label"] for row in rows] and {row["label"] for row in rows} <= {"negative", "positive"}


@pytest.mark.subprocess
def test_lstm_forecaster_config_trains_and_forecasts_from_recent_values(tmp_path):
    series = REPO / "configs" / "data" / "seasonal_series.csv"
    lines = series.read_text().splitlines()
    (tmp_path / "recent.csv").write_text("\n".join([lines[0]] + lines[-60:]) + "\n")
    # The shipped path is relative to the repository, as the README runs it.
    result = run_cli(
        "train",
        str(REPO / "configs" / "lstm_forecaster.yaml"),
        "--set",
        "train.epochs=1",
        "--set",
        f"data.path={series}",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    predicted = run_cli(
        "predict", "latest", str(tmp_path / "recent.csv"), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(predicted.stdout.splitlines()))
    assert [(row["row"]) for row in rows] == ["59"]
    assert 10 < float(rows[0]["value"]) < 40
