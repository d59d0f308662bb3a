"""dltool.data: every data source on tiny data, splits and preprocessing, without Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def make_config(data: dict, input_shape, loss: str = "mse", seed: int = 0, source: str = "data.yaml"):
    """A validated ExperimentConfig around ``data`` (YAML text, so errors can name lines)."""
    text = yaml.safe_dump(
        {
            "name": "data-test",
            "seed": seed,
            "data": data,
            "model": {"input_shape": input_shape, "layers": [{"Dense": {"units": 1}}]},
            "train": {"loss": loss},
        },
        sort_keys=False,
    )
    return config_from_text(text, source=source)


CLASSIFY = "sparse_categorical_crossentropy"


# --------------------------------------------------------------------------- sklearn
def test_sklearn_iris():
    config = make_config({"source": "sklearn", "name": "iris", "test": 0.2, "validation": 0.2}, [4], CLASSIFY)
    prepared = prepare_data(config)
    assert prepared.x_train.shape == (96, 4) and prepared.x_val.shape == (24, 4) and prepared.x_test.shape == (30, 4)
    assert prepared.y_train.shape == (96,) and prepared.y_train.dtype == np.int32
    assert prepared.x_train.dtype == np.float32
    assert set(np.unique(np.concatenate([prepared.y_train, prepared.y_val, prepared.y_test]))) == {0, 1, 2}
    state = prepared.preprocessing
    assert state.class_names == ["setosa", "versicolor", "virginica"]
    assert state.feature_names[0] == "sepal length (cm)" and len(state.feature_names) == 4
    assert state.task == "classification" and state.input_shape == [4]
    assert prepared.test_source == "fraction 0.2 of the data (seed 0)"
    assert not prepared.validation_is_test


# --------------------------------------------------------------------------- synthetic
LINEAR = {
    "source": "synthetic",
    "generator": "linear",
    "n_samples": 100,
    "n_features": 1,
    "weights": 3,
    "bias": 0,
    "noise": {"distribution": "uniform", "low": 0, "high": 1},
    "test": 0.2,
    "validation": None,
}


def test_synthetic_linear_shapes():
    prepared = prepare_data(make_config(LINEAR, [1]))
    assert prepared.x_train.shape == (80, 1) and prepared.y_train.shape == (80, 1)
    assert prepared.x_test.shape == (20, 1) and prepared.y_test.shape == (20, 1)
    assert prepared.x_val is None and prepared.y_val is None
    assert prepared.y_train.dtype == np.float32
    assert prepared.preprocessing.task == "regression"
    assert prepared.preprocessing.feature_names == ["x0"]


def test_synthetic_linear_reproduces_the_least_squares_fit():
    """seed 0, y = 3x + U(0, 1): the training split's least-squares line is weight 2.91, bias 0.58."""
    prepared = prepare_data(make_config(LINEAR, [1], seed=0))
    design = np.hstack([prepared.x_train, np.ones((len(prepared.x_train), 1))]).astype(np.float64)
    (weight, bias), *_ = np.linalg.lstsq(design, prepared.y_train.astype(np.float64).ravel(), rcond=None)
    assert weight == pytest.approx(2.91, abs=0.005)
    assert bias == pytest.approx(0.58, abs=0.005)
    test_design = np.hstack([prepared.x_test, np.ones((len(prepared.x_test), 1))])
    test_mse = float(np.mean((test_design @ np.array([weight, bias]) - prepared.y_test.ravel()) ** 2))
    assert test_mse == pytest.approx(0.091, abs=0.001)  # as configs/linear_regression.yaml promises


def test_synthetic_is_deterministic_per_seed():
    first = prepare_data(make_config(LINEAR, [1], seed=0))
    again = prepare_data(make_config(LINEAR, [1], seed=0))
    other = prepare_data(make_config(LINEAR, [1], seed=1))
    assert first.fingerprint == again.fingerprint
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert first.fingerprint != other.fingerprint


def test_synthetic_own_seed_wins_over_the_top_level_seed():
    pinned = {**LINEAR, "seed": 7, "split_seed": 3}
    a = prepare_data(make_config(pinned, [1], seed=0))
    b = prepare_data(make_config(pinned, [1], seed=99))
    assert a.fingerprint == b.fingerprint


