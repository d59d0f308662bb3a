"""dltool.inputs: one reader per kind of model; one column message for predict and evaluate; chunked labelled reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dltool.data.preprocessing import Preprocessing
from dltool.errors import InputError
from dltool.inputs import ImageInputs, SeriesInputs, TableInputs, TextInputs, base, inputs_for

TABLE = Preprocessing(
    input_shape=[2], task="classification", class_names=["no", "yes"], feature_names=["a", "b"], target_names=["label"]
)
SERIES = Preprocessing(
    input_shape=[3, 1],
    task="regression",
    kind="timeseries",
    feature_names=["value"],
    target_names=["value"],
    extra={"timeseries": {"window": 3, "horizon": 1}},
)
TEXT = Preprocessing(
    input_shape=[1],
    task="classification",
    kind="text",
    class_names=["neg", "pos"],
    feature_names=["review"],
    target_names=["sentiment"],
)


def _refusal(action, *args) -> str:
    with pytest.raises(InputError) as caught:
        action(*args)
    return str(caught.value)


# --------------------------------------------------------------------------- the reader for each kind
def test_the_reader_is_chosen_by_the_kind_of_model():
    assert type(inputs_for(TABLE)) is TableInputs
    assert type(inputs_for(SERIES)) is SeriesInputs
    assert type(inputs_for(TEXT)) is TextInputs
    assert type(inputs_for(Preprocessing(input_shape=[8, 8], task="classification"))) is ImageInputs
    assert inputs_for(TABLE).chunk_rows == base.TABLE_CHUNK
    assert inputs_for(TEXT).chunk_rows == base.TEXT_CHUNK
    assert inputs_for(Preprocessing(input_shape=[32, 32, 3], task="regression")).chunk_rows == base.SPATIAL_CHUNK
    assert inputs_for(Preprocessing(input_shape=[64, 64, 3], task="regression")).chunk_rows == 341  # 16 MiB of float32


# --------------------------------------------------------------------------- one column message
def test_predict_and_evaluate_refuse_a_missing_column_with_one_message(tmp_path):
    path = tmp_path / "typo.csv"
    path.write_text("a,bb,label\n1,2,yes\n")
    reader = inputs_for(TABLE)
    for_predict = _refusal(reader.check, path)
    for_evaluate = _refusal(reader.labelled, path)
    assert (
        for_predict
        == f"{path}: missing column 'b'; did you mean 'bb'? (the model takes a, b; the file has a, bb, label)"
    )
    assert for_evaluate == (
        f"{path}: missing column 'b'; did you mean 'bb'? (the model takes a, b; expected target "
        "column label; the file has a, bb, label)"
    )


def test_a_missing_target_column_and_an_unexpected_column(tmp_path):
    (tmp_path / "unlabelled.csv").write_text("a,b\n1,2\n")
    (tmp_path / "extra.csv").write_text("a,b,colour\n1,2,blue\n")
    reader = inputs_for(TABLE)
    assert _refusal(reader.labelled, tmp_path / "unlabelled.csv") == (
        f"{tmp_path / 'unlabelled.csv'}: missing column 'label' (the model takes a, b; expected target column label; "
        "the file has a, b)"
    )
    reader.check(tmp_path / "unlabelled.csv")  # predict needs no target
    assert _refusal(reader.check, tmp_path / "extra.csv") == (
        f"{tmp_path / 'extra.csv'}: unexpected column(s) colour (the model takes a, b; the file has a, b, colour): "
        "give --keep colour to copy it into each output row, or remove it from the file"
    )
    (tmp_path / "labelled.csv").write_text("a,b,label,colour\n1,2,yes,blue\n")
    assert len(list(reader.labelled(tmp_path / "labelled.csv").chunks())) == 1  # evaluate ignores other columns


def test_series_and_text_models_use_the_same_message(tmp_path):
    (tmp_path / "wrong.csv").write_text("date,valu\n1,2\n")
    series = inputs_for(SERIES)
    expected = f"{tmp_path / 'wrong.csv'}: missing column 'value'; did you mean 'valu'? (the model takes value"
    assert _refusal(series.check, tmp_path / "wrong.csv") == f"{expected}; the file has date, valu)"
    assert _refusal(series.labelled, tmp_path / "wrong.csv") == (
        f"{expected}; expected target column value; the file has date, valu)"
    )
    (tmp_path / "two.csv").write_text("title,body\na,b\n")
    assert _refusal(inputs_for(TEXT).check, tmp_path / "two.csv") == (
        f"{tmp_path / 'two.csv'}: missing column 'review' (the model takes review; the file has title, body); "
        "a CSV with no column 'review' is read only when it has a single column of texts"
    )


def test_the_training_source_names_a_missing_feature_column_the_same_way(tmp_path):
    from dltool.data.csv_source import CsvReader
    from dltool.errors import ConfigError

    (tmp_path / "d.csv").write_text("a,bb,label\n1,2,yes\n")
    with pytest.raises(ConfigError) as caught:
        CsvReader(path=str(tmp_path / "d.csv"), delimiter=",", features=["a", "b"], target="label").open()
    assert caught.value.path == "data.features"
    assert caught.value.detail == _refusal(inputs_for(TABLE).check, tmp_path / "d.csv")


# --------------------------------------------------------------------------- labelled files in chunks
def _labelled_csv(path, rows: int, seed: int = 0, shuffled: bool = False):
    """Columns a, b (numbers) and label (no/yes); ``shuffled`` writes them as label, b, a."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    if shuffled:
        path.write_text("label,b,a\n" + "".join(f"{c},{b:.5f},{a:.5f}\n" for (a, b), c in zip(x, labels)))
    else:
        path.write_text("a,b,label\n" + "".join(f"{a:.5f},{b:.5f},{c}\n" for (a, b), c in zip(x, labels)))
    return path


