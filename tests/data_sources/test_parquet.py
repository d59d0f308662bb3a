"""The parquet source, and tables in several files (data.path: a glob or a list), in memory and streamed."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.data.table_files import TEST, TRAIN, VALIDATION, file_salt, salted, split_codes
from dltool.errors import ConfigError, DataError, DltoolError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _table(rows: int, seed: int = 0, *, labels: str = "text", start: int = 0):
    """Columns id (start..), a, b, c (floats) and answer: 'no'/'yes' (text, or dictionary-encoded), 0/1 (int) or a
    float (number)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    positive = x[:, 0] + x[:, 1] > 0
    answer = {
        "text": pa.array(np.where(positive, "yes", "no")),
        "dictionary": pa.array(np.where(positive, "yes", "no")).dictionary_encode(),  # pandas' categoricals
        "int": pa.array(positive.astype(np.int64)),
        "number": pa.array(x[:, 0] * 2 - x[:, 2]),
    }[labels]
    return pa.table(
        {"id": pa.array(np.arange(start, start + rows)), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "answer": answer}
    )


def _write(path, rows: int, seed: int = 0, row_group: int | None = None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_table(rows, seed, **kwargs), path, row_group_size=row_group)
    return path


def _config(path, *, stream="true", loss="sparse_categorical_crossentropy", units=2, extra="", validation=0.1):
    path_text = json.dumps(path if isinstance(path, list) else str(path))
    classify = loss != "mse"
    last, metric = (", activation: softmax", "accuracy") if classify else ("", "mae")
    return config_from_text(f"""
name: parquet-test
seed: 3
data: {{source: parquet, path: {path_text}, target: answer, exclude: [id], stream: {stream}, standardize: true,
        test: 0.2, validation: {validation}{extra}}}
model: {{input_shape: [3], layers: [{{Dense: {{units: 8, activation: relu}}}}, {{Dense: {{units: {units}{last}}}}}]}}
train: {{loss: {loss}, metrics: [{metric}], epochs: 2, batch_size: 32, tensorboard: false}}
""")


