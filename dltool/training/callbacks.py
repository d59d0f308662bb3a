"""The Keras callbacks a run trains with, one class each; :func:`dltool.training.fitting.fit` puts them together.

This module imports Keras when it is imported: only :mod:`dltool.training.fitting`
imports it, inside ``fit``, once the backend is chosen and Keras loaded, so
``dltool --help`` and validation never load it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras

from ..errors import ConfigError, NonFiniteLoss
from ..keras_io import save_model_atomic
from .checkpoints import callback_states
from .observer import Observer, StopRequested


def learning_rate(model) -> float:
    """The optimizer's current learning rate, as a float."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _column_order(item) -> tuple:
    """loss first, then metrics by name; training values before validation values."""
    name = item[0]
    base = name[4:] if name.startswith("val_") else name
    return (name.startswith("val_"), base != "loss", base)


def monitor_direction(model, monitor: str, mode: str = "auto") -> str | None:
    """'min' or 'max': whether ``monitor`` improves going down or up; None when mode is 'auto' and nobody knows.

    ``mode`` (default 'auto') 'min' or 'max' decides. Otherwise the metric
    decides, as in Keras's ``MonitorCallback._set_monitor_op`` (private, so
    mirrored here): the loss goes down, and a compiled metric of that name
    (``val_`` left off) goes the way of its ``_direction`` ('up' or 'down').
    Call it once the model has trained a step: Keras builds the compiled
    metrics then.
    """
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    direction = "min" if name == "loss" else None
    for container in model.metrics:
        # Keras's CompileMetrics and MetricsList hold the compiled metrics; a plain metric stands for itself.
        for metric in getattr(container, "metrics", None) or [container]:
            if metric.name == name and hasattr(metric, "_direction"):
                direction = "max" if metric._direction == "up" else "min"
    return direction


class EpochRecorder(keras.callbacks.Callback):
    """Times each epoch and the first training step, adds the learning rate (and the phase), stops on a non-finite
    loss; ``rows`` holds the epochs, ``first_step`` the ``perf_counter`` time the first batch ended (None before)."""

    # Keras calls the batch hooks of callbacks that all say async_safe from a worker thread, so the training loop
    # goes on while a step's logs are computed; one callback without it makes every step wait for its logs
    # (mnist_mlp on JAX: 15 % of its fit). first_step then reads when the step's logs were ready.
    async_safe = True

    def __init__(self, phase: int | None = None):
        super().__init__()
        self.phase = phase  # None: a run without phases (no fine_tune); else 1 or 2, in every row
        self.rows: list[dict] = []
        self.failure: NonFiniteLoss | None = None
        self.first_step: float | None = None
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        rate = learning_rate(self.model)
        if logs is not None:
            logs.setdefault("learning_rate", rate)  # callbacks after this one may monitor it
        logs = {k: float(v) for k, v in sorted((logs or {}).items(), key=_column_order) if k != "learning_rate"}
        row = {
            "epoch": epoch + 1,
            **({"phase": self.phase} if self.phase is not None else {}),
            **logs,
            "learning_rate": rate,
            "epoch_seconds": round(time.perf_counter() - self._start, 4),
        }
        bad = [k for k, v in logs.items() if k.endswith("loss") and not math.isfinite(v)]
        if bad:
            self.failure = NonFiniteLoss(
                f"{bad[0]} became {'NaN' if math.isnan(logs[bad[0]]) else 'infinite'} at epoch {epoch + 1}; "
                "lower train.optimizer.learning_rate, or check the data for extreme values"
            )
            self.model.stop_training = True
            return
        self.rows.append(row)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the best epoch so far to ``path``, atomically (temp file + rename).

    ``mode`` 'min', 'max' or 'auto' (the metric's own direction, see
    :func:`monitor_direction`). ``best`` is the best value times the sign
    that makes lower better (saved in checkpoints and restored on resume).
    """

    def __init__(self, monitor: str, mode: str, path: Path):
        super().__init__()
        self.monitor, self.mode, self.path = monitor, mode, Path(path)
        self.sign: float | None = None  # decided at the first epoch's end, once Keras has built the metrics
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.sign is None:
            direction = monitor_direction(self.model, self.monitor, self.mode)
            if direction is None:
                raise ConfigError(
                    f"cannot tell whether '{self.monitor}' improves going up or down; set mode: max or mode: min",
                    path="train.callbacks.checkpoint.mode",
                )
            self.sign = -1.0 if direction == "max" else 1.0
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or self.sign * float(value) >= self.best:
            return
        self.best = self.sign * float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_model_atomic(self.model, self.path)


class RestoreProgress(keras.callbacks.Callback):
    """Puts the resumed callbacks' progress back (``restore``: {key: {attribute: value}}, as checkpoints hold it).

    It comes after those callbacks in the list: Keras calls ``on_train_begin`` in list order, and theirs resets
    what this one restores.
    """

    def __init__(self, stateful: dict, restore: dict):
        super().__init__()
        self.stateful, self.restore = stateful, restore

    def on_train_begin(self, logs=None):
        for key, callback in self.stateful.items():
            for name, value in (self.restore.get(key) or {}).items():
                setattr(callback, name, value)


class Persist(keras.callbacks.Callback):
    """Hands each finished epoch on (to the caller's hooks, then the observer), after every other callback
    has updated its state."""

    def __init__(
        self,
        recorder: EpochRecorder,
        stateful: dict,
        observer: Observer,
        on_epoch_end: Callable[[dict], None] | None,
        on_checkpoint: Callable[[int, dict], None] | None,
    ):
        super().__init__()
        self.recorder, self.stateful, self.observer = recorder, stateful, observer
        self.epoch_hook, self.checkpoint_hook = on_epoch_end, on_checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if self.recorder.failure is not None:
            return
        row = self.recorder.rows[-1]
        if self.epoch_hook is not None:
            self.epoch_hook(row)
        if self.checkpoint_hook is not None:
            self.checkpoint_hook(epoch + 1, callback_states(self.stateful))
        self.observer.on_epoch_end(row)


class Watch(keras.callbacks.Callback):
    """Progress for the observer, and a stop between batches when ``should_stop()`` turns true.

    Async-safe (see :class:`EpochRecorder`): the batch-end hooks may run in Keras's worker threads, several at
    once and out of order, so the observer hears them one at a time and never a step older than one it has
    heard. The stop is asked on the main thread before each call of the train or test function, and again when a
    call's logs come in (raised there, Keras re-raises it on the main thread at its next batch or at the epoch's
    end).
    """

    async_safe = True

    def __init__(self, observer: Observer, should_stop: Callable[[], bool] | None):
        super().__init__()
        self.observer = observer
        self.should_stop = should_stop or (lambda: False)
        self._progress_lock = threading.Lock()
        self._last_step = 0

    def on_train_begin(self, logs=None):
        self.observer.on_train_begin(self.params.get("epochs"), self.params.get("steps"))

    def on_epoch_begin(self, epoch, logs=None):
        with self._progress_lock:  # Keras has waited for the last epoch's batch hooks (on_epoch_end)
            self._last_step = 0
        self.observer.on_epoch_begin(epoch + 1)

    def on_train_batch_begin(self, batch, logs=None):
        self._stop_if_asked()

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_asked()
        with self._progress_lock:
            if batch + 1 <= self._last_step:
                return
            self._last_step = batch + 1
            self.observer.on_batch_end(batch + 1, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._stop_if_asked()

    def on_test_batch_end(self, batch, logs=None):
        self._stop_if_asked()

    def _stop_if_asked(self) -> None:
        if self.should_stop():
            raise StopRequested()


class EpochsToData(keras.callbacks.Callback):
    """Tells the data each epoch as it starts (counted from 1): a streamed split shuffles by Keras's epoch, not
    by its passes (Keras makes more than one per epoch), and a resumed run starts at its first missing epoch."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.start_epoch(epoch + 1)


