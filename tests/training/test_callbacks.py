"""The Keras callbacks of a run (dltool.training.callbacks): a monitor's direction comes from the metric, as in Keras;
resumed callbacks get their progress back."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a tiny model trains one epoch so that Keras builds its metrics


def custom_mean(y_true, y_pred):
    import keras

    return keras.ops.mean(y_pred)


@pytest.fixture(scope="module")
def compiled_model():
    """A tiny binary classifier, trained one epoch so that Keras has built its compiled metrics."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy", "mae", "mse", "auc", "precision", custom_mean])
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 3)), (rng.random((16, 1)) > 0.5).astype("float32")
    model.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    return model


@pytest.mark.parametrize(
    "monitor, expected",
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("accuracy", "max"),
        ("val_mae", "min"),
        ("auc", "max"),
        ("val_precision", "max"),  # the name has neither 'acc' nor 'auc': the old guess said min
        ("mse", "min"),
        ("custom_mean", None),  # a function of ours: no direction, Keras's own callbacks refuse it too
        ("learning_rate", None),  # not a metric: nobody knows
    ],
)
def test_the_direction_comes_from_the_metric(compiled_model, monitor, expected):
    from dltool.training.callbacks import monitor_direction

    assert monitor_direction(compiled_model, monitor) == expected


def test_an_explicit_mode_wins(compiled_model):
    from dltool.training.callbacks import monitor_direction

    assert monitor_direction(compiled_model, "val_accuracy", "min") == "min"
    assert monitor_direction(compiled_model, "learning_rate", "max") == "max"


def test_the_best_checkpoint_keeps_the_highest_precision(compiled_model, tmp_path):
    from dltool.training.callbacks import BestCheckpoint

    path = tmp_path / "best.keras"
    checkpoint = BestCheckpoint("val_precision", "auto", path)
    checkpoint.set_model(compiled_model)
    checkpoint.on_epoch_end(0, {"val_precision": 0.5})
    assert path.is_file() and checkpoint.best == -0.5
    path.unlink()
    checkpoint.on_epoch_end(1, {"val_precision": 0.4})  # worse: not saved
    assert not path.exists()
    checkpoint.on_epoch_end(2, {"val_precision": 0.75})
    assert path.is_file() and checkpoint.best == -0.75


def test_a_checkpoint_on_a_value_without_a_direction_asks_for_a_mode(compiled_model, tmp_path):
    from dltool.errors import ConfigError
    from dltool.training.callbacks import BestCheckpoint

    checkpoint = BestCheckpoint("learning_rate", "auto", tmp_path / "best.keras")
    checkpoint.set_model(compiled_model)
    with pytest.raises(ConfigError) as caught:
        checkpoint.on_epoch_end(0, {"learning_rate": 0.001})
    assert str(caught.value) == (
        "train.callbacks.checkpoint.mode: cannot tell whether 'learning_rate' improves going up or down; "
        "set mode: max or mode: min"
    )
    assert math.isinf(checkpoint.best)


def test_resumed_callbacks_get_their_progress_back_after_keras_resets_it(compiled_model, tmp_path):
    import keras

    from dltool.training.callbacks import BestCheckpoint, RestoreProgress
    from dltool.training.checkpoints import callback_states

    stateful = {
        "early_stopping": keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        "best_checkpoint": BestCheckpoint("val_accuracy", "auto", tmp_path / "best.keras"),
    }
    restore = {"early_stopping": {"wait": 2, "best": 0.25, "best_epoch": 3}, "best_checkpoint": {"best": -0.9}}
    callbacks = keras.callbacks.CallbackList([*stateful.values(), RestoreProgress(stateful, restore)])
    callbacks.set_model(compiled_model)
    callbacks.on_train_begin()  # EarlyStopping's own on_train_begin sets wait 0 and best None first
    assert callback_states(stateful) == restore


def test_the_data_learns_each_epoch_as_keras_starts_it_counted_from_one():
    from dltool.training.callbacks import EpochsToData

    class Data:
        def __init__(self):
            self.epochs = []

        def start_epoch(self, epoch):
            self.epochs.append(epoch)

    data = Data()
    callback = EpochsToData(data)
    for epoch in (2, 3):  # Keras's 0-based epochs of a run resumed after its second epoch
        callback.on_epoch_begin(epoch)
    assert data.epochs == [3, 4]