def _split_rows(data, split: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (raw x, raw y) row of one split of a streamed table, in file order."""
    parts = list(data._split_rows(split))
    return np.concatenate([x for x, _, _ in parts]), np.concatenate([data._targets(y) for _, y, _ in parts])


# --------------------------------------------------------------------------- one file
def test_a_parquet_file_streams_with_labels_and_standardization_on_training_rows_only(tmp_path):
    path = _write(tmp_path / "d.parquet", 3000, row_group=700)
    data = prepare_data(_config(path))
    sizes = data.sizes()
    assert sizes["train"] + sizes["validation"] + sizes["test"] == 3000 and sizes["streamed"]
    assert data.preprocessing.class_names == ["no", "yes"]
    assert data.preprocessing.feature_names == ["a", "b", "c"]  # id excluded
    assert data.preprocessing.extra == {"exclude": ["id"]}
    table = pq.read_table(path)
    x = np.column_stack([table[name].to_numpy() for name in "abc"]).astype(np.float32)
    # One file named as a path: each row's split id is its row number salted with the file's name.
    codes = split_codes(salted(np.arange(3000), file_salt("d.parquet")), 3, 0.2, 0.1)
    assert sizes["test"] == np.count_nonzero(codes == TEST)
    train = x[codes == TRAIN].astype(np.float64)
    assert data.preprocessing.mean == pytest.approx(train.mean(axis=0).tolist(), abs=1e-6)
    assert data.preprocessing.std == pytest.approx(train.std(axis=0).tolist(), abs=1e-6)
    batches = list(data.iter_split(TRAIN, 32, True))
    assert all(len(bx) == 32 for bx, _ in batches[:-1]) and sum(len(bx) for bx, _ in batches) == sizes["train"]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32


@pytest.mark.parametrize("labels", ["text", "dictionary", "int"])
def test_in_memory_and_streamed_parquet_give_the_same_splits_features_and_labels(tmp_path, labels):
    path = _write(tmp_path / "d.parquet", 1000, labels=labels, row_group=300)
    streamed, in_memory = prepare_data(_config(path)), prepare_data(_config(path, stream="false"))
    assert (streamed.streamed, in_memory.streamed) == (True, False)
    assert streamed.preprocessing.class_names == in_memory.preprocessing.class_names
    assert streamed.preprocessing.class_names == (["0", "1"] if labels == "int" else ["no", "yes"])
    assert streamed.preprocessing.mean == pytest.approx(in_memory.preprocessing.mean, abs=1e-6)
    assert streamed.preprocessing.std == pytest.approx(in_memory.preprocessing.std, abs=1e-6)
    for split, (x, y) in {
        TRAIN: (in_memory.x_train, in_memory.y_train),
        VALIDATION: (in_memory.x_val, in_memory.y_val),
        TEST: (in_memory.x_test, in_memory.y_test),
    }.items():
        raw_x, raw_y = _split_rows(streamed, split)
        assert np.allclose(streamed.preprocessing.transform(raw_x), x, atol=1e-5)
        assert np.array_equal(raw_y, y)
    assert in_memory.test_source == "fraction 0.2 of the rows (hashed by file name and row, seed 3)"


def test_a_regression_target_is_read_as_numbers(tmp_path):
    path = _write(tmp_path / "d.parquet", 400, labels="number")
    data = prepare_data(_config(path, loss="mse", units=1))
    x, y = next(data.iter_split(TEST, 1000, False))
    assert y.dtype == np.float32 and y.shape == (len(x), 1)
    assert data.preprocessing.class_names is None


def test_a_string_target_with_a_regression_loss_names_the_value(tmp_path):
    path = _write(tmp_path / "d.parquet", 50)
    with pytest.raises(DataError, match="expected numeric targets for a regression loss, received 'no'"):
        prepare_data(_config(path, loss="mse", units=1))


def test_a_null_feature_is_named_by_file_column_and_row(tmp_path):
    table = _table(20)
    values = table["b"].to_pylist()
    values[7] = None
    pq.write_table(table.set_column(2, "b", pa.array(values, pa.float64())), tmp_path / "d.parquet")
    with pytest.raises(DataError) as caught:
        prepare_data(_config(tmp_path / "d.parquet"))
    assert str(caught.value) == (
        f"{tmp_path / 'd.parquet'}: column 'b': expected a number, received an empty value (row 7)"
    )


def test_a_text_feature_column_is_refused(tmp_path):
    table = _table(20)
    pq.write_table(table.set_column(1, "a", pa.array(["x"] * 20)), tmp_path / "d.parquet")
    with pytest.raises(DltoolError, match="column 'a' holds string values; expected numbers"):
        prepare_data(_config(tmp_path / "d.parquet"))


def test_a_missing_target_column_is_a_config_error_at_its_key(tmp_path):
    path = _write(tmp_path / "d.parquet", 20)
    config = _config(path).model_copy(deep=True)
    config.data.target = "anwser"
    with pytest.raises(ConfigError) as caught:
        prepare_data(config)
    assert caught.value.path == "data.target" and "did you mean 'answer'" in str(caught.value)


def test_without_pyarrow_the_error_names_the_install_command(tmp_path, monkeypatch):
    path = _write(tmp_path / "d.parquet", 20)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DltoolError) as caught:
        prepare_data(_config(path, stream="false"))
    assert "reading Parquet needs pyarrow, which is not installed: pip install " in str(caught.value)
    assert "[parquet]" in str(caught.value) and caught.value.exit_code == 2


def test_the_fingerprint_is_of_the_values_not_of_the_file_bytes(tmp_path):
    table = _table(500)
    pq.write_table(table, tmp_path / "a.parquet", compression="snappy")
    (tmp_path / "b").mkdir()
    pq.write_table(table, tmp_path / "b" / "a.parquet", compression="zstd", row_group_size=128)
    first, again = prepare_data(_config(tmp_path / "a.parquet")), prepare_data(_config(tmp_path / "b" / "a.parquet"))
    assert first.fingerprint == again.fingerprint  # same name, same values: another compression and row groups
    changed = table.set_column(1, "a", pa.array(np.r_[table["a"].to_numpy()[:-1], 123.0]))
    pq.write_table(changed, tmp_path / "b" / "a.parquet")
    assert prepare_data(_config(tmp_path / "b" / "a.parquet")).fingerprint != first.fingerprint


def test_export_verification_takes_the_raw_test_rows_and_a_run_config_keeps_globs_absolute(tmp_path, monkeypatch):
    from dltool.config import resolve_paths

    path = _write(tmp_path / "data" / "d.parquet", 300)
    data = prepare_data(_config(path))
    raw_x, _ = _split_rows(data, TEST)
    assert np.array_equal(data.raw_test_inputs(7), raw_x[:7])  # before standardization, as a file holds them
    monkeypatch.chdir(tmp_path)
    config = resolve_paths(_config(["data/*.parquet", "data/d.parquet"]))
    assert config.data.path == [str(tmp_path / "data" / "*.parquet"), str(tmp_path / "data" / "d.parquet")]


# --------------------------------------------------------------------------- several files
def test_a_glob_reads_every_matching_file_in_sorted_order(tmp_path):
    for part in range(3):
        _write(tmp_path / "data" / f"part-{part}.parquet", 300, seed=part, start=300 * part)
    (tmp_path / "data" / "_SUCCESS").write_text("")  # what Spark leaves beside its parts: not a Parquet file
    data = prepare_data(_config(tmp_path / "data" / "part-*.parquet"))
    assert sum(data.counts.values()) == 900
    assert [file.name for file in data.reader.files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert "hashed by file name and row with seed 3" in data.test_source


def test_a_list_of_files_and_globs_is_expanded_deduplicated_and_sorted(tmp_path):
    for name in ("b.parquet", "a.parquet", "c.parquet"):
        _write(tmp_path / name, 50)
    data = prepare_data(_config([str(tmp_path / "c.parquet"), str(tmp_path / "*.parquet")]))
    assert [file.path.name for file in data.reader.files] == ["a.parquet", "b.parquet", "c.parquet"]
    assert sum(data.counts.values()) == 150


def test_a_glob_that_matches_nothing_is_a_config_error_naming_it(tmp_path):
    pattern = str(tmp_path / "part-*.parquet")
    for stream in ("true", "false"):
        with pytest.raises(ConfigError) as caught:
            prepare_data(_config(pattern, stream=stream))
        assert caught.value.path == "data.path"
        assert caught.value.detail.startswith(f"no .parquet or .parq or .pq file matches {pattern}; expected a Parquet")
    with pytest.raises(ConfigError) as caught:
        prepare_data(_config([str(_write(tmp_path / "a.parquet", 20)), pattern]))
    assert caught.value.path == "data.path[1]"


def test_files_with_other_columns_are_refused_naming_the_file_and_the_columns(tmp_path):
    _write(tmp_path / "a.parquet", 20)
    pq.write_table(_table(20).drop_columns(["c"]), tmp_path / "b.parquet")
    with pytest.raises(DataError) as caught:
        prepare_data(_config(tmp_path / "*.parquet"))
    assert str(caught.value) == (
        f"{tmp_path / 'b.parquet'}: expected the columns of {tmp_path / 'a.parquet'} (id, a, b, c, answer), "
        "received id, a, b, answer (it lacks c); every file of data.path must have the same columns"
    )


def test_adding_a_file_moves_no_existing_row_to_another_split(tmp_path):
    folder = tmp_path / "data"
    _write(folder / "part-0.parquet", 500, seed=0, start=0)
    _write(folder / "part-1.parquet", 500, seed=1, start=500)
    before = prepare_data(_config(folder / "part-*.parquet"))
    _write(folder / "part-00.parquet", 500, seed=2, start=1000)  # sorts first: every later row's position moves
    after = prepare_data(_config(folder / "part-*.parquet"))
    for split in (TRAIN, VALIDATION, TEST):
        old, new = _split_rows(before, split)[0], _split_rows(after, split)[0]
        assert len(new) > len(old)
        kept = {tuple(row) for row in new.tolist()}
        assert all(tuple(row) in kept for row in old.tolist())


def test_a_split_key_keeps_each_row_in_its_split_whatever_the_files_order(tmp_path):
    whole = _table(600)
    pq.write_table(whole, tmp_path / "one.parquet")
    reversed_rows = whole.take(np.arange(599, -1, -1))
    (tmp_path / "two").mkdir()
    pq.write_table(reversed_rows.slice(0, 250), tmp_path / "two" / "p1.parquet")
    pq.write_table(reversed_rows.slice(250), tmp_path / "two" / "p0.parquet")
    extra = ", split_key: id"
    one = prepare_data(_config(tmp_path / "one.parquet", extra=extra))
    two = prepare_data(_config(tmp_path / "two" / "*.parquet", extra=extra))
    assert one.preprocessing.extra == {"exclude": ["id"]}
    assert "hashed by split key id with seed 3" in one.test_source
    for split in (TRAIN, VALIDATION, TEST):
        a, b = _split_rows(one, split)[0], _split_rows(two, split)[0]
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    in_memory = prepare_data(_config(tmp_path / "two" / "*.parquet", extra=extra, stream="false"))
    assert len(in_memory.x_test) == two.sizes()["test"]


def test_processes_share_each_streamed_parquet_batch(tmp_path):
    for part in range(2):
        _write(tmp_path / f"part-{part}.parquet", 400, seed=part)
    config = _config(tmp_path / "part-*.parquet")
    whole = list(prepare_data(config).iter_split(TRAIN, 32, shuffle=True))
    shares = []
    for process in range(2):
        data = prepare_data(config)
        data.keep_share(2, process, 2, 32)
        shares.append(list(data._shared(TRAIN, 16, True, None)))
    for (x0, _), (x1, _), (x, _) in zip(*shares, whole):
        kept = len(x) - len(x) % 2
        assert np.array_equal(np.concatenate([x0, x1]), x[:kept])


# --------------------------------------------------------------------------- several CSV files
def _write_csv(path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        handle.write("a,b,c,answer\n")
        handle.writelines(f"{a:.4f},{b:.4f},{c:.4f},{'yes' if a + b > 0 else 'no'}\n" for a, b, c in x)


def _csv_config(path, stream: str):
    return config_from_text(f"""
name: csv-glob
seed: 3
data: {{source: csv, path: {json.dumps(str(path))}, target: answer, stream: {stream}, test: 0.2, validation: 0.1}}
model: {{input_shape: [3], layers: [{{Dense: {{units: 2}}}}]}}
train: {{loss: sparse_categorical_crossentropy, batch_size: 32}}
""")


def test_several_csv_files_in_memory_and_streamed_share_their_splits(tmp_path):
    _write_csv(tmp_path / "p1.csv", 300, 1)
    _write_csv(tmp_path / "p0.csv", 200, 0)
    streamed = prepare_data(_csv_config(tmp_path / "p*.csv", "true"))
    in_memory = prepare_data(_csv_config(tmp_path / "p*.csv", "false"))
    assert sum(streamed.counts.values()) == 500
    assert len(in_memory.x_test) == streamed.sizes()["test"] and len(in_memory.x_val) == streamed.sizes()["validation"]
    raw_x, raw_y = _split_rows(streamed, TEST)
    assert np.allclose(raw_x, in_memory.x_test) and np.array_equal(raw_y, in_memory.y_test)
    # The first file's rows come first (sorted names), with split ids salted by "p0.csv".
    first = split_codes(salted(np.arange(200), file_salt("p0.csv")), 3, 0.2, 0.1)
    expected = np.loadtxt(tmp_path / "p0.csv", delimiter=",", skiprows=1, usecols=[0, 1, 2])[first == TEST]
    assert np.allclose(raw_x[: len(expected)], expected)


def test_a_csv_given_as_one_path_keeps_its_splits_by_row_number(tmp_path):
    _write_csv(tmp_path / "d.csv", 300, 0)
    data = prepare_data(_csv_config(tmp_path / "d.csv", "true"))
    assert data.test_source == "fraction 0.2 of the rows (hashed with seed 3), streamed"
    assert data.counts[TEST] == np.count_nonzero(split_codes(np.arange(300), 3, 0.2, 0.1) == TEST)


# --------------------------------------------------------------------------- train, evaluate and predict (Keras)
@pytest.mark.slow
def test_streamed_parquet_train_evaluate_and_predict_to_parquet(tmp_path):
    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict
    from dltool.commands.train import train

    for part in range(2):
        _write(tmp_path / "data" / f"part-{part}.parquet", 1000, seed=part, start=1000 * part, row_group=300)
    run = train(_config(tmp_path / "data" / "part-*.parquet"), runs_root=tmp_path / "runs")
    info = json.loads(run.file("run.json").read_text())
    assert info["status"] == "COMPLETED" and info["data"]["streamed"] is True
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    report = evaluate(run)  # the test split, streamed again from the glob
    assert report["samples"] == info["data"]["test"]
    assert report["classification"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    new = pq.read_table(_write(tmp_path / "new.parquet", 300, seed=9, start=5000))
    on_file = evaluate(run, data_file=tmp_path / "new.parquet")
    assert on_file["samples"] == 300 and on_file["classification"]["accuracy"] > 0.8
    result = predict(run, [tmp_path / "new.parquet"], output=tmp_path / "out.parquet", keep=["id"])
    assert result.rows == 300
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["input", "row", "id", "label", "prob_no", "prob_yes"]
    assert out["row"].to_pylist() == list(range(300)) and out["id"].to_pylist() == [str(i) for i in range(5000, 5300)]
    assert str(out.schema.field("prob_yes").type) == "float"
    assert np.mean(np.array(out["label"].to_pylist()) == np.array(new["answer"].to_pylist())) > 0.8
    as_csv = predict(run, [tmp_path / "new.parquet"], keep=["id"]).output.splitlines()
    assert as_csv[0] == "input,row,id,label,prob_no,prob_yes" and len(as_csv) == 301
    assert not list(tmp_path.glob(".out.parquet.*"))  # the temporary file was renamed


@pytest.mark.slow
def test_an_in_memory_parquet_regression_run_predicts_values(tmp_path):
    from dltool.commands.predict import predict
    from dltool.commands.train import train

    _write(tmp_path / "d.parquet", 600, labels="number")
    run = train(_config(tmp_path / "d.parquet", stream="false", loss="mse", units=1), runs_root=tmp_path / "runs")
    assert json.loads(run.file("run.json").read_text())["status"] == "COMPLETED"
    predict(run, [tmp_path / "d.parquet"], output=tmp_path / "values.parquet")
    assert pq.read_table(tmp_path / "values.parquet").column_names == ["input", "row", "answer"]


def test_stream_auto_counts_parquet_rows_from_the_footers_not_the_compressed_size(tmp_path, monkeypatch):
    from dltool.data import parquet_source, should_stream, streaming

    files = [_write(tmp_path / f"part-{i}.parquet", 1000, seed=i, labels="int") for i in range(2)]
    loaded = 2 * 1000 * 5 * parquet_source.LOADED_BYTES_PER_VALUE  # rows x columns (id, a, b, c, answer)
    assert sum(file.stat().st_size for file in files) < loaded / 2  # on disk, far smaller than loaded
    data = _config(str(tmp_path / "part-*.parquet"), stream="auto").data
    monkeypatch.setattr(streaming, "STREAM_AUTO_BYTES", loaded)
    assert not should_stream(data)
    monkeypatch.setattr(streaming, "STREAM_AUTO_BYTES", loaded - 1)
    assert should_stream(data)
    assert not should_stream(_config(str(tmp_path / "missing-*.parquet"), stream="auto").data)