def test_synthetic_several_features():
    data = {
        "source": "synthetic",
        "n_samples": 50,
        "n_features": 3,
        "weights": [1.0, -2.0, 0.5],
        "bias": 1,
        "noise": {"std": 0},
        "test": 0.2,
        "validation": 0.25,
    }
    prepared = prepare_data(make_config(data, [3]))
    assert prepared.x_train.shape == (30, 3) and prepared.x_val.shape == (10, 3) and prepared.x_test.shape == (10, 3)
    expected = prepared.x_train @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 1
    np.testing.assert_allclose(prepared.y_train, expected, rtol=1e-5, atol=1e-5)


def test_synthetic_regression_generator():
    data = {
        "source": "synthetic",
        "generator": "regression",
        "n_samples": 40,
        "n_features": 2,
        "test": 0.25,
        "validation": None,
    }
    prepared = prepare_data(make_config(data, [2]))
    assert prepared.x_train.shape == (30, 2) and prepared.y_train.shape == (30, 1) and prepared.x_test.shape == (10, 2)


# --------------------------------------------------------------------------- npz / npy
def tiny_classification(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)), rng.integers(0, 2, size=n)


def test_npz_keras_layout_uses_its_own_test_split(tmp_path):
    x, y = tiny_classification(30)
    x_test, y_test = tiny_classification(10, seed=1)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    prepared = prepare_data(make_config({"source": "npz", "path": str(path), "validation": None}, [3], CLASSIFY))
    assert prepared.test_source == "builtin"
    assert prepared.x_train.shape == (30, 3) and prepared.x_test.shape == (10, 3)
    np.testing.assert_allclose(prepared.x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(prepared.y_test, y_test)
    assert prepared.preprocessing.class_names == ["0", "1"]


def test_npz_x_y_is_split_by_fraction(tmp_path):
    x, y = tiny_classification(40)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    prepared = prepare_data(
        make_config({"source": "npz", "path": str(path), "test": 0.25, "validation": 0.2}, [3], CLASSIFY)
    )
    assert prepared.x_test.shape == (10, 3) and prepared.x_train.shape == (24, 3) and prepared.x_val.shape == (6, 3)
    assert prepared.test_source == "fraction 0.25 of the data (seed 0)"


def test_npz_builtin_test_without_one_is_a_config_error(tmp_path):
    x, y = tiny_classification(20)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    config = make_config({"source": "npz", "path": str(path), "test": "builtin"}, [3], CLASSIFY)
    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    assert info.value.path == "data.test"
    assert "has no test split of its own; set data.test to a fraction such as 0.2" in str(info.value)


def test_npz_with_wrong_arrays_and_missing_file(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, inputs=np.zeros((4, 3)))
    with pytest.raises(DataError, match="expected arrays x_train and y_train .* received inputs"):
        prepare_data(make_config({"source": "npz", "path": str(path)}, [3]))
    with pytest.raises(ConfigError) as info:
        prepare_data(make_config({"source": "npz", "path": str(tmp_path / "none.npz")}, [3]))
    assert info.value.path == "data.path" and "data file not found" in str(info.value)


def test_npy_x_and_y_files(tmp_path):
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = x.sum(axis=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    data = {
        "source": "npy",
        "x": str(tmp_path / "x.npy"),
        "y": str(tmp_path / "y.npy"),
        "test": 0.2,
        "validation": None,
    }
    prepared = prepare_data(make_config(data, [2]))
    assert prepared.x_train.shape == (8, 2) and prepared.y_train.shape == (8, 1) and prepared.x_test.shape == (2, 2)
    np.testing.assert_allclose(prepared.y_train.ravel(), prepared.x_train.sum(axis=1))


def test_npy_length_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "y.npy", np.zeros(4))
    data = {"source": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}
    with pytest.raises(DataError, match="train inputs and targets differ in length: 5 inputs, 4 targets"):
        prepare_data(make_config(data, [2]))


# --------------------------------------------------------------------------- csv
IRIS_CSV = "sepal,petal,species\n" + "".join(
    f"{1 + i * 0.1:.1f},{2 + (i % 3):.1f},{['virginica', 'setosa', 'versicolor'][i % 3]}\n" for i in range(30)
)


def test_csv_string_class_labels(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(IRIS_CSV)
    config = make_config(
        {"source": "csv", "path": str(path), "target": "species", "test": 0.2, "validation": None}, [2], CLASSIFY
    )
    prepared = prepare_data(config)
    state = prepared.preprocessing
    assert state.class_names == ["setosa", "versicolor", "virginica"]  # sorted
    assert state.feature_names == ["sepal", "petal"]
    assert state.target_names == ["species"]
    assert prepared.x_train.shape == (24, 2) and prepared.x_test.shape == (6, 2)
    # petal is 2 + (i % 3) and species cycles virginica, setosa, versicolor: check the mapping row by row.
    expected = {2.0: 2, 3.0: 0, 4.0: 1}
    for x, label in zip(
        np.concatenate([prepared.x_train, prepared.x_test]), np.concatenate([prepared.y_train, prepared.y_test])
    ):
        assert expected[float(x[1])] == label


def test_csv_features_subset_and_numeric_labels(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("a,b,c,label\n" + "".join(f"{i},{i * 2},{-i},{1 + i % 3}\n" for i in range(20)))
    config = make_config(
        {
            "source": "csv",
            "path": str(path),
            "target": "label",
            "features": ["c", "a"],
            "test": 0.2,
            "validation": None,
        },
        [2],
        CLASSIFY,
    )
    prepared = prepare_data(config)
    assert prepared.preprocessing.feature_names == ["c", "a"]
    np.testing.assert_array_equal(prepared.x_train[:, 0], -prepared.x_train[:, 1])
    assert prepared.preprocessing.class_names == ["1", "2", "3"]  # 1-based labels mapped to 0..2
    assert set(np.unique(prepared.y_train)) <= {0, 1, 2}


def test_csv_missing_target_column(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(IRIS_CSV)
    config = make_config({"source": "csv", "path": str(path), "target": "specis"}, [2], CLASSIFY, source="cfg.yaml")
    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    err = info.value
    assert err.path == "data.target"
    assert str(err) == (
        f"data.target: no column 'specis' in {path}; did you mean 'species'?; the columns are sepal, petal, species"
    )
    located = config.locate(err)
    line = config._line_map.line_of("data.target")
    assert line is not None
    assert str(located).startswith(f"cfg.yaml:{line}: data.target: no column 'specis'")


def test_csv_missing_feature_column(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(IRIS_CSV)
    config = make_config(
        {"source": "csv", "path": str(path), "target": "species", "features": ["sepal", "petl"]}, [2], CLASSIFY
    )
    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    assert info.value.path == "data.features"
    assert "missing column 'petl'; did you mean 'petal'?" in str(info.value)


def test_csv_non_numeric_feature_cell(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n5,oops,0\n7,8,1\n")
    config = make_config({"source": "csv", "path": str(path), "target": "y"}, [2], CLASSIFY)
    with pytest.raises(DataError) as info:
        prepare_data(config)
    assert str(info.value) == f"{path}:4: column 'b': expected a number, received 'oops'"


def test_csv_empty_cell_and_short_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,,1\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: column 'b': expected a number, received an empty cell$"):
        prepare_data(make_config({"source": "csv", "path": str(path), "target": "y"}, [2], CLASSIFY))
    path.write_text("a,b,y\n1,2,0\n3\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: expected at least 2 fields, received 1$"):
        prepare_data(make_config({"source": "csv", "path": str(path), "target": "y"}, [2], CLASSIFY))


def test_csv_bad_cell_line_counts_blank_lines(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("a,b,y\n1,2,0\n\n5,oops,0\n")
    with pytest.raises(DataError) as info:
        prepare_data(make_config({"source": "csv", "path": str(path), "target": "y"}, [2], CLASSIFY))
    assert str(info.value) == f"{path}:4: column 'b': expected a number, received 'oops'"


def test_csv_string_targets_with_a_regression_loss(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(IRIS_CSV)
    with pytest.raises(DataError, match="expected numeric targets for a regression loss, received 'virginica'"):
        prepare_data(make_config({"source": "csv", "path": str(path), "target": "species"}, [2], "mse"))


# --------------------------------------------------------------------------- preprocessing and splits
def test_standardize_is_fitted_on_the_training_split_only():
    base = {**LINEAR, "n_features": 1, "n_samples": 60, "test": 0.5}
    raw = prepare_data(make_config(base, [1]))
    standardized = prepare_data(make_config({**base, "standardize": True}, [1]))
    state = standardized.preprocessing
    train_mean, train_std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    np.testing.assert_allclose(state.mean, train_mean, rtol=1e-5)
    np.testing.assert_allclose(state.std, train_std, rtol=1e-5)
    all_mean = np.concatenate([raw.x_train, raw.x_test]).mean(axis=0)
    assert abs(float(all_mean[0]) - state.mean[0]) > 1e-4  # the test half was not used
    np.testing.assert_allclose(standardized.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(standardized.x_train.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(standardized.x_test, (raw.x_test - train_mean) / train_std, rtol=1e-4, atol=1e-5)


def test_standardize_keeps_a_constant_feature_finite(tmp_path):
    x = np.column_stack([np.ones(20), np.arange(20.0)])
    np.savez(tmp_path / "c.npz", x=x, y=np.arange(20.0))
    prepared = prepare_data(make_config({"source": "npz", "path": str(tmp_path / "c.npz"), "standardize": True}, [2]))
    assert np.isfinite(prepared.x_train).all()
    assert prepared.preprocessing.std[0] == 1.0


def test_scale_divides_inputs(tmp_path):
    x = np.full((10, 2, 2), 255, dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(10) % 2)
    config = make_config(
        {"source": "npz", "path": str(tmp_path / "img.npz"), "scale": 255, "validation": None}, [2, 2], CLASSIFY
    )
    prepared = prepare_data(config)
    assert prepared.preprocessing.scale == 255
    np.testing.assert_array_equal(prepared.x_train, np.ones((8, 2, 2), dtype=np.float32))
    assert prepared.x_train.dtype == np.float32


def test_validation_test_reuses_the_test_split():
    prepared = prepare_data(make_config({**LINEAR, "validation": "test"}, [1]))
    assert prepared.validation_is_test
    assert prepared.x_val is prepared.x_test and prepared.y_val is prepared.y_test
    assert prepared.x_train.shape == (80, 1)  # nothing else held out


def test_split_seed_changes_only_the_split():
    a = prepare_data(make_config({**LINEAR, "seed": 5}, [1], seed=0))
    b = prepare_data(make_config({**LINEAR, "seed": 5, "split_seed": 1}, [1], seed=0))
    assert a.fingerprint == b.fingerprint  # the fingerprint is of the data as loaded, before splitting
    assert not np.array_equal(a.x_test, b.x_test)
    np.testing.assert_allclose(
        np.sort(np.concatenate([a.x_train, a.x_test]).ravel()), np.sort(np.concatenate([b.x_train, b.x_test]).ravel())
    )


def test_input_shape_mismatch_names_both_shapes():
    config = make_config({**LINEAR, "n_features": 4, "weights": 1}, [3], source="shape.yaml")
    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    err = info.value
    assert err.path == "model.input_shape"
    message = str(err)
    assert "[3]" in message and "[4]" in message
    assert "100 samples of shape [4]" in message
    assert "set model.input_shape: [4]" in message
    line = config._line_map.line_of("model.input_shape")
    assert str(config.locate(err)).startswith(f"shape.yaml:{line}: model.input_shape: ")


def test_too_few_samples_to_split():
    data = {**LINEAR, "n_samples": 2, "test": 0.2}
    with pytest.raises(DataError, match="cannot hold out a fraction 0.2 of 2 samples"):
        prepare_data(make_config(data, [1]))


# --------------------------------------------------------------------------- keras source from a local file
def test_keras_source_with_a_local_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, size=(20, 4, 4), dtype=np.uint8),
        y_train=(np.arange(20) % 10).reshape(-1, 1),
        x_test=rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8),
        y_test=np.arange(6).astype(np.uint8),
    )
    config = make_config(
        {"source": "keras", "name": "mnist", "path": str(path), "scale": 255, "test": "builtin", "validation": "test"},
        [4, 4],
        CLASSIFY,
    )
    prepared = prepare_data(config)
    assert prepared.test_source == "builtin"
    assert prepared.x_train.shape == (20, 4, 4) and prepared.x_test.shape == (6, 4, 4)
    assert prepared.y_train.shape == (20,)  # (n, 1) labels are flattened
    np.testing.assert_array_equal(prepared.y_test, np.arange(6))
    assert prepared.preprocessing.class_names == [str(d) for d in range(10)]
    assert prepared.x_train.max() <= 1.0
    assert prepared.validation_is_test


def test_keras_fashion_mnist_names_from_a_local_npz(tmp_path):
    path = tmp_path / "fm.npz"
    np.savez(path, x_train=np.zeros((10, 2, 2)), y_train=np.arange(10), x_test=np.zeros((3, 2, 2)), y_test=np.arange(3))
    config = make_config(
        {"source": "keras", "name": "fashion_mnist", "path": str(path), "validation": None}, [2, 2], CLASSIFY
    )
    assert prepare_data(config).preprocessing.class_names[:2] == ["T-shirt/top", "Trouser"]


def test_keras_boston_housing_x_y_npz_is_split_like_keras(tmp_path):
    path = tmp_path / "boston_housing.npz"
    np.savez(path, x=np.arange(50 * 13, dtype=np.float64).reshape(50, 13), y=np.arange(50.0))
    config = make_config({"source": "keras", "name": "boston_housing", "path": str(path), "validation": None}, [13])
    prepared = prepare_data(config)
    assert prepared.test_source == "builtin"
    assert prepared.x_train.shape == (40, 13) and prepared.x_test.shape == (10, 13)


def test_keras_source_with_a_missing_local_file(tmp_path):
    config = make_config({"source": "keras", "name": "mnist", "path": str(tmp_path / "nope.npz")}, [28, 28], CLASSIFY)
    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    assert info.value.path == "data.path" and "data file not found" in str(info.value)


# --------------------------------------------------------------------------- no Keras
@pytest.mark.subprocess
@pytest.mark.slow
def test_local_sources_do_not_import_keras(tmp_path):
    np.savez(
        tmp_path / "k.npz",
        x_train=np.zeros((10, 2, 2)),
        y_train=np.arange(10),
        x_test=np.zeros((4, 2, 2)),
        y_test=np.arange(4),
    )
    (tmp_path / "t.csv").write_text(IRIS_CSV)
    code = f"""
import sys
from tests.data_sources.test_data_sources import make_config, LINEAR, CLASSIFY
from dltool.data import prepare_data
prepare_data(make_config(LINEAR, [1]))
prepare_data(make_config({{"source": "sklearn", "name": "iris"}}, [4], CLASSIFY))
prepare_data(make_config({{"source": "keras", "name": "mnist", "path": {str(tmp_path / "k.npz")!r}}}, [2, 2], CLASSIFY))
prepare_data(make_config({{"source": "csv", "path": {str(tmp_path / "t.csv")!r}, "target": "species"}}, [2], CLASSIFY))
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("source", ["csv", "npz", "text", "timeseries"])
def test_a_folder_given_as_data_path_is_called_a_folder(tmp_path, source):
    from dltool.config import config_from_text
    from dltool.data import prepare_data

    extra = {"csv": "target: y", "npz": "", "text": "text: t, target: y", "timeseries": "target: v, window: 3"}[source]
    config = config_from_text(f"""
name: folder
data: {{source: {source}, path: {json.dumps(str(tmp_path))}{", " + extra if extra else ""}}}
model: {{input_shape: [1], layers: [{"TextVectorization, " if source == "text" else ""}{{Dense: {{units: 1}}}}]}}
train: {{loss: mse}}
""")
    with pytest.raises(ConfigError) as caught:
        prepare_data(config)
    assert caught.value.path == "data.path"
    assert f"{tmp_path} is a folder; expected " in str(caught.value) and "file not found" not in str(caught.value)
