"""The one data interface: arrays in memory and streamed sources answer the same calls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dltool.data import ArrayData, TrainingData
from dltool.data.base import shard_for_process
from dltool.data.preprocessing import Preprocessing
from dltool.errors import ConfigError


def _arrays(train: int, validation_is_test: bool = False) -> ArrayData:
    x = np.arange(train * 2, dtype="float32").reshape(train, 2)
    x_test, y_test = x[:9] + 1000, np.arange(9)
    x_val, y_val = (x_test, y_test) if validation_is_test else (x[:6], np.arange(6))
    return ArrayData(
        x_train=x,
        y_train=np.arange(train),
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        preprocessing=Preprocessing(input_shape=[2], task="regression"),
        fingerprint="f",
        test_source="fraction 0.2 (seed 1)",
    )


def test_each_process_gets_its_slice_of_every_batch_and_together_they_are_the_batches():
    rows = np.arange(22)  # batches of 8: [0..7], [8..15], [16..21] (a shorter last batch, even in size)
    shares = [shard_for_process(rows, 8, 2, process) for process in range(2)]
    assert shares[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18]
    assert shares[1].tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 19, 20, 21]
    # Keras takes batches of 8 / 2 from each share: put side by side, they are one process's batches
    rebuilt = np.concatenate(
        [np.concatenate([share[start : start + 4] for share in shares]) for start in range(0, len(shares[0]), 4)]
    )
    assert rebuilt.tolist() == rows.tolist()


def test_even_out_trims_each_split_to_a_multiple_of_the_devices_and_keeps_validation_as_test():
    data = _arrays(13, validation_is_test=True)
    assert data.even_out(2) == {"train": 1, "test": 1} == data.left_out
    assert len(data.x_train) == len(data.y_train) == 12 and len(data.x_test) == len(data.y_test) == 8
    assert data.x_val is data.x_test and data.validation_is_test


def test_a_process_of_several_keeps_its_share_of_every_training_and_validation_batch():
    data = _arrays(22)
    assert data.keep_share(2, 1, 2, 8) == "11 training samples per process"
    assert data.y_train.tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 19, 20, 21]
    assert data.y_val.tolist() == [3, 4, 5] and len(data.x_test) == 9  # the test split stays whole


def test_validation_chunks_are_the_whole_validation_split_also_after_a_process_took_its_share():
    data = _arrays(22)
    assert [y.tolist() for _, y in data.validation_chunks()] == [[0, 1, 2, 3, 4, 5]]
    data.keep_share(2, 1, 2, 8)
    ((x, y),) = data.validation_chunks()
    assert y.tolist() == [0, 1, 2, 3, 4, 5] and x.tolist() == _arrays(22).x_val.tolist()
    assert list(dataclasses.replace(_arrays(22), x_val=None, y_val=None).validation_chunks()) == []


def test_one_process_alone_keeps_all_of_it():
    data, whole = _arrays(22), _arrays(22)
    data.keep_share(1, 0, 1, 8)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test"):
        assert getattr(data, name).tolist() == getattr(whole, name).tolist()


def test_arrays_lend_their_training_split_and_a_stream_says_why_it_cannot(tmp_path):
    data = _arrays(10)
    x, y = data.training_arrays("Normalization", "data.stream")
    assert x is data.x_train and y is data.y_train
    assert not data.streamed and data.sizes()["train"] == 10 and data.target_width == 1

    class Streamed(TrainingData):  # only the base's behaviour is under test
        streamed = True
        validation_is_test = target_width = sizes = fit_inputs = evaluate_inputs = test_chunks = None
        raw_test_inputs = even_out = keep_share = validation_chunks = None

    with pytest.raises(ConfigError, match="Normalization need") as info:
        Streamed().training_arrays("Normalization", "data.stream")
    assert info.value.path == "data.stream" and "set data.stream: false" in str(info.value)


def test_raw_test_inputs_are_the_source_s_before_preprocessing():
    data = _arrays(10)
    data.raw_x_test = (data.x_test * 255).astype(np.uint8)
    assert data.raw_test_inputs(4).dtype == np.uint8 and len(data.raw_test_inputs(4)) == 4