class EpochTensorBoard(keras.callbacks.Callback):
    """Each epoch's metrics and learning rate as TensorBoard scalars under ``log_dir``.

    The same tags, folders and records as keras.callbacks.TensorBoard with update_freq="epoch" (train/ and
    validation/, epoch_loss, epoch_accuracy, ...: scalar tensors of the "scalars" plugin, as ``tf.summary.scalar``
    writes them), but no batch-level hook, so Keras keeps dispatching batch callbacks asynchronously and training
    runs at full speed. Written with TensorBoard's own event-file writer, without TensorFlow: a JAX or torch run
    does not import it for its logs.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writers: dict[str, EventFile] = {}

    def _writer(self, split: str) -> EventFile:
        if split not in self.writers:
            self.writers[split] = EventFile(self.log_dir / split)
        return self.writers[split]

    def on_epoch_end(self, epoch, logs=None):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = dict(logs or {})
        values.setdefault("learning_rate", learning_rate(self.model))
        now = time.time()
        for key, value in values.items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            summary = summary_pb2.Summary(value=[scalar_summary(f"epoch_{name}", float(value))])
            self._writer(split).write(event_pb2.Event(wall_time=now, step=epoch, summary=summary))

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def scalar_summary(tag: str, value: float):
    """A ``Summary.Value`` as ``tf.summary.scalar`` writes it: a float32 scalar tensor of the "scalars" plugin."""
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=[value]
        ),
        metadata=summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")),
    )


class EventFile:
    """One TensorBoard event file (``events.out.tfevents.TIME.HOST.PID.N``): ``Event`` protos in TFRecord framing,
    as TensorFlow's writer makes them, written with a plain ``open`` (the umask's mode) and flushed at most every
    FLUSH_SECONDS, so a live TensorBoard stays current without a flush per epoch. Only TensorBoard's protos are
    imported (its record writer would bring its TensorFlow stand-in along: 0.15 s)."""

    FLUSH_SECONDS = 2.0
    _count = 0

    def __init__(self, folder: Path):
        import os
        import socket

        from tensorboard.compat.proto import event_pb2

        folder.mkdir(parents=True, exist_ok=True)
        EventFile._count += 1
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{EventFile._count}"
        self.path = folder / name
        self._file = open(self.path, "wb")  # noqa: SIM115  (closed by close())
        self._flushed = time.monotonic()
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, event) -> None:
        """Append ``event`` as one record: length, its masked CRC-32C, the bytes, their masked CRC-32C."""
        import struct

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(
            header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
        )
        if time.monotonic() - self._flushed >= self.FLUSH_SECONDS:
            self._file.flush()
            self._flushed = time.monotonic()

    def close(self) -> None:
        self._file.close()


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli's polynomial, reflected
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C of ``data``, rotated right by 15 bits plus a constant."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
