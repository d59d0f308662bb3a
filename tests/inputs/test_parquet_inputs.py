"""Parquet files as model inputs: predict, evaluate --data and export --data read them by record batch."""

from __future__ import annotations

import numpy as np
import pytest

from dltool.commands.predict import KeptColumns, output_format
from dltool.data.preprocessing import Preprocessing
from dltool.errors import InputError
from dltool.inputs import expand_inputs, inputs_for

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TABLE = Preprocessing(
    input_shape=[2],
    task="classification",
    class_names=["no", "yes"],
    feature_names=["a", "b"],
    target_names=["label"],
    extra={"exclude": ["id"]},
)


def _write(path, rows: int, labels=None, **columns):
    rng = np.random.default_rng(0)
    table = {
        "id": np.arange(rows),
        "b": rng.normal(size=rows),
        "a": rng.normal(size=rows).astype(np.float32),
        "label": labels if labels is not None else np.where(np.arange(rows) % 3, "yes", "no"),
    }
    pq.write_table(pa.table(table | columns), path, row_group_size=70)
    return pa.table(table | columns)


def _refusal(action, *args) -> str:
    with pytest.raises(InputError) as caught:
        action(*args)
    return str(caught.value)


def test_predict_reads_the_feature_columns_by_name_in_bounded_chunks(tmp_path, monkeypatch):
    table = _write(tmp_path / "rows.parquet", 250)
    reader = inputs_for(TABLE)
    monkeypatch.setattr(type(reader), "chunk_rows", 100)
    files = expand_inputs([tmp_path / "rows.parquet"], reader)
    reader.check(files[0])
    batches = list(reader.batches(files))
    assert [len(x) for _, x in batches] == [100, 100, 50]
    assert batches[2][0] == [(str(files[0]), range(200, 250))]
    x = np.concatenate([x for _, x in batches])
    expected = np.column_stack([table["a"].to_numpy(), table["b"].to_numpy()]).astype(np.float32)
    assert np.array_equal(x, expected)


def test_a_parquet_input_missing_a_column_gets_the_csv_message(tmp_path):
    pq.write_table(pa.table({"a": [1.0], "bb": [2.0]}), tmp_path / "typo.parquet")
    assert _refusal(inputs_for(TABLE).check, tmp_path / "typo.parquet") == (
        f"{tmp_path / 'typo.parquet'}: missing column 'b'; did you mean 'bb'? (the model takes a, b; the file has a, bb)"
    )


def test_evaluate_data_reads_string_and_integer_labels_of_a_parquet_file(tmp_path):
    _write(tmp_path / "strings.parquet", 200)
    _write(tmp_path / "ints.parquet", 200, labels=(np.arange(200) % 3 != 0).astype(np.int64))
    for name in ("strings.parquet", "ints.parquet"):
        labelled = inputs_for(TABLE).labelled(tmp_path / name)
        y = np.concatenate([y for _, y in labelled.chunks()])
        assert y.dtype == np.int32 and np.array_equal(y, (np.arange(200) % 3 != 0).astype(np.int32))


def test_evaluate_data_names_a_label_the_run_does_not_know(tmp_path):
    _write(tmp_path / "d.parquet", 10, labels=np.array(["no", "maybe"] * 5))
    labelled = inputs_for(TABLE).labelled(tmp_path / "d.parquet")
    with pytest.raises(Exception, match=r"label 'maybe' is not one of the run's classes \(no, yes\)"):
        list(labelled.chunks())


def test_keep_copies_parquet_columns_row_by_row(tmp_path):
    _write(tmp_path / "d.parquet", 150)
    kept = KeptColumns(["id", "label"], [tmp_path / "d.parquet"])
    name = str(tmp_path / "d.parquet")
    assert kept.values(name, 0) == ["0", "no"] and kept.values(name, 149) == ["149", "yes"]
    assert _refusal(KeptColumns, ["key"], [tmp_path / "d.parquet"]).startswith(
        f"{tmp_path / 'd.parquet'}: no column 'key' to keep"
    )


def test_the_output_format_follows_the_output_file_unless_given():
    assert output_format(None, "out.parquet") == "parquet"
    assert output_format(None, "out.csv") == output_format(None, None) == "csv"
    assert output_format("json", "out.parquet") == "json"
    assert _refusal(output_format, "parquet", None) == "--format parquet writes a file, not text: give -o FILE.parquet"
    assert _refusal(output_format, "xml", "o") == "expected format csv, json or parquet, received 'xml'"
