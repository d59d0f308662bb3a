"""Image folders read from disk batch by batch (data.stream on an images source): the same splits and pixels as in
memory, seeded shuffles per epoch, each process's own files, the caches, unreadable files, the stream: auto rule."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import numpy as np
import pytest
from e2e_support import stop_after

from dltool.config import config_from_text
from dltool.data import image_stream as image_stream_module
from dltool.data import prepare_data, should_stream
from dltool.data.image_stream import StreamedImages
from dltool.data.streaming import TEST, TRAIN, VALIDATION
from dltool.errors import DataError

COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
PER_CLASS = {"red": 15, "green": 13, "blue": 12}  # 40 images, classes of unequal size

CONFIG = """
name: stream-images
seed: 5
data: {{source: images, path: {path}, image_size: [10, 12], test: 0.25, validation: 0.2, stream: {stream}{extra}}}
model: {{input_shape: [10, 12, 3], layers: [Flatten, {{Dense: {{units: 3, activation: softmax}}}}]}}
train:
  optimizer: {{name: adam, learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: 4
  batch_size: 4
  tensorboard: false
  plots: false
"""


def _write_image(path, color, size, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (np.array(color) + rng.integers(-40, 40, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(path)


def make_folder(root):
    """40 PNGs in 3 class folders; a third of them 12x10 already, the others of other sizes (resized)."""
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS[name]):
            size = (12, 10) if i % 3 == 0 else (14 + i, 9 + i % 4)
            _write_image(root / name / f"{name}{i:02d}.png", color, size, seed=i)
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "photos")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(tmp_path / "cache"))


def config(path, stream="true", **data):
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in data.items())
    return config_from_text(CONFIG.format(path=json.dumps(str(path)), stream=stream, extra=extra))


def batches(data, split, batch_size=5, shuffle=False):
    xs, ys = zip(*data.iter_split(split, batch_size, shuffle))
    return np.concatenate(xs), np.concatenate(ys)


class CountReads:
    """Counts read_image calls of the stream (monkeypatched), by file name."""

    def __init__(self, monkeypatch):
        self.names: list[str] = []
        real = image_stream_module.read_image

        def counted(path, settings, *args):
            self.names.append(path.name)
            return real(path, settings, *args)

        monkeypatch.setattr(image_stream_module, "read_image", counted)


# --------------------------------------------------------------------------- splits and pixels
@pytest.mark.slow  # the streamed test split goes through tf.data: TensorFlow's import
@pytest.mark.parametrize("extra", [{}, {"scale": 255, "standardize": True}])
def test_streamed_and_in_memory_give_the_same_splits_pixels_and_preprocessing(folder, extra):
    arrays = prepare_data(config(folder, "false", **extra))
    streamed = prepare_data(config(folder, "true", **extra))
    assert isinstance(streamed, StreamedImages) and not arrays.streamed
    assert {k: v for k, v in streamed.sizes().items() if k not in ("streamed", "cache", "test_split")} == {
        k: v for k, v in arrays.sizes().items() if k != "test_split"
    }
    assert arrays.sizes()["test_split"] == "fraction 0.25 of each class (seed 5)"
    assert streamed.sizes()["test_split"] == "fraction 0.25 of each class (seed 5), streamed"
    for split, x, y in [
        (TRAIN, arrays.x_train, arrays.y_train),
        (VALIDATION, arrays.x_val, arrays.y_val),
        (TEST, arrays.x_test, arrays.y_test),
    ]:
        stream_x, stream_y = batches(streamed, split)
        assert stream_x.dtype == x.dtype == np.float32 and stream_y.dtype == y.dtype == np.int32
        np.testing.assert_allclose(stream_x, x, rtol=0, atol=1e-5)  # standardize: a sample's sums, in float64
        assert np.array_equal(stream_y, y)
    memory_state, stream_state = arrays.preprocessing.to_dict(), streamed.preprocessing.to_dict()
    for key in ("mean", "std"):
        np.testing.assert_allclose(stream_state.pop(key) or 0, memory_state.pop(key) or 0, rtol=1e-9)
    assert stream_state == memory_state
    assert np.array_equal(streamed.raw_test_inputs(4), arrays.raw_x_test[:4])
    chunks = list(streamed.test_chunks(limit=7))
    np.testing.assert_allclose(np.concatenate([x for x, _ in chunks]), arrays.x_test[:7], atol=1e-5)
    for data in (streamed, arrays):  # what calibration fits on: the whole validation split
        x_val, y_val = (np.concatenate(parts) for parts in zip(*data.validation_chunks()))
        np.testing.assert_allclose(x_val, arrays.x_val, atol=1e-5)
        assert np.array_equal(y_val, arrays.y_val)


def test_splits_are_stratified_by_class_and_seeded(folder):
    data = prepare_data(config(folder))
    labels = data.listing.labels
    # 40 files: 10 test (blue 12 x 0.25 = 3, green 13 x 0.25 = 3.25 -> 3, red 15 x 0.25 = 3.75 -> 4: the largest
    # remainder), then 6 of the 30 left for validation (blue 1.8 -> 2, green 2.0, red 2.2 -> 2)
    expected = {"blue": (3, 2), "green": (3, 2), "red": (4, 2)}
    for index, name in enumerate(data.listing.classes):
        test, validation = expected[name]
        assert np.sum(labels[data._rows[TEST]] == index) == test
        assert np.sum(labels[data._rows[VALIDATION]] == index) == validation
        assert np.sum(labels[data._rows[TRAIN]] == index) == PER_CLASS[name] - test - validation
    every = np.concatenate(list(data._rows.values()))
    assert sorted(every.tolist()) == list(range(40))  # each file in exactly one split
    again = prepare_data(config(folder))
    other = prepare_data(config(folder, split_seed=6))
    assert np.array_equal(again._rows[TEST], data._rows[TEST])
    assert not np.array_equal(other._rows[TEST], data._rows[TEST])


def _test_files_of(data, name: str) -> set[str]:
    return {data.listing.relative_path(row) for row in data._rows[TEST] if data.listing.files[row].parent.name == name}


def test_a_class_split_does_not_move_when_another_class_gains_files(folder):
    before = prepare_data(config(folder))
    _write_image(folder / "red" / "red99.png", COLORS["red"], (12, 10), seed=99)
    after = prepare_data(config(folder))
    assert _test_files_of(before, "blue") == _test_files_of(after, "blue")
    assert _test_files_of(before, "green") == _test_files_of(after, "green")


# --------------------------------------------------------------------------- shuffles
def test_each_epoch_shuffles_the_training_files_with_the_seed_and_its_number(folder):
    data = prepare_data(config(folder))
    orders = {}
    for epoch in (1, 2, 1):
        data.start_epoch(epoch)
        orders.setdefault(epoch, []).append(batches(data, TRAIN, shuffle=True)[1])
    assert np.array_equal(orders[1][0], orders[1][1])  # the same epoch: the same order
    assert not np.array_equal(orders[1][0], orders[2][0])
    resumed = prepare_data(config(folder))  # a resumed run starts at epoch 2 in a fresh process
    resumed.start_epoch(2)
    assert np.array_equal(batches(resumed, TRAIN, shuffle=True)[1], orders[2][0])
    # validation and test keep their order whatever the epoch
    data.start_epoch(3)
    assert np.array_equal(batches(data, TEST)[1], batches(resumed, TEST)[1])


# --------------------------------------------------------------------------- several processes
def test_processes_decode_only_their_rows_and_together_give_one_process_batches(folder, monkeypatch):
    alone = prepare_data(config(folder))
    alone.start_epoch(3)
    whole = list(alone.iter_split(TRAIN, 8, shuffle=True))  # global batches of 8
    shares, reads = [], []
    for process in range(2):
        data = prepare_data(config(folder))  # each process prepares the same data
        data.start_epoch(3)
        assert data.keep_share(2, process, 2, 8) == "4 rows of every batch per process, streamed"
        counter = CountReads(monkeypatch)
        shares.append(list(data._shared(TRAIN, 4, True, None)))
        reads.append(counter.names)
        monkeypatch.undo()
        monkeypatch.setenv("DLTOOL_CACHE_DIR", os.environ.get("DLTOOL_CACHE_DIR", ""))
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for (x0, y0), (x1, y1), (x, y) in zip(*shares, whole):
        kept = len(x) - len(x) % 2
        assert np.array_equal(np.concatenate([x0, x1]), x[:kept]) and np.array_equal(np.concatenate([y0, y1]), y[:kept])
    # each process decoded only its own half of the training files, once each
    assert len(reads[0]) == len(set(reads[0])) and not set(reads[0]) & set(reads[1])
    assert len(reads[0]) + len(reads[1]) == alone.counts[TRAIN] - alone.counts[TRAIN] % 8 % 2


# --------------------------------------------------------------------------- caches
def test_memory_cache_decodes_each_file_once(folder, monkeypatch):
    data = prepare_data(config(folder, cache="memory"))
    counter = CountReads(monkeypatch)
    for epoch in (1, 2):
        data.start_epoch(epoch)
        batches(data, TRAIN, shuffle=True)
    assert len(counter.names) == data.counts[TRAIN]  # each once: the second epoch reads the cache
    assert data.sizes()["cache"] == {"kind": "memory"}


def test_disk_cache_is_built_reused_and_invalidated_by_a_file_or_a_setting(folder, monkeypatch, tmp_path):
    first = prepare_data(config(folder, cache="disk"))
    assert first.sizes()["cache"]["state"] == "building"
    for split in (TRAIN, VALIDATION, TEST):
        batches(first, split)
    assert first.sizes()["cache"]["state"] == "built"
    assert "disk cache" in first.take_notes()[-1]
    folder_of = first.sizes()["cache"]["folder"]
    assert os.path.dirname(folder_of) == str(tmp_path / "cache")
    assert sorted(os.listdir(folder_of)) == ["listing.json", "pixels.npy"]  # nothing half-written left

    counter = CountReads(monkeypatch)
    second = prepare_data(config(folder, cache="disk"))
    assert second.fingerprint == first.fingerprint and second.sizes()["cache"]["state"] == "reused"
    reference = prepare_data(config(folder, "false"))
    np.testing.assert_array_equal(batches(second, TRAIN)[0], reference.x_train)
    assert counter.names == []  # every file from the cache

    in_memory = prepare_data(config(folder, "false", cache="disk"))  # a folder loaded into memory reads it too
    np.testing.assert_array_equal(in_memory.x_train, reference.x_train)

    touched = folder / "green" / "green03.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    changed = prepare_data(config(folder, cache="disk"))
    assert changed.fingerprint != first.fingerprint and changed.sizes()["cache"]["state"] == "building"
    resized = config_from_text(
        CONFIG.format(path=json.dumps(str(folder)), stream="true", extra=", cache: disk").replace("[10, 12]", "[8, 8]")
    )
    resized = resized.model_copy(update={"model": resized.model.model_copy(update={"input_shape": [8, 8, 3]})})
    assert prepare_data(resized).fingerprint not in (first.fingerprint, changed.fingerprint)


def test_several_processes_reuse_a_disk_cache_but_do_not_build_one(folder):
    data = prepare_data(config(folder, cache="disk"))
    data.keep_share(2, 0, 2, 8)
    assert data.sizes()["cache"] == {"kind": "none"}  # each process reads only its share: never a whole cache
    assert "data.cache: disk is built by a run in one process and reused by several" in data.take_notes()[-1]
    built = prepare_data(config(folder, cache="disk"))
    for split in (TRAIN, VALIDATION, TEST):
        batches(built, split)
    shared = prepare_data(config(folder, cache="disk"))
    shared.keep_share(2, 1, 2, 8)
    assert shared.sizes()["cache"]["state"] == "reused"


# --------------------------------------------------------------------------- unreadable files
def _corrupt(folder, name="red/red07.png"):
    (folder / name).write_bytes(b"not a png")
    return folder / name


def test_an_unreadable_file_fails_naming_it(folder):
    bad = _corrupt(folder)
    streamed = prepare_data(config(folder))
    with pytest.raises(DataError) as caught:
        for split in (TRAIN, VALIDATION, TEST):
            batches(streamed, split)
    assert str(caught.value) == (
        f"{bad}: cannot read as an image (UnidentifiedImageError); expected a PNG, JPEG, BMP, GIF or WebP file; "
        "or set data.on_bad_file: skip to leave such files out"
    )
    with pytest.raises(DataError, match="red07.png: cannot read as an image .*data.on_bad_file: skip"):
        prepare_data(config(folder, "false"))


def test_on_bad_file_skip_counts_and_names_the_files_and_keeps_batches_whole(folder):
    _corrupt(folder)
    _corrupt(folder, "blue/blue05.png")
    streamed = prepare_data(config(folder, on_bad_file="skip"))
    for split in (TRAIN, VALIDATION, TEST):
        sizes = [len(x) for x, _ in streamed.iter_split(split, 4, False)]
        # every batch full: the next readable file of the split takes an unreadable one's place
        assert sizes == [4] * (streamed.counts[split] // 4) + (
            [streamed.counts[split] % 4] if streamed.counts[split] % 4 else []
        )
    assert streamed.sizes()["unreadable_files"] == 2
    assert any(
        note == "data.on_bad_file: skip left out 2 unreadable image file(s): blue/blue05.png; red/red07.png"
        for note in streamed.take_notes()
    )
    arrays = prepare_data(config(folder, "false", on_bad_file="skip"))
    assert sum(v or 0 for k, v in arrays.sizes().items() if k in ("train", "validation", "test")) == 38
    assert arrays.warnings == [
        "data.on_bad_file: skip left out 2 unreadable image file(s): blue/blue05.png; red/red07.png"
    ]


# --------------------------------------------------------------------------- data.stream: auto
def test_stream_auto_streams_a_folder_whose_pixels_pass_the_budget(folder, monkeypatch):
    needed = 40 * 10 * 12 * 3 * 5  # uint8 then float32
    monkeypatch.setattr(image_stream_module, "stream_budget", lambda: needed)
    assert not should_stream(config(folder, "auto").data)
    monkeypatch.setattr(image_stream_module, "stream_budget", lambda: needed - 1)
    assert should_stream(config(folder, "auto").data)
    assert not should_stream(config(folder, "false").data)
    assert not should_stream(config(folder.parent / "missing", "auto").data)  # the loader says what is wrong


def test_stream_budget_is_a_quarter_of_memory_at_most_4_gib(monkeypatch):
    monkeypatch.setattr(image_stream_module, "physical_memory", lambda: 8 * 2**30)
    assert image_stream_module.stream_budget() == 2 * 2**30
    monkeypatch.setattr(image_stream_module, "physical_memory", lambda: 64 * 2**30)
    assert image_stream_module.stream_budget() == 4 * 2**30


# --------------------------------------------------------------------------- end to end (Keras)
@pytest.mark.slow
def test_a_streamed_folder_trains_evaluates_and_predicts(folder, tmp_path):
    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict
    from dltool.commands.train import train

    run = train(config(folder, scale=255, cache="disk"), runs_root=tmp_path / "runs")
    info = json.loads(run.file("run.json").read_text())
    assert info["status"] == "COMPLETED" and info["data"]["streamed"] is True
    assert info["data"]["cache"]["kind"] == "disk" and info["data"]["cache"]["state"] == "built"
    log = run.file("train.log").read_text()
    assert "streaming 40 images from" in log and "disk cache" in log and " built" in log
    metrics = json.loads(run.file("metrics.json").read_text())
    report = evaluate(run)
    assert report["data"] == "test split of the run's config (streamed)" and report["samples"] == 10
    assert report["classification"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert report["compiled"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    result = predict(run, [folder / "red" / "red00.png"])
    assert result.rows == 1


@pytest.mark.slow
def test_a_resumed_streamed_run_trains_the_epochs_it_missed_as_the_uninterrupted_run(folder, tmp_path, monkeypatch):
    from dltool.commands.resume import resume
    from dltool.commands.train import train
    from dltool.errors import TrainingInterrupted

    announced = []
    start_epoch = StreamedImages.start_epoch
    monkeypatch.setattr(
        StreamedImages, "start_epoch", lambda self, epoch: (announced.append(epoch), start_epoch(self, epoch))
    )

    monkeypatch.setattr(image_stream_module, "stream_budget", lambda: 0)  # stream: auto streams these 40 images
    deterministic = config(folder, "auto", scale=255)
    deterministic = deterministic.model_copy(
        update={"train": deterministic.train.model_copy(update={"deterministic": True})}
    )
    whole = train(deterministic, runs_root=tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        train(deterministic, runs_root=tmp_path / "parts", observer=stop_after(2))
    (stopped,) = (tmp_path / "parts").iterdir()
    # where auto would now load them into memory (another machine), the run still streams, as it started
    monkeypatch.setattr(image_stream_module, "stream_budget", lambda: 2**40)
    resumed = resume(str(stopped), runs_root=tmp_path / "parts")
    assert json.loads(resumed.file("run.json").read_text())["data"]["streamed"] is True
    assert announced == [1, 2, 3, 4] + [1, 2] + [3, 4]  # Keras's epochs, resumed at the first one missed

    def figures(run):
        header, *rows = run.file("history.csv").read_text().splitlines()
        keep = [i for i, name in enumerate(header.split(",")) if name != "epoch_seconds"]
        return [[float(row.split(",")[i]) for i in keep] for row in rows]

    # epochs 3 and 4 see the batches of the uninterrupted run's epochs 3 and 4: the same losses
    np.testing.assert_allclose(figures(resumed), figures(whole), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_unreadable_file_met_while_training_ends_the_run_failed_naming_it(folder, tmp_path):
    from e2e_support import run_cli

    data = prepare_data(config(folder))
    bad = data.listing.files[data._rows[TRAIN][-1]]  # decoded only once training reads its batch
    bad.write_bytes(b"not a png")
    path = tmp_path / "stream.yaml"
    path.write_text(CONFIG.format(path=json.dumps(str(folder)), stream="true", extra=""))
    result = run_cli("train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    message = (
        f"{bad}: cannot read as an image (UnidentifiedImageError); expected a PNG, JPEG, BMP, GIF or WebP file; "
        "or set data.on_bad_file: skip to leave such files out"
    )
    assert "Traceback" not in result.stderr and "function_node" not in result.stderr
    assert message in result.stderr.replace("\n", " ") or message in result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "FAILED" and info["error"] == message


@pytest.mark.slow
@pytest.mark.parametrize("split", [TRAIN, TEST], ids=["met-in-training", "met-in-the-test-evaluation"])
def test_a_run_that_fails_on_a_file_finalizes_its_data_iterators_before_returning(folder, tmp_path, split):
    """Left in reference cycles until the interpreter's exit, a tf.data iterator over a Python generator can abort
    the process there (exit -6 instead of 1, seen once in CI); the failed run releases them itself."""
    import gc

    import tensorflow as tf

    from dltool.commands.train import train
    from dltool.errors import TrainingError

    data = prepare_data(config(folder))
    data.listing.files[data._rows[split][-1]].write_bytes(b"not a png")

    def iterators():
        return {id(o) for o in gc.get_objects() if isinstance(o, tf.data.Iterator)}

    gc.collect()
    before = iterators()  # an earlier test's, still held by something of that test
    gc.disable()  # no automatic collection frees them by chance: only the run's own release can
    try:
        with pytest.raises(TrainingError, match="cannot read as an image"):
            train(config(folder), runs_root=tmp_path / "runs")
        left = iterators() - before
    finally:
        gc.enable()
    assert not left


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.multiprocess
@pytest.mark.jax
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX: pip install -e '.[jax]'")
def test_two_processes_train_a_streamed_folder_as_one(folder, tmp_path):
    from e2e_support import run_cli

    path = tmp_path / "stream.yaml"
    path.write_text(CONFIG.format(path=json.dumps(str(folder)), stream="true", extra=", scale: 255"))
    results = {}
    for how, command in {"alone": ["train"], "together": ["launch", "-n", "2"]}.items():
        (tmp_path / how).mkdir()
        done = run_cli(*command, str(path), "--backend", "jax", "--quiet", cwd=tmp_path / how)
        assert done.returncode == 0, done.stdout + done.stderr
        (run,) = (tmp_path / how / "runs").iterdir()
        results[how] = run
    log = (results["together"] / "train.log").read_text()
    assert "2 processes, 2 rows of every batch per process, streamed" in log
    worker = (results["together"] / "workers" / "1.log").read_text()
    weights = [re.search(r"final weights ([0-9a-f]{16})", text).group(1) for text in (log, worker)]
    assert weights[0] == weights[1]
    alone, together = (json.loads((results[h] / "metrics.json").read_text()) for h in ("alone", "together"))
    # the same global batches: the same losses, to float rounding of the gradients' sum over processes
    assert together["train"]["loss"] == pytest.approx(alone["train"]["loss"], rel=1e-3)
