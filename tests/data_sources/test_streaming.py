"""CSV training data read from disk batch by batch (data.stream)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dltool.config import config_from_text
from dltool.data import prepare_data, should_stream, streaming
from dltool.data.streaming import TEST, TRAIN, VALIDATION, split_codes


def _write_csv(path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    label = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    with path.open("w") as handle:
        handle.write("a,b,c,answer\n")
        handle.writelines(f"{a:.4f},{b:.4f},{c:.4f},{answer}\n" for (a, b, c), answer in zip(x, label))


def _config(path, stream: str = "true") -> object:
    return config_from_text(f"""
name: stream-test
seed: 3
data: {{source: csv, path: {path}, target: answer, stream: {stream}, standardize: true, test: 0.2, validation: 0.1}}
model: {{input_shape: [3], layers: [{{Dense: {{units: 8, activation: relu}}}}, {{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, batch_size: 32, tensorboard: false}}
""")


def test_split_codes_are_deterministic_and_proportional():
    rows = np.arange(200_000)
    codes = split_codes(rows, seed=7, test=0.2, validation=0.1)
    assert np.array_equal(codes, split_codes(rows, seed=7, test=0.2, validation=0.1))
    assert not np.array_equal(codes, split_codes(rows, seed=8, test=0.2, validation=0.1))
    assert np.mean(codes == TEST) == pytest.approx(0.2, abs=0.005)
    assert np.mean(codes == VALIDATION) == pytest.approx(0.08, abs=0.005)  # 0.1 of the 0.8 left
    # the same row gets the same split whichever chunk it is read in
    assert np.array_equal(codes[1000:1010], split_codes(rows[1000:1010], seed=7, test=0.2, validation=0.1))


def test_should_stream_auto_uses_the_file_size(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    _write_csv(path, 50)
    config = _config(path, stream="auto")
    assert should_stream(config.data) is False
    monkeypatch.setattr(streaming, "STREAM_AUTO_BYTES", 100)
    assert should_stream(config.data) is True
    assert should_stream(_config(path, stream="false").data) is False


def test_scan_counts_labels_and_standardizes_on_training_rows_only(tmp_path):
    path = tmp_path / "d.csv"
    _write_csv(path, 3000)
    data = prepare_data(_config(path))
    sizes = data.sizes()
    assert sizes["train"] + sizes["validation"] + sizes["test"] == 3000 and sizes["streamed"]
    assert data.preprocessing.class_names == ["no", "yes"]
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[0, 1, 2])
    train = raw[split_codes(np.arange(3000), 3, 0.2, 0.1) == TRAIN]
    assert data.preprocessing.mean == pytest.approx(train.mean(axis=0).tolist(), abs=1e-9)
    assert data.preprocessing.std == pytest.approx(train.std(axis=0).tolist(), abs=1e-9)


def test_both_kinds_are_training_data_so_no_caller_asks_which_it_holds(tmp_path):
    from dltool.data import TrainingData

    path = tmp_path / "d.csv"
    _write_csv(path, 300)
    streamed, in_memory = prepare_data(_config(path)), prepare_data(_config(path, stream="false"))
    assert isinstance(streamed, TrainingData) and isinstance(in_memory, TrainingData)
    assert (streamed.streamed, in_memory.streamed) == (True, False)
    # What an export is verified on: the test rows as the file holds them, before standardization.
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[0, 1, 2])
    test_rows = raw[split_codes(np.arange(300), 3, 0.2, 0.1) == TEST]
    assert streamed.raw_test_inputs(5) == pytest.approx(test_rows[:5], abs=1e-5)
    assert len(in_memory.raw_test_inputs(1000)) == in_memory.sizes()["test"]
    for data in (streamed, in_memory):  # what the run's log reads, on both kinds
        assert (data.adapted, data.left_out) == ([], {})
    for data in (streamed, in_memory):  # what calibration fits on: the whole validation split, in chunks
        chunks = list(data.validation_chunks())
        assert sum(len(x) for x, _ in chunks) == sum(len(y) for _, y in chunks) == data.sizes()["validation"] > 0
        assert chunks[0][0].dtype == np.float32 and chunks[0][0].shape[1:] == (3,)


def test_batches_are_full_except_the_last_and_cover_the_split(tmp_path):
    path = tmp_path / "d.csv"
    _write_csv(path, 1000)
    data = prepare_data(_config(path))
    data.reader.chunk_rows = 70  # many chunks: batches must still be exactly 32 rows
    batches = list(data.iter_split(TRAIN, 32, True))
    assert all(len(x) == 32 for x, _ in batches[:-1])
    assert sum(len(x) for x, _ in batches) == data.sizes()["train"]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32


@pytest.mark.slow
def test_streamed_training_evaluate_and_predict(tmp_path):
    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict
    from dltool.commands.train import train

    path = tmp_path / "d.csv"
    _write_csv(path, 2000)
    run = train(_config(path), runs_root=tmp_path / "runs")
    info = json.loads(run.file("run.json").read_text())
    assert info["status"] == "COMPLETED" and info["data"]["streamed"] is True
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    report = evaluate(run)
    assert report["samples"] == info["data"]["test"]
    assert report["classification"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    result = predict(run, [path])
    assert result.rows == 2000 and result.output.splitlines()[0] == "input,row,label,prob_no,prob_yes"


def test_processes_share_each_streamed_batch_and_together_read_one_process_batches(tmp_path):
    path = tmp_path / "d.csv"
    _write_csv(path, 1000)
    config = _config(path)
    alone = prepare_data(config)
    whole = list(alone.iter_split(TRAIN, 32, shuffle=True))  # the batches one process trains on, epoch 1
    shares = []
    for process in range(2):
        data = prepare_data(config)  # each process prepares the same data
        assert data.keep_share(2, process, 4, 32) == "16 rows of every batch per process, streamed"
        left_out = data.left_out  # 2 processes with 2 devices each
        shares.append(list(data._shared(TRAIN, 16, True, None)))
    last = alone.counts[TRAIN] % 32
    assert left_out == ({"train": last % 4} if last % 4 else {}) | (
        {"validation": alone.counts[VALIDATION] % 32 % 4} if alone.counts[VALIDATION] % 32 % 4 else {}
    )
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for (x0, y0), (x1, y1), (x, y) in zip(*shares, whole):
        kept = len(x) - len(x) % 4  # the last batch loses its last rows so 4 devices get equal parts
        assert len(x0) == len(x1) == kept // 2
        assert np.array_equal(np.concatenate([x0, x1]), x[:kept]) and np.array_equal(np.concatenate([y0, y1]), y[:kept])