def test_tensorboard_records_are_what_tensorboard_s_own_writer_makes():
    """EventFile writes TFRecord framing and tf.summary's scalar protos without TensorFlow (or TensorBoard's
    TensorFlow stand-in): the checksum and the summary bytes are TensorBoard's."""
    import os

    from tensorboard.compat.proto import summary_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_crc
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util

    from dltool.training.callbacks import masked_crc32c, scalar_summary

    for size in (0, 1, 7, 8, 9, 100, 4096):
        data = os.urandom(size)
        assert masked_crc32c(data) == tensorboard_crc(data)
    theirs = summary_pb2.Summary.Value(
        tag="epoch_loss",
        tensor=tensor_util.make_tensor_proto(0.25, dtype="float32"),
        metadata=metadata.create_summary_metadata(display_name="", description=""),
    )
    assert scalar_summary("epoch_loss", 0.25).SerializeToString() == theirs.SerializeToString()


def test_a_tensorboard_log_reads_back_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from dltool.training.callbacks import EventFile, scalar_summary

    log = EventFile(tmp_path / "train")
    for epoch, loss in enumerate([0.9, 0.5, 0.25]):
        summary = summary_pb2.Summary(value=[scalar_summary("epoch_loss", loss)])
        log.write(event_pb2.Event(wall_time=1.0 + epoch, step=epoch, summary=summary))
    log.close()
    assert oct(log.path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # a plain open()'s mode
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    events.Reload()
    from tensorboard.util.tensor_util import make_ndarray

    read = events.Tensors("epoch_loss")
    assert [e.step for e in read] == [0, 1, 2]
    np.testing.assert_allclose([float(make_ndarray(e.tensor_proto)) for e in read], [0.9, 0.5, 0.25], rtol=1e-6)


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_run_s_batch_callbacks_let_keras_dispatch_them_asynchronously(tmp_path):
    """One callback with a batch hook and no async_safe makes Keras wait for every step's logs: mnist_mlp on JAX
    lost 15 % of its fit to it."""
    import keras

    from dltool.config import config_from_text
    from dltool.training.fitting import _make_callbacks
    from dltool.training.observer import Observer

    config = config_from_text(
        "name: t\ndata: {source: sklearn, name: iris}\nmodel: {input_shape: [4], layers: [{Dense: {units: 3}}]}\n"
        "train: {loss: mse, callbacks: {early_stopping: {patience: 2}, checkpoint: {monitor: val_loss}}}\n",
        source="t.yaml",
    )
    _, callbacks, _ = _make_callbacks(
        config, on_epoch_end=None, on_checkpoint=None, observer=Observer(), best_path=tmp_path / "best.keras",
        restore={}, should_stop=None, tensorboard_dir=tmp_path / "tb", phase=None,
    )  # fmt: skip
    # Keras's own rule (CallbackList._configure_async_dispatch, on thread-safe backends: JAX and torch).
    hooks = ("on_batch_end", "on_train_batch_end", "on_test_batch_end")
    blocking = [
        type(callback).__name__
        for callback in callbacks
        if not getattr(callback, "async_safe", False)
        and any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) for hook in hooks)
    ]
    assert blocking == []
    assert {"EpochRecorder", "Watch"} <= {type(callback).__name__ for callback in callbacks}


def test_the_observer_hears_batches_one_at_a_time_and_in_order_when_keras_calls_out_of_order():
    import threading

    from dltool.training.callbacks import Watch
    from dltool.training.observer import Observer, StopRequested

    heard, inside = [], threading.Semaphore(1)

    class Hears(Observer):
        def on_batch_end(self, step, logs):
            assert inside.acquire(blocking=False), "two batch hooks at once"
            heard.append(step)
            inside.release()

    stop = threading.Event()
    watch = Watch(Hears(), stop.is_set)
    watch.on_epoch_begin(0)
    for batch in (31, 63, 47, 95, 95):  # Keras's worker threads may finish a later batch's hook first
        watch.on_train_batch_end(batch, {"loss": 1.0})
    assert heard == [32, 64, 96]
    watch.on_epoch_begin(1)
    watch.on_train_batch_end(31, {})
    assert heard[-1] == 32  # a new epoch counts from its first batch again
    stop.set()
    with pytest.raises(StopRequested):
        watch.on_train_batch_begin(0)  # asked on the main thread before the next call of the train function
    with pytest.raises(StopRequested):
        watch.on_test_batch_begin(0)