def test_a_labelled_csv_is_read_in_chunks_of_the_chunk_size(tmp_path, monkeypatch):
    path = _labelled_csv(tmp_path / "d.csv", 50, shuffled=True)
    whole = list(inputs_for(TABLE).labelled(path).chunks())
    monkeypatch.setattr(base, "TABLE_CHUNK", 7)
    labelled = inputs_for(TABLE).labelled(path)
    chunks = list(labelled.chunks())
    assert len(whole) == 1 and [len(x) for x, _ in chunks] == [7] * 7 + [1] == labelled.chunk_sizes
    assert np.array_equal(np.concatenate([x for x, _ in chunks]), whole[0][0])
    assert np.array_equal(np.concatenate([y for _, y in chunks]), whole[0][1])
    expected = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[2, 1], dtype=np.float32)
    assert np.allclose(whole[0][0], expected)  # columns by name, not position
    assert set(whole[0][1].tolist()) == {0, 1}


def test_a_bad_cell_in_a_later_chunk_names_its_line(tmp_path, monkeypatch):
    path = _labelled_csv(tmp_path / "d.csv", 30)
    lines = path.read_text().splitlines()
    lines[25] = "1.0,oops,yes"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(base, "TABLE_CHUNK", 8)
    with pytest.raises(InputError, match=r"d.csv:26: column 'b': expected a number, received 'oops'"):
        list(inputs_for(TABLE).labelled(path).chunks())


def test_series_windows_with_targets_in_chunks_equal_the_whole_series(tmp_path):
    from dltool.data.timeseries import iter_labelled_windows, series_windows

    path = tmp_path / "s.csv"
    path.write_text("value,temp\n" + "".join(f"{t},{t * 10}\n" for t in range(40)))
    x, y, _ = series_windows(path, ["value", "temp"], ["value"], window=5, horizon=2)
    chunks = list(iter_labelled_windows(path, ["value", "temp"], ["value"], window=5, horizon=2, chunk=6))
    assert len(chunks) > 3
    assert np.array_equal(np.concatenate([c for c, _ in chunks]), x)
    assert np.array_equal(np.concatenate([t for _, t in chunks]), y)
    assert y[0, 0] == 6  # the value 2 steps after the window of rows 0..4
    with pytest.raises(InputError, match="6 rows give no window of 5 steps with a target 2 step"):
        (tmp_path / "short.csv").write_text("value,temp\n" + "1,2\n" * 6)
        list(iter_labelled_windows(tmp_path / "short.csv", ["value", "temp"], ["value"], 5, 2, 6, InputError))


