"""Fit and evaluate: the Keras side of a run (compile is in model.py; the run folder is commands.train's).

The caller passes ``on_epoch_end`` and ``on_checkpoint`` (to persist each
epoch) and an optional observer (to display progress); all plain Python, so
this module is the only one that wires Keras callbacks. It writes only what
callbacks write at paths the caller gives (the best checkpoint, TensorBoard
logs); the run folder's own files are the caller's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoints import callback_states, resumable
from .config import ONE_HOT_LOSSES, ExperimentConfig
from .data import PreparedData
from .distributed import LOCAL, ProcessGroup
from .errors import ConfigError, TrainingError
from .keras_io import as_model_input, inference_batch_size, save_model_atomic
from .model import output_units


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite."""


@dataclass
class FitResult:
    """What happened during ``fit``: one row per epoch, and why it stopped."""

    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    restored_epoch: int | None = None  # early stopping's restore_best_weights put this epoch's weights back


def fit_targets(model, config: ExperimentConfig, y: np.ndarray) -> np.ndarray:
    """Shape targets for the loss: one-hot for categorical losses, (n, 1) floats for a single sigmoid output."""
    if not config.is_classifier:
        return y
    if config.train.loss in ONE_HOT_LOSSES:
        return np.eye(output_units(model), dtype=np.float32)[y]
    if output_units(model) == 1:
        return y.astype(np.float32).reshape(-1, 1)
    return y


def check_outputs_fit_targets(model, config: ExperimentConfig, data: PreparedData) -> None:
    """Refuse a last layer whose size cannot match the targets, before any run folder exists."""
    units = output_units(model)
    last = f"model.layers[{len(config.model.layers) - 1}]"
    if config.is_classifier:
        classes = len(data.preprocessing.class_names or [])
        if units == 1:
            if classes > 2:
                raise ConfigError(
                    f"the last layer has 1 output but the data has {classes} classes; "
                    f"use {{Dense: {{units: {classes}, activation: softmax}}}}",
                    path=last,
                )
            if "binary" not in config.train.loss and "hinge" not in config.train.loss.lower():
                raise ConfigError(
                    f"a single output needs a binary loss such as binary_crossentropy, "
                    f"received loss '{config.train.loss}'",
                    path="train.loss",
                )
        elif "binary" in config.train.loss.lower():
            raise ConfigError(
                f"{config.train.loss} takes one sigmoid output per sample, but the last layer has "
                f"{units} outputs; for the {classes} classes use {{Dense: {{units: 1, activation: sigmoid}}}}, "
                f"or loss sparse_categorical_crossentropy with units: {classes}",
                path=last,
            )
        elif units != classes:
            names = ", ".join(data.preprocessing.class_names[:12]) + (", ..." if classes > 12 else "")
            extra = " (each output is one class's probability; the extra ones would be classes that never occur)"
            raise ConfigError(
                f"the last layer has {units} outputs but the data has {classes} classes ({names}); "
                f"set units: {classes}" + (extra if units > classes else ""),
                path=last,
            )
    else:
        targets = data.target_width
        if units != targets:
            raise ConfigError(
                f"the last layer has {units} outputs but each sample has {targets} target "
                f"value(s); set units: {targets}",
                path=last,
            )


def _column_order(item) -> tuple:
    """loss first, then metrics by name; training values before validation values."""
    name = item[0]
    base = name[4:] if name.startswith("val_") else name
    return (name.startswith("val_"), base != "loss", base)


def _learning_rate(model) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class StopRequested(Exception):
    """Raised inside ``fit`` when ``should_stop()`` turns true (a first Ctrl-C or SIGTERM)."""


