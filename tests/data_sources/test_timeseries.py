"""The timeseries source: windows like keras.utils.timeseries_dataset_from_array, time-ordered splits, forecasts."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from e2e_support import config_with_data_path, train_in

from dltool.errors import ConfigError, DataError, InputError

SERIES_CONFIG = """
name: forecast
seed: 0
data: {{source: timeseries, path: {path}, target: value, window: 12, test: 0.2, validation: 0.1,
        standardize: true, standardize_targets: true}}
model:
  input_shape: [12, 1]
  layers:
    - LSTM: {{units: 8}}
    - Dense: {{units: 1}}
train: {{optimizer: {{name: adam, learning_rate: 0.01}}, loss: mse, metrics: [mae], epochs: 4, batch_size: 16,
        tensorboard: false}}
"""


def write_series(path, steps=240, start=0):
    t = np.arange(start, start + steps)
    values = 50 + 10 * np.sin(2 * np.pi * t / 24) + 0.05 * t
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "value", "other"])
        for day, value in zip(t, values):
            writer.writerow([f"2026-01-01+{day}", f"{value:.4f}", day % 7])
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("series") / "series.csv")


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory, series):
    return train_in(tmp_path_factory.mktemp("forecast"), _config(series))


def _config(path, overrides=()):
    return config_with_data_path(SERIES_CONFIG, path, overrides, source="forecast.yaml")


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("window, horizon, stride", [(3, 1, 1), (5, 2, 1), (4, 1, 3), (6, 3, 2), (1, 1, 1)])
@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_windows_and_targets_match_keras_timeseries_dataset_from_array(window, horizon, stride):
    import keras

    from dltool.data.timeseries import make_windows, window_count, window_targets

    series = np.arange(40, dtype=np.float64).reshape(20, 2)
    targets = series[:, :1] * 10
    count = window_count(len(series), window, horizon, stride)
    ours_x = make_windows(series, window, stride, count)
    ours_y = window_targets(targets, window, horizon, stride, count)
    dataset = keras.utils.timeseries_dataset_from_array(
        series[:-horizon],
        targets[window - 1 + horizon :],
        sequence_length=window,
        sequence_stride=stride,
        batch_size=1000,
        shuffle=False,
    )
    keras_x, keras_y = (np.asarray(a) for a in next(iter(dataset)))
    assert np.array_equal(ours_x, keras_x)
    assert np.array_equal(ours_y, keras_y)


def test_reading_windows_in_chunks_gives_every_window_once(tmp_path):
    from dltool.data.timeseries import iter_window_chunks, make_windows, read_series

    path = write_series(tmp_path / "s.csv", steps=50)
    whole = make_windows(read_series(path, ["value", "other"]), 7)
    chunks = list(iter_window_chunks(path, ["value", "other"], window=7, chunk=9))
    assert np.array_equal(np.concatenate([x for _, x in chunks]), whole)
    firsts = [first for first, _ in chunks]
    assert firsts[0] == 6  # the first window ends at data row 6
    assert all(later == first + len(x) for (first, x), later in zip(chunks, firsts[1:]))


def test_splits_are_in_time_order(tmp_path):
    from dltool.data import prepare_data

    steps = 100
    (tmp_path / "t.csv").write_text("value\n" + "".join(f"{t}\n" for t in range(steps)))  # each value is its time
    data = prepare_data(_config(tmp_path / "t.csv", ["data.standardize=false"]))
    times = {
        name: y[:, 0].astype(int).tolist()
        for name, y in (("train", data.y_train), ("val", data.y_val), ("test", data.y_test))
    }
    assert times["train"] == sorted(times["train"]) and times["test"] == sorted(times["test"])
    assert max(times["train"]) < min(times["val"]) <= max(times["val"]) < min(times["test"])
    assert times["test"][-1] == steps - 1
    assert data.x_test[0, :, 0].tolist() == list(range(times["test"][0] - 12, times["test"][0]))
    assert "in time order" in data.sizes()["test_split"]
    assert prepare_data(_config(tmp_path / "t.csv")).preprocessing.mean == [
        pytest.approx(36.5)
    ]  # per feature, not per step


@pytest.mark.parametrize(
    "overrides, error, phrase",
    [
        (["data.target=valeu"], ConfigError, "no column 'valeu'"),
        (["data.features=[value, temp]"], ConfigError, "no column 'temp'"),
        (["data.window=240"], DataError, "240 rows give 0 window(s) of 240 steps"),
        (["model.input_shape=[12, 2]"], ConfigError, "set model.input_shape: [12, 1]"),
    ],
)
@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_series_mistakes(series, overrides, error, phrase):
    from dltool.commands.train import prepare

    with pytest.raises(error) as info:
        prepare(_config(series, overrides))
    assert phrase in str(info.value)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_standardize_targets_is_for_regression_only(series, tmp_path):
    from dltool.commands.train import prepare

    config = _config(series, ["train.loss=sparse_categorical_crossentropy", "data.target=other"])
    with pytest.raises(ConfigError, match="standardize_targets applies to regression targets only"):
        prepare(config)


# --------------------------------------------------------------------------- a trained run
def test_the_model_ends_in_target_units(forecast_run):
    from dltool.saved_run import SavedRun

    model = SavedRun.open(forecast_run).load_model()
    assert model.layers[-1].name == "target_units"
    assert model.layers[-1].offset[0] == pytest.approx(52, abs=6)  # the training targets' mean
    metrics = forecast_run.read_json("metrics.json")
    assert metrics["test"]["loss"] < 50  # in target units; the series' variance is about 50


def test_predict_on_recent_values_gives_one_forecast_per_window(forecast_run, tmp_path):
    from dltool.commands.predict import predict

    recent = write_series(tmp_path / "recent.csv", steps=15, start=240)
    result = predict(forecast_run, [recent], output=tmp_path / "out.csv")
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert result.rows == 15 - 12 + 1
    assert list(rows[0]) == ["input", "row", "value"]
    assert [int(r["row"]) for r in rows] == [11, 12, 13, 14]  # the data row that ends each window
    assert all(20 < float(r["value"]) < 80 for r in rows)


def test_predict_refuses_too_few_rows_and_missing_columns(forecast_run, tmp_path):
    from dltool.commands.predict import predict

    with pytest.raises(InputError, match="expected at least 12 rows"):
        predict(forecast_run, [write_series(tmp_path / "short.csv", steps=5)])
    (tmp_path / "wrong.csv").write_text("date,temp\n1,2\n")
    with pytest.raises(InputError, match="missing column 'value'"):
        predict(forecast_run, [tmp_path / "wrong.csv"])


def test_evaluate_on_its_test_split_and_on_a_later_stretch(forecast_run, tmp_path):
    from dltool.commands.evaluate import evaluate

    own = evaluate(forecast_run)
    assert own["samples"] == forecast_run.info["data"]["test"]
    assert own["regression"]["mse"] == pytest.approx(forecast_run.read_json("metrics.json")["test"]["loss"], rel=1e-4)
    later = evaluate(forecast_run, data_file=write_series(tmp_path / "later.csv", steps=40, start=240))
    assert later["samples"] == 40 - 12 - 1 + 1