def test_nan_in_a_labelled_chunk_names_its_row(tmp_path, monkeypatch):
    x = np.ones((20, 2))
    x[13, 1] = np.nan
    np.savez(tmp_path / "holes.npz", x=x, y=np.zeros(20))
    monkeypatch.setattr(base, "TABLE_CHUNK", 5)
    with pytest.raises(InputError, match=r"holes.npz: inputs contain NaN or infinite values \(row 13\)"):
        list(inputs_for(TABLE).labelled(tmp_path / "holes.npz").chunks())


# --------------------------------------------------------------------------- evaluate --data, end to end
BINARY_CONFIG = """
name: binary-csv
seed: 0
data: {{source: csv, path: {path}, target: label, standardize: true, test: 0.25, validation: null}}
model: {{input_shape: [2], layers: [{{Dense: {{units: 1, activation: sigmoid}}}}]}}
train: {{optimizer: {{name: adam, learning_rate: 0.1}}, loss: binary_crossentropy, metrics: [accuracy, auc],
        epochs: 2, batch_size: 16}}
"""


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """A COMPLETED 2-epoch binary classifier (sigmoid, accuracy and AUC) trained on a CSV with labels no/yes."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    root = tmp_path_factory.mktemp("binary")
    data = _labelled_csv(root / "train.csv", 80)
    return train(
        config_from_text(BINARY_CONFIG.format(path=json.dumps(str(data))), source="binary.yaml"),
        runs_root=root / "runs",
    )


@pytest.mark.slow
def test_evaluate_and_predict_refuse_a_missing_column_alike(binary_run, tmp_path):
    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict

    path = tmp_path / "typo.csv"
    path.write_text("a,bb,label\n1,2,yes\n")
    with pytest.raises(InputError) as by_predict:
        predict(binary_run, [path])
    with pytest.raises(InputError) as by_evaluate:
        evaluate(binary_run, data_file=path)
    common = f"{path}: missing column 'b'; did you mean 'bb'? (the model takes a, b"
    assert str(by_predict.value) == f"{common}; the file has a, bb, label)"
    assert str(by_evaluate.value) == f"{common}; expected target column label; the file has a, bb, label)"


@pytest.mark.slow
def test_evaluate_on_a_csv_gives_the_numbers_of_the_whole_file_in_memory(binary_run, tmp_path, monkeypatch):
    from sklearn import metrics as sk

    from dltool.commands.evaluate import evaluate
    from dltool.saved_run import SavedRun

    path = _labelled_csv(tmp_path / "new.csv", 300, seed=1)
    report = evaluate(binary_run, data_file=path)
    assert report["samples"] == 300 and set(report["compiled"]) == {"loss", "accuracy", "auc"}

    # What evaluate did before it streamed: the whole file in memory, one model.evaluate and one model.predict.
    saved = SavedRun.open(binary_run)
    state, model = saved.preprocessing, saved.load_model()
    x = state.transform(np.loadtxt(path, delimiter=",", skiprows=1, usecols=[0, 1]))
    y = (np.loadtxt(path, delimiter=",", skiprows=1, usecols=[2], dtype=str) == "yes").astype(np.float32)
    whole = model.evaluate(x, y.reshape(-1, 1), batch_size=256, verbose=0, return_dict=True)
    assert report["compiled"] == pytest.approx({k: float(v) for k, v in whole.items()}, rel=1e-5)
    predicted = (model.predict(x, verbose=0)[:, 0] >= 0.5).astype(int)
    matrix = sk.confusion_matrix(y.astype(int), predicted, labels=[0, 1])
    assert report["classification"]["confusion_matrix"] == matrix.tolist()
    assert report["classification"]["accuracy"] == pytest.approx(report["compiled"]["accuracy"], abs=1e-6)

    monkeypatch.setattr(base, "TABLE_CHUNK", 7)  # 43 chunks: the same numbers, AUC (not a mean) included
    chunked = evaluate(binary_run, data_file=path)
    # Counts equal; the probability figures (ranking, calibration) to float32's rounding, which depends on how the
    # model's predict batches the samples.
    _assert_close(chunked["classification"], report["classification"])
    assert chunked["compiled"] == pytest.approx(report["compiled"], rel=1e-5)


def _assert_close(got, expected, where: str = "") -> None:
    """``got`` equals ``expected`` in structure and in every value, floats within float32's rounding."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for index, (g, e) in enumerate(zip(got, expected)):
            _assert_close(g, e, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), where
    else:
        assert got == expected, where