def _make_callbacks(
    config: ExperimentConfig,
    *,
    on_epoch_end,
    on_checkpoint,
    observer,
    best_path,
    restore: dict,
    should_stop,
    tensorboard_dir,
):
    import keras

    cfg = config.train.callbacks

    class EpochRecorder(keras.callbacks.Callback):
        """Times each epoch, adds the learning rate, stops on a non-finite loss."""

        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.failure: NonFiniteLoss | None = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            learning_rate = _learning_rate(self.model)
            if logs is not None:
                logs.setdefault("learning_rate", learning_rate)  # callbacks after this one may monitor it
            logs = {k: float(v) for k, v in sorted((logs or {}).items(), key=_column_order) if k != "learning_rate"}
            row = {
                "epoch": epoch + 1,
                **logs,
                "learning_rate": learning_rate,
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
        """Save the best epoch so far, atomically (temp file + rename)."""

        def __init__(self, monitor: str, mode: str, path: Path):
            super().__init__()
            self.monitor, self.path = monitor, Path(path)
            self.sign = -1.0 if mode == "max" or (mode == "auto" and ("acc" in monitor or "auc" in monitor)) else 1.0
            self.best = math.inf

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            if value is None or not math.isfinite(float(value)) or self.sign * float(value) >= self.best:
                return
            self.best = self.sign * float(value)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_model_atomic(self.model, self.path)

    class Persist(keras.callbacks.Callback):
        """Hands each finished epoch on, after every other callback has updated its state."""

        def on_epoch_end(self, epoch, logs=None):
            if recorder.failure is not None:
                return
            row = recorder.rows[-1]
            if on_epoch_end is not None:
                on_epoch_end(row)
            if on_checkpoint is not None:
                on_checkpoint(epoch + 1, callback_states(stateful))
            if observer is not None:
                observer.on_epoch_end(row)

    class Watch(keras.callbacks.Callback):
        """Progress for the observer, and a stop between batches when asked."""

        def on_train_begin(self, logs=None):
            if observer is not None:
                observer.on_train_begin(self.params.get("epochs"), self.params.get("steps"))

        def on_epoch_begin(self, epoch, logs=None):
            if observer is not None:
                observer.on_epoch_begin(epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            if should_stop is not None and should_stop():
                raise StopRequested()
            if observer is not None:
                observer.on_batch_end(batch + 1, logs)

        def on_test_batch_end(self, batch, logs=None):
            if should_stop is not None and should_stop():
                raise StopRequested()

    recorder = EpochRecorder()
    callbacks: list = [recorder]
    stateful: dict = {}
    if cfg.early_stopping:
        stateful["early_stopping"] = resumable(keras.callbacks.EarlyStopping, "early_stopping", restore)(
            **cfg.early_stopping.model_dump()
        )
    if cfg.reduce_lr_on_plateau:
        stateful["reduce_lr_on_plateau"] = resumable(
            keras.callbacks.ReduceLROnPlateau, "reduce_lr_on_plateau", restore
        )(**cfg.reduce_lr_on_plateau.model_dump())
    if cfg.checkpoint and best_path is not None:
        stateful["best_checkpoint"] = resumable(BestCheckpoint, "best_checkpoint", restore)(
            cfg.checkpoint.monitor, cfg.checkpoint.mode, best_path
        )
    callbacks += list(stateful.values()) + [Persist(), Watch()]
    if tensorboard_dir is not None and config.train.tensorboard:
        from .backend import epoch_tensorboard_callback

        callbacks.append(epoch_tensorboard_callback(Path(tensorboard_dir)))
    return recorder, callbacks


def fit(
    model,
    config: ExperimentConfig,
    data: PreparedData,
    *,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_checkpoint: Callable[[int, dict], None] | None = None,
    observer=None,
    best_checkpoint: Path | None = None,
    initial_epoch: int = 0,
    restore: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
    tensorboard_dir: Path | None = None,
    group: ProcessGroup = LOCAL,
) -> FitResult:
    """Train ``model`` (compiled) on ``data`` from ``initial_epoch``.

    ``on_epoch_end(row)`` gets each finished epoch; ``on_checkpoint(epoch,
    callback_states)`` is called after it so the caller can save a resumable
    checkpoint; ``restore`` gives callback states saved that way. Raises
    NonFiniteLoss when the loss stops being finite and StopRequested when
    ``should_stop()`` turns true (polled from a helper thread too, so that the
    running TensorFlow call is cancelled: the model's weights are then those
    of a half-done step, and only a checkpoint taken before is usable).
    ``group`` (default one process alone): each of its processes passes its
    share of every batch.
    """
    train = config.train
    recorder, callbacks = _make_callbacks(
        config,
        on_epoch_end=on_epoch_end,
        on_checkpoint=on_checkpoint,
        observer=observer,
        best_path=best_checkpoint,
        restore=restore or {},
        should_stop=should_stop,
        tensorboard_dir=tensorboard_dir,
    )
    # Several processes: each passes its share of every batch, and Keras puts the shares together.
    batch_size = group.batch_share(train.batch_size)
    inputs = data.fit_inputs(lambda y: fit_targets(model, config, y), batch_size, train.shuffle)
    inputs["x"] = as_model_input(inputs["x"])
    if isinstance(inputs.get("validation_data"), tuple):  # a streamed dataset stays as it is
        x_val, y_val = inputs["validation_data"]
        inputs["validation_data"] = (as_model_input(x_val), y_val)
    from .backend import cancelled_when, is_cancellation

    start = time.perf_counter()
    try:
        # A stop request cancels the running steps_per_execution call instead of waiting for its last batch.
        with cancelled_when(should_stop) if should_stop is not None else contextlib.nullcontext():
            model.fit(
                **inputs,
                epochs=train.epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=0,
            )
    except Exception as exc:
        if should_stop is not None and should_stop() and is_cancellation(exc):
            raise StopRequested() from None
        raise
    finally:
        if observer is not None:
            observer.on_train_end()
    if recorder.failure is not None:
        raise recorder.failure
    return FitResult(
        history=recorder.rows,
        stopped_early=initial_epoch + len(recorder.rows) < train.epochs,
        seconds=time.perf_counter() - start,
        restored_epoch=_restored_epoch(callbacks),
    )


def _restored_epoch(callbacks: list) -> int | None:
    """The epoch whose weights EarlyStopping(restore_best_weights=True) restored at the end of fit, if any."""
    import keras

    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights:
            if callback.best_weights is not None:
                return int(callback.best_epoch) + 1
    return None


def evaluate_data(model, config: ExperimentConfig, data: PreparedData) -> dict:
    """The model's loss and compiled metrics on the test split of ``data`` (in memory or streamed)."""
    batch_size = inference_batch_size(config.train.batch_size)
    inputs = data.evaluate_inputs(lambda y: fit_targets(model, config, y), batch_size)
    inputs["x"] = as_model_input(inputs["x"])
    return {k: float(v) for k, v in model.evaluate(**inputs, verbose=0, return_dict=True).items()}


def evaluate_arrays(model, config: ExperimentConfig, x, y) -> dict:
    """The model's loss and compiled metrics on (x, y), as floats."""
    batch_size = inference_batch_size(config.train.batch_size)
    result = model.evaluate(
        as_model_input(x), fit_targets(model, config, y), batch_size=batch_size, verbose=0, return_dict=True
    )
    return {k: float(v) for k, v in result.items()}
