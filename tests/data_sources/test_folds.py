"""k-fold cross-validation splits (data.fold, dltool.data.folds): stratified, grouped, repeated, deterministic;
a fold's rows are the run's test split (issue 25). No TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_support import IRIS_CONFIG

from dltool.config import config_from_text
from dltool.data.folds import fold_indices
from dltool.data.splits import check_folds, prepare_data
from dltool.errors import ConfigError, DataError

IMBALANCED = np.array([0] * 60 + [1] * 30 + [2] * 10)


def _folds(y, folds=5, **kwargs):
    return [fold_indices(y, folds=folds, number=n, **kwargs)[:2] for n in range(1, folds + 1)]


def test_the_test_folds_partition_the_rows_and_keep_each_class_share():
    splits = _folds(IMBALANCED, seed=3, stratified=True)
    tests = [test for _, test in splits]
    assert sorted(np.concatenate(tests).tolist()) == list(range(100))  # every row in exactly one test fold
    for train, test in splits:
        assert not set(train) & set(test) and len(train) + len(test) == 100
        assert np.bincount(IMBALANCED[test], minlength=3).tolist() == [12, 6, 2]  # 60/30/10 over 5 folds


def test_unstratified_folds_do_not_keep_the_class_share():
    counts = [np.bincount(IMBALANCED[test], minlength=3).tolist() for _, test in _folds(IMBALANCED, seed=3)]
    assert any(c != [12, 6, 2] for c in counts)


@pytest.mark.parametrize("stratified", [True, False])
def test_a_group_never_sits_on_both_sides_of_a_fold(stratified):
    groups = np.repeat(np.arange(25), 4)  # 25 groups of 4 rows
    y = np.tile([0, 1], 50)
    for train, test in _folds(y, seed=1, stratified=stratified, groups=groups):
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([t for _, t in _folds(y, seed=1, groups=groups)]).tolist()) == list(range(100))


def test_folds_are_deterministic_and_each_repeat_reshuffles():
    first = _folds(IMBALANCED, seed=7, stratified=True, repeat=1)
    again = _folds(IMBALANCED, seed=7, stratified=True, repeat=1)
    second = _folds(IMBALANCED, seed=7, stratified=True, repeat=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))
    # repeat r is seed + r - 1: repeat 2 of seed 7 is repeat 1 of seed 8
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(second, _folds(IMBALANCED, seed=8, stratified=True)))


def test_more_folds_than_members_of_every_class_is_a_data_error():
    with pytest.raises(DataError, match=r"cannot cut 4 rows into 5 folds: .*; use fewer folds \(--folds\)"):
        fold_indices(np.array([0, 0, 1, 1]), folds=5, number=1, stratified=True)


def test_a_class_with_fewer_members_than_folds_is_a_warning():
    _, _, notes = fold_indices(np.array([0] * 20 + [1] * 3), folds=5, number=1, stratified=True)
    assert any("least populated class" in note for note in notes)


def _iris(fold: dict, template: str = IRIS_CONFIG):
    return config_from_text(template, source="iris.yaml", overrides=[f"data.fold={json.dumps(fold)}"])


def test_a_fold_is_the_runs_test_split_and_validation_comes_from_the_other_folds():
    sizes = [prepare_data(_iris({"number": n, "of": 3})).sizes() for n in (1, 2, 3)]
    assert [s["test"] for s in sizes] == [50, 50, 50]
    assert sizes[0]["train"] + sizes[0]["validation"] == 100 and sizes[0]["validation"] == 20  # data.validation 0.2
    assert sizes[1]["test_split"] == "fold 2 of 3, repeat 1 (stratified, seed 0)"


def test_a_builtin_test_split_is_left_out_of_the_folds(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.random((40, 4)),
        y_train=np.arange(40) % 2,
        x_test=rng.random((10, 4)),
        y_test=np.arange(10) % 2,
    )
    template = IRIS_CONFIG.replace(
        "{source: sklearn, name: iris, standardize: true, test: 0.2, validation: 0.2}",
        f"{{source: npz, path: {json.dumps(str(path))}, validation: null}}",
    )
    data = prepare_data(_iris({"number": 1, "of": 4}, template))
    assert (data.sizes()["train"], data.sizes()["test"]) == (30, 10)
    assert data.sizes()["test_split"].endswith("seed 0, builtin test split left out)")


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_a_group_column_keeps_its_rows_together_and_is_no_feature(tmp_path, source):
    rng = np.random.default_rng(1)
    rows = [f"p{row // 3},{row},{rng.random():.4f},{'yes' if row % 2 else 'no'}" for row in range(60)]
    path = tmp_path / "patients.csv"
    path.write_text("patient,a,b,label\n" + "\n".join(rows) + "\n")  # a: the row's number, to find it again
    if source == "parquet":
        csv = pytest.importorskip("pyarrow.csv", reason="parquet needs pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(csv.read_csv(path), tmp_path / "patients.parquet")
        path = tmp_path / "patients.parquet"
    template = IRIS_CONFIG.replace(
        "{source: sklearn, name: iris, standardize: true, test: 0.2, validation: 0.2}",
        f"{{source: {source}, path: {json.dumps(str(path))}, target: label, validation: null}}",
    ).replace("input_shape: [4]", "input_shape: [2]")
    patients = np.array([f"p{row // 3}" for row in range(60)])
    held_out = []
    for number in (1, 2, 3):
        data = prepare_data(_iris({"number": number, "of": 3, "group": "patient"}, template))
        assert data.preprocessing.feature_names == ["a", "b"]
        held_out.append(set(patients[data.raw_x_test[:, 0].astype(int)]))
    assert held_out[0].isdisjoint(held_out[1]) and held_out[1].isdisjoint(held_out[2])
    assert set().union(*held_out) == set(patients)


@pytest.mark.parametrize(
    "fold, message",
    [
        (
            {"number": 4, "of": 3},
            "data.fold: expected a fold number from 1 to 3 (of: 3), received number: 4",
        ),
        ({"number": 1, "of": 1}, "data.fold.of: expected an integer >= 2, received 1"),
        (
            {"number": 1, "of": 3, "group": "patient"},
            "data: grouped folds need a csv or parquet source, received fold.group 'patient' with data.source "
            "'sklearn', which has no columns: leave out --group",
        ),
    ],
)
def test_bad_folds_are_config_errors(fold, message):
    with pytest.raises(ConfigError) as caught:
        _iris(fold)
    assert message in str(caught.value)


def test_a_group_that_is_the_target_or_missing_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    template = IRIS_CONFIG.replace(
        "{source: sklearn, name: iris, standardize: true, test: 0.2, validation: 0.2}",
        f"{{source: csv, path: {json.dumps(str(path))}, target: label}}",
    ).replace("input_shape: [4]", "input_shape: [1]")
    with pytest.raises(ConfigError, match="received fold.group 'label', the target column"):
        _iris({"number": 1, "of": 2, "group": "label"}, template)
    with pytest.raises(ConfigError, match="no column 'patient' in"):
        check_folds(_iris({"number": 1, "of": 2, "group": "patient"}, template))


def test_a_streamed_source_cannot_be_cross_validated(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    template = IRIS_CONFIG.replace(
        "{source: sklearn, name: iris, standardize: true, test: 0.2, validation: 0.2}",
        f"{{source: csv, path: {json.dumps(str(path))}, target: label, stream: true}}",
    ).replace("input_shape: [4]", "input_shape: [1]")
    with pytest.raises(
        ConfigError, match="received fold with data.stream: true; cross-validation needs the data in memory"
    ):
        _iris({"number": 1, "of": 2}, template)
