"""dltool.data.resampling: data.resample on the training split only (in memory, streamed tables and image folders),
its counts and determinism; data.sample_weight read from CSV and Parquet, in memory and streamed (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.data.resampling import ResamplePlan
from dltool.data.streaming import TEST, TRAIN, VALIDATION
from dltool.errors import ConfigError, DataError


def write_rows(path: Path, rows: int = 500, minority: float = 0.1, seed: int = 0, weight=None) -> Path:
    """Columns id (the row number: every row told apart), x, label ('common' or, a share ``minority``, 'rare');
    with ``weight`` (a function of the row number), a column w."""
    rng = np.random.default_rng(seed)
    rare = rng.random(rows) < minority
    with path.open("w") as handle:
        handle.write("id,x,label" + (",w" if weight else "") + "\n")
        for i in range(rows):
            extra = f",{weight(i)}" if weight else ""
            handle.write(f"{i},{rng.normal() + 2 * rare[i]:.4f},{'rare' if rare[i] else 'common'}{extra}\n")
    return path


def config(path: Path, resample: str | None = "{oversample: minority}", stream="false", seed=7, extra=""):
    line = f", resample: {resample}" if resample else ""
    return config_from_text(f"""
name: resampled
seed: {seed}
data: {{source: csv, path: {json.dumps(str(path))}, target: label, test: 0.2, validation: 0.2, stream: {stream}{line}{extra}}}
model: {{input_shape: [2], layers: [{{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, batch_size: 16}}
""")


def ids(x: np.ndarray) -> np.ndarray:
    return x[:, 0].astype(int)


# --------------------------------------------------------------------------- the plan
def test_a_plan_keeps_every_row_whole_times_and_draws_the_rest_without_replacement():
    plan = ResamplePlan("oversample", "minority", ["a", "b"], before=[10, 3], after=[10, 10], seed=1)
    labels = np.array([0] * 10 + [1] * 3)
    repeats = plan.repeats(labels)
    assert repeats[:10].tolist() == [1] * 10
    assert sorted(repeats[10:].tolist()) == [3, 3, 4]  # 10 = 3 x 3 + 1 drawn once more
    # Read in chunks, with the rows of each class counted across them: the same repeats.
    seen = np.zeros(2, dtype=np.int64)
    chunked = np.concatenate(
        [plan.repeats(labels[:5], seen), plan.repeats(labels[5:11], seen), plan.repeats(labels[11:], seen)]
    )
    assert chunked.tolist() == repeats.tolist()
    assert np.bincount(labels[plan.indices(labels)]).tolist() == [10, 10]


# --------------------------------------------------------------------------- in memory
def test_oversample_minority_brings_every_class_up_to_the_largest_on_the_training_split_only(tmp_path):
    path = write_rows(tmp_path / "d.csv")
    plain, resampled = prepare_data(config(path, None)), prepare_data(config(path))
    before = np.bincount(plain.y_train).tolist()
    assert before[1] < before[0] / 4
    assert resampled.class_counts()["train"] == [before[0], before[0]]
    assert resampled.resampling.record() == {
        "mode": "oversample",
        "setting": "minority",
        "seed": 7,
        "before": {"common": before[0], "rare": before[1]},
        "after": {"common": before[0], "rare": before[0]},
    }
    # Validation and test are the splits drawn without resampling, row for row.
    assert np.array_equal(resampled.x_val, plain.x_val) and np.array_equal(resampled.y_val, plain.y_val)
    assert np.array_equal(resampled.x_test, plain.x_test) and np.array_equal(resampled.y_test, plain.y_test)
    # Every training row of the resampled split is a training row: no repeated row reaches validation or test.
    train, held_out = set(ids(resampled.x_train)), set(ids(plain.x_val)) | set(ids(plain.x_test))
    assert train == set(ids(plain.x_train)) and not train & held_out
    # Every common row once; every rare row as often as the plan says, its features with it.
    kept = np.bincount(ids(resampled.x_train), minlength=500)
    assert set(kept[ids(plain.x_train)[plain.y_train == 0]]) == {1}
    assert set(kept[ids(plain.x_train)[plain.y_train == 1]]) <= {before[0] // before[1], before[0] // before[1] + 1}
    rows = {int(i): (x, y) for i, x, y in zip(ids(plain.x_train), plain.x_train[:, 1], plain.y_train)}
    assert all(
        rows[int(i)] == (x, y) for i, x, y in zip(ids(resampled.x_train), resampled.x_train[:, 1], resampled.y_train)
    )


def test_resampling_is_seeded_by_the_run(tmp_path):
    path = write_rows(tmp_path / "d.csv")
    one, two = prepare_data(config(path)), prepare_data(config(path))
    assert np.array_equal(one.x_train, two.x_train) and np.array_equal(one.y_train, two.y_train)
    other = prepare_data(config(path, seed=8, extra=", split_seed: 7"))  # the same split, another run seed
    assert np.array_equal(np.sort(ids(other.x_train)[other.y_train == 0]), np.sort(ids(one.x_train)[one.y_train == 0]))
    assert not np.array_equal(np.sort(ids(other.x_train)), np.sort(ids(one.x_train)))


def test_undersample_majority_and_factors(tmp_path):
    path = write_rows(tmp_path / "d.csv")
    before = np.bincount(prepare_data(config(path, None)).y_train).tolist()
    under = prepare_data(config(path, "{undersample: majority}"))
    assert under.class_counts()["train"] == [before[1], before[1]]
    assert len(set(ids(under.x_train))) == len(under.x_train)  # dropped, never repeated
    assert under.resampling.describe() == (
        f"undersample majority: {sum(before)} -> {2 * before[1]} training samples "
        f"(common {before[0]} -> {before[1]}, rare {before[1]} -> {before[1]})"
    )
    factors = prepare_data(config(path, "{oversample: {rare: 2.5}}"))
    assert factors.class_counts()["train"] == [before[0], round(before[1] * 2.5)]
    halved = prepare_data(config(path, "{undersample: {common: 0.5}}"))
    assert halved.class_counts()["train"] == [round(before[0] * 0.5), before[1]]


def test_an_unknown_label_is_a_config_error_with_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as caught:
        prepare_data(config(write_rows(tmp_path / "d.csv"), "{oversample: {rair: 3}}"))
    assert str(caught.value) == (
        "data.resample.oversample.rair: unknown class 'rair' (the run's classes: common, rare); did you mean 'rare'?"
    )


# --------------------------------------------------------------------------- streamed
def epoch_counts(data, epoch: int, batch_size: int = 16) -> tuple[list[int], list[np.ndarray]]:
    data.start_epoch(epoch)
    batches = list(data.iter_split(TRAIN, batch_size, True))
    labels = np.concatenate([y for _, y, *_ in batches])
    return np.bincount(labels, minlength=2).tolist(), [x for x, *_ in batches]


def test_a_streamed_csv_reads_the_resampled_counts_every_epoch(tmp_path):
    path = write_rows(tmp_path / "d.csv", rows=700)
    plain = prepare_data(config(path, None, stream="true"))
    data = prepare_data(config(path, stream="true"))
    before = plain.class_counts()["train"]
    assert data.class_counts()["train"] == [before[0], before[0]]
    assert data.sizes()["train"] == 2 * before[0]
    first, x_first = epoch_counts(data, 1)
    second, x_second = epoch_counts(data, 2)
    assert first == second == [before[0], before[0]]
    # The same rows each epoch, shuffled anew; none of them a validation or test row.
    one, two = np.concatenate(x_first), np.concatenate(x_second)
    assert sorted(ids(one)) == sorted(ids(two)) and not np.array_equal(ids(one), ids(two))
    held_out = {int(i) for split in (VALIDATION, TEST) for x, *_ in plain.iter_split(split, 64, False) for i in ids(x)}
    assert not set(ids(one)) & held_out
    assert set(ids(one)) == {int(i) for x, *_ in plain.iter_split(TRAIN, 64, False) for i in ids(x)}
    # Validation and test read as without resampling.
    for split in (VALIDATION, TEST):
        assert [ids(x).tolist() for x, *_ in data.iter_split(split, 64, False)] == [
            ids(x).tolist() for x, *_ in plain.iter_split(split, 64, False)
        ]


def test_streamed_resampled_steps_and_process_shares_follow_the_resampled_count(tmp_path):
    path = write_rows(tmp_path / "d.csv", rows=300)
    size = prepare_data(config(path, stream="true")).sizes()["train"]
    assert prepare_data(config(path, stream="true"))._steps(TRAIN, 16, False) == -(-size // 16)
    shares = []
    for process in (0, 1):
        data = prepare_data(config(path, stream="true"))
        data.keep_share(2, process, 2, 16)
        data.start_epoch(1)
        shares.append([ids(x) for x, *_ in data._shared(TRAIN, 8, True, None)])
    assert [len(batch) for batch in shares[0]] == [len(batch) for batch in shares[1]]
    assert len(shares[0]) == data._steps(TRAIN, 8, True)
    together = np.concatenate([np.concatenate(share) for share in shares])
    assert len(together) == size - size % 16 % 2


def test_a_streamed_image_folder_resamples_its_training_files(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    for name, count in {"cat": 12, "dog": 3}.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (20 * i, 100, 0)).save(folder / name / f"{i}.png")
    text = f"""
name: photos
seed: 5
data: {{source: images, path: {json.dumps(str(folder))}, image_size: 8, stream: true, test: 0.2, validation: null,
        resample: {{oversample: minority}}}}
model: {{input_shape: [8, 8, 3], layers: [Flatten, {{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, batch_size: 4}}
"""
    data = prepare_data(config_from_text(text))
    counts = data.class_counts()
    assert counts["train"][0] == counts["train"][1] == data.resampling.before[0]
    rows = data._ordered(TRAIN, True)
    assert np.bincount(data._labels[rows]).tolist() == counts["train"]
    assert set(rows.tolist()) == set(data._rows[TRAIN].tolist()) and not set(rows.tolist()) & set(
        data._rows[TEST].tolist()
    )
    assert data.sizes()["train"] == len(rows)


# --------------------------------------------------------------------------- sample weights
def test_sample_weights_from_a_csv_follow_their_rows_in_memory_and_streamed(tmp_path):
    path = write_rows(tmp_path / "d.csv", weight=lambda i: i % 4 * 0.5)
    memory = prepare_data(config(path, None, extra=", sample_weight: w"))
    assert memory.preprocessing.feature_names == ["id", "x"]  # the weight is no feature
    assert memory.w_train.dtype == np.float32
    assert np.array_equal(memory.w_train, (ids(memory.x_train) % 4 * 0.5).astype(np.float32))
    assert memory.fit_inputs(lambda y: y, 16, True)["sample_weight"] is memory.w_train
    assert memory.preprocessing.to_dict()["extra"] == {"exclude": ["w"]}  # predict and evaluate ignore it
    # Resampled: each repeated row keeps its weight.
    both = prepare_data(config(path, extra=", sample_weight: w"))
    assert np.array_equal(both.w_train, (ids(both.x_train) % 4 * 0.5).astype(np.float32))
    # A process's share, and batches evened out over devices: the weights stay with their rows.
    for process in (0, 1):
        share = prepare_data(config(path, extra=", sample_weight: w"))
        share.keep_share(2, process, 2, 16)
        assert len(share.w_train) == len(share.x_train) < len(both.x_train) // 2 + 16
        assert np.array_equal(share.w_train, (ids(share.x_train) % 4 * 0.5).astype(np.float32))
    even = prepare_data(config(path, None, extra=", sample_weight: w"))
    even.even_out(7)
    assert len(even.w_train) == len(even.x_train) and len(even.x_train) % 7 == 0
    streamed = prepare_data(config(path, stream="true", extra=", sample_weight: w"))
    batches = list(streamed.iter_split(TRAIN, 16, True))
    assert all(len(batch) == 3 for batch in batches)
    for x, _, w in batches:
        assert np.array_equal(w, (ids(x) % 4 * 0.5).astype(np.float32))
    assert all(len(batch) == 2 for batch in streamed.iter_split(VALIDATION, 16, False))  # unweighted


def test_sample_weights_from_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": np.arange(200),
            "x": rng.normal(size=200),
            "label": np.where(rng.random(200) < 0.2, "rare", "common"),
            "w": np.arange(200) % 3,
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    text = f"""
name: weighted
data: {{source: parquet, path: {json.dumps(str(tmp_path / "d.parquet"))}, target: label, stream: %s, sample_weight: w}}
model: {{input_shape: [2], layers: [{{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy}}
"""
    memory = prepare_data(config_from_text(text % "false"))
    assert np.array_equal(memory.w_train, (ids(memory.x_train) % 3).astype(np.float32))
    streamed = prepare_data(config_from_text(text % "true"))
    for x, _, w in streamed.iter_split(TRAIN, 32, False):
        assert np.array_equal(w, (ids(x) % 3).astype(np.float32))
    pq.write_table(table.set_column(3, "w", pa.array(["heavy"] * 200)), tmp_path / "d.parquet")
    with pytest.raises(DataError) as caught:
        prepare_data(config_from_text(text % "false"))
    assert str(caught.value) == (
        f"{tmp_path / 'd.parquet'}: column 'w' (data.sample_weight) holds string values; expected numbers "
        "(a weight >= 0 per row)"
    )


@pytest.mark.parametrize("stream", ["false", "true"])
def test_bad_sample_weights_are_refused_naming_the_file_and_column(tmp_path, stream):
    negative = write_rows(tmp_path / "neg.csv", weight=lambda i: -1 if i == 40 else 1)
    with pytest.raises(DataError) as caught:
        prepare_data(config(negative, None, stream=stream, extra=", sample_weight: w"))
    assert (
        str(caught.value) == f"{negative}: column 'w' (data.sample_weight): expected weights >= 0, received -1 (row 40)"
    )
    missing = write_rows(tmp_path / "nan.csv", weight=lambda i: "nan" if i == 7 else 1)
    with pytest.raises(DataError) as caught:
        prepare_data(config(missing, None, stream=stream, extra=", sample_weight: w"))
    assert str(caught.value) == f"{missing}:9: column 'w': expected a finite number, received 'nan'"
    zero = write_rows(tmp_path / "zero.csv", weight=lambda i: 0)
    with pytest.raises(DataError) as caught:
        prepare_data(config(zero, None, stream=stream, extra=", sample_weight: w"))
    assert str(caught.value) == (
        f"{zero}: column 'w' (data.sample_weight): every training row weighs 0; expected at least one weight > 0"
    )
    with pytest.raises(ConfigError) as caught:
        prepare_data(config(zero, None, stream=stream, extra=", sample_weight: weight"))
    assert str(caught.value) == f"data.sample_weight: no column 'weight' in {zero}; the columns are id, x, label, w"
