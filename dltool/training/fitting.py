"""Fit and evaluate: the Keras side of a run (compile is in model.py; the run folder is commands.run_lifecycle's).

The caller passes ``on_epoch_end`` and ``on_checkpoint`` (to persist each
epoch) and an optional observer (to display progress); all plain Python, so
this module is the only one that wires Keras callbacks. It writes only what
callbacks write at paths the caller gives (the best checkpoint, TensorBoard
logs); the run folder's own files are the caller's.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ONE_HOT_LOSSES, ExperimentConfig
from ..data import TrainingData
from ..distributed import LOCAL, ProcessGroup
from ..errors import ConfigError
from ..keras_io import as_model_input, inference_batch_size
from ..system_info import process_age
from .checkpoints import callback_states
from .model import output_units
from .observer import Observer, StopRequested


@dataclass
class FitResult:
    """What happened during ``fit``: one row per epoch, and why it stopped."""

    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    restored_epoch: int | None = None  # early stopping's restore_best_weights put this epoch's weights back
    first_step_seconds: float | None = None  # from the process's start to the end of the first training batch
    callback_states: dict = field(default_factory=dict)  # the stateful callbacks' progress at the end


def fit_targets(model, config: ExperimentConfig, y: np.ndarray) -> np.ndarray:
    """Shape targets for the loss: one-hot for categorical losses, (n, 1) floats for a single sigmoid output."""
    if not config.is_classifier:
        return y
    if config.train.loss in ONE_HOT_LOSSES:
        return np.eye(output_units(model), dtype=np.float32)[y]
    if output_units(model) == 1:
        return y.astype(np.float32).reshape(-1, 1)
    return y


def check_outputs_fit_targets(model, config: ExperimentConfig, data: TrainingData) -> None:
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
        check_class_weight_fits(model, config)
    else:
        targets = data.target_width
        if units != targets:
            raise ConfigError(
                f"the last layer has {units} outputs but each sample has {targets} target "
                f"value(s); set units: {targets}",
                path=last,
            )


def check_class_weight_fits(model, config: ExperimentConfig) -> None:
    """Keras weighs a sample by one class label per sample: it breaks on sequence outputs (a label per time step,
    keras#16674, #20701), so class weights need outputs of shape (batch, classes)."""
    shape = model.output_shape
    if config.train.class_weight is None or (isinstance(shape, tuple) and len(shape) == 2):
        return
    per_sample = list(shape[1:]) if isinstance(shape, tuple) else shape
    raise ConfigError(
        f"class weights need one prediction per sample, and the model outputs {per_sample} per sample (a sequence?); "
        "Keras cannot weigh labels per time step or per output (keras#16674); end model.layers with one vector per "
        "sample (e.g. return_sequences: false on the last recurrent layer, or GlobalAveragePooling1D), or remove "
        "train.class_weight",
        path="train.class_weight",
    )


def _make_callbacks(
    config: ExperimentConfig,
    *,
    on_epoch_end,
    on_checkpoint,
    observer: Observer,
    best_path,
    restore: dict,
    should_stop,
    tensorboard_dir,
    phase,
):
    """The recorder (its ``rows`` are the epochs), the callbacks in the order Keras must call them, and the stateful
    ones by key."""
    import keras

    from .callbacks import BestCheckpoint, EpochRecorder, EpochTensorBoard, Persist, RestoreProgress, Watch

    cfg = config.train.callbacks
    stateful: dict = {}  # the callbacks whose progress a resumable checkpoint keeps (checkpoints.RESUMABLE_STATE)
    if cfg.early_stopping:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(**cfg.early_stopping.model_dump())
    if cfg.reduce_lr_on_plateau:
        stateful["reduce_lr_on_plateau"] = keras.callbacks.ReduceLROnPlateau(**cfg.reduce_lr_on_plateau.model_dump())
    if cfg.checkpoint and best_path is not None:
        stateful["best_checkpoint"] = BestCheckpoint(cfg.checkpoint.monitor, cfg.checkpoint.mode, best_path)
    recorder = EpochRecorder(phase)
    callbacks = [recorder, *stateful.values(), RestoreProgress(stateful, restore)]
    callbacks += [Persist(recorder, stateful, observer, on_epoch_end, on_checkpoint), Watch(observer, should_stop)]
    if tensorboard_dir is not None and config.train.tensorboard:
        callbacks.append(EpochTensorBoard(Path(tensorboard_dir)))
    return recorder, callbacks, stateful


def release_data_iterators(exc: BaseException) -> None:
    """Finalize the data iterators of a fit that ``exc`` ended, now, while Python can still run their callbacks.

    The frames ``exc`` passed through hold the fit's iterator in reference cycles that only a garbage collection
    frees. Left to the interpreter's exit, a tf.data iterator over a Python generator is finalized after Python
    has stopped, which can abort the process ("terminate called without an active exception", exit -6 instead of
    1: seen once in CI, on a streamed image folder with an unreadable file). So the finished frames are cleared
    (their variables are only ever read by a debugger), then the cycles collected.
    """
    import gc
    import sys

    running = set()
    frame = sys._getframe()
    while frame is not None:
        running.add(frame)
        frame = frame.f_back
    finished = set()
    tb = exc.__traceback__
    while tb is not None:  # Keras filters its own frames out of the traceback: they are the callers of those kept
        frame = tb.tb_frame
        while frame is not None and frame not in running and frame not in finished:
            finished.add(frame)
            frame = frame.f_back
        tb = tb.tb_next
    for frame in finished:
        with contextlib.suppress(RuntimeError):  # a suspended generator's frame: cleared when it is
            frame.clear()
    gc.collect()


def fit(
    model,
    config: ExperimentConfig,
    data: TrainingData,
    *,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_checkpoint: Callable[[int, dict], None] | None = None,
    observer: Observer | None = None,
    best_checkpoint: Path | None = None,
    initial_epoch: int = 0,
    restore: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
    tensorboard_dir: Path | None = None,
    group: ProcessGroup = LOCAL,
    epochs: int | None = None,
    phase: int | None = None,
) -> FitResult:
    """Train ``model`` (compiled) on ``data`` from ``initial_epoch`` to ``epochs`` (default ``train.epochs``).

    ``on_epoch_end(row)`` gets each finished epoch; ``on_checkpoint(epoch,
    callback_states)`` is called after it so the caller can save a resumable
    checkpoint; ``restore`` gives callback states saved that way. Raises
    NonFiniteLoss when the loss stops being finite and StopRequested when
    ``should_stop()`` turns true (polled from a helper thread too, so that the
    running TensorFlow call is cancelled: the model's weights are then those
    of a half-done step, and only a checkpoint taken before is usable).
    ``group`` (default one process alone): each of its processes passes its
    share of every batch. ``phase`` (default None: no phases) goes into every history row: 1 for the first phase
    of a run with ``fine_tune``, 2 for the fine-tuning.
    """
    train = config.train
    epochs = train.epochs if epochs is None else epochs
    if observer is None:
        observer = Observer()
    recorder, callbacks, stateful = _make_callbacks(
        config,
        on_epoch_end=on_epoch_end,
        on_checkpoint=on_checkpoint,
        observer=observer,
        best_path=best_checkpoint,
        restore=restore or {},
        should_stop=should_stop,
        tensorboard_dir=tensorboard_dir,
        phase=phase,
    )
    from .callbacks import EpochsToData

    callbacks.insert(0, EpochsToData(data))
    # Several processes: each passes its share of every batch, and Keras puts the shares together.
    batch_size = group.batch_share(train.batch_size)
    inputs = data.fit_inputs(lambda y: fit_targets(model, config, y), batch_size, train.shuffle)
    inputs["x"] = as_model_input(inputs["x"])
    if isinstance(inputs.get("validation_data"), tuple):  # a streamed dataset stays as it is
        x_val, y_val = inputs["validation_data"]
        inputs["validation_data"] = (as_model_input(x_val), y_val)
        if group.size == 1:  # several processes: each passes its share of every validation batch as it does
            inputs["validation_batch_size"] = inference_batch_size(train.batch_size)
    from ..backend import cancelled_when, is_cancellation

    start = time.perf_counter()
    try:
        # A stop request cancels the running steps_per_execution call instead of waiting for its last batch.
        with cancelled_when(should_stop) if should_stop is not None else contextlib.nullcontext():
            model.fit(
                **inputs,
                class_weight=data.class_weight.by_index() if data.class_weight else None,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=0,
            )
    except BaseException as exc:
        release_data_iterators(exc)
        if isinstance(exc, Exception) and should_stop is not None and should_stop() and is_cancellation(exc):
            raise StopRequested() from None
        raise
    finally:
        observer.on_train_end()
    if recorder.failure is not None:
        raise recorder.failure
    ended = time.perf_counter()
    return FitResult(
        history=recorder.rows,
        stopped_early=initial_epoch + len(recorder.rows) < epochs,
        seconds=ended - start,
        restored_epoch=_restored_epoch(callbacks),
        first_step_seconds=None if recorder.first_step is None else process_age() - (ended - recorder.first_step),
        callback_states=callback_states(stateful),
    )


def fit_phases(
    model,
    config: ExperimentConfig,
    data: TrainingData,
    *,
    initial_epoch: int = 0,
    restore: dict | None = None,
    fine_tune_from: int | None = None,
    on_fine_tune: Callable[[int, list[str]], None] | None = None,
    **fit_args,
) -> FitResult:
    """Train the run's phases: ``train.epochs``, then, with ``train.fine_tune``, the backbone unfrozen and the
    model compiled again at the lower learning rate for ``fine_tune.epochs`` more (counted from where the first
    phase stopped, early or not). Without fine_tune this is :func:`fit`.

    ``fine_tune_from`` (a resumed run in its second phase: the epochs of its first) skips the first phase; the
    model is then the checkpoint's, unfrozen and compiled already. ``on_fine_tune(first_phase_epochs,
    unfrozen_layer_names)`` is called once the model is unfrozen and compiled, before its first epoch. The rest of
    the arguments are :func:`fit`'s. The result is both phases': their history, seconds, whether either stopped early,
    and the restored epoch of the last.
    """
    fine_tune = config.train.fine_tune
    if fine_tune is None:
        return fit(model, config, data, initial_epoch=initial_epoch, restore=restore, **fit_args)
    first: FitResult | None = None
    if fine_tune_from is None:
        if initial_epoch < config.train.epochs:
            first = fit(
                model,
                config,
                data,
                initial_epoch=initial_epoch,
                restore=restore,
                phase=1,
                epochs=config.train.epochs,
                **fit_args,
            )
            initial_epoch += len(first.history)
        fine_tune_from = initial_epoch
        # The best checkpoint so far stays the bar to beat; early stopping and the plateau count start again.
        restore = {
            key: state
            for key, state in (first.callback_states if first else restore or {}).items()
            if key == "best_checkpoint"
        }
        unfrozen = start_fine_tuning(model, config)
        if on_fine_tune is not None:
            on_fine_tune(fine_tune_from, unfrozen)
    second = fit(
        model,
        config,
        data,
        initial_epoch=initial_epoch,
        restore=restore,
        phase=2,
        epochs=fine_tune_from + fine_tune.epochs,
        **fit_args,
    )
    if first is None:
        return second
    return FitResult(
        history=first.history + second.history,
        stopped_early=first.stopped_early or second.stopped_early,
        seconds=first.seconds + second.seconds,
        restored_epoch=second.restored_epoch,
        first_step_seconds=first.first_step_seconds,
        callback_states=second.callback_states,
    )


def _restored_epoch(callbacks: list) -> int | None:
    """The epoch whose weights EarlyStopping(restore_best_weights=True) restored at the end of fit, if any."""
    import keras

    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights:
            if callback.best_weights is not None:
                return int(callback.best_epoch) + 1
    return None


def evaluate_data(model, config: ExperimentConfig, data: TrainingData) -> dict:
    """The model's loss and compiled metrics on the test split of ``data`` (in memory or streamed)."""
    batch_size = inference_batch_size(config.train.batch_size)
    inputs = data.evaluate_inputs(lambda y: fit_targets(model, config, y), batch_size)
    inputs["x"] = as_model_input(inputs["x"])
    return {k: float(v) for k, v in model.evaluate(**inputs, verbose=0, return_dict=True).items()}


def evaluate_with_outputs(model, config: ExperimentConfig, data: TrainingData, keep: int):
    """One pass over the test split: the model's loss and compiled metrics, as :func:`evaluate_data` gives them,
    and the targets and outputs of its first ``keep`` samples (for the plots). A streamed split is read once
    instead of twice. Returns None for a model whose loss depends on its inputs beyond its outputs (an
    activity regularizer): :func:`evaluate_data` then.

    The outputs are scored by ``evaluate`` of an identity model compiled with the run's loss and metrics, fed
    chunk by chunk as they are predicted; the weights' regularization losses, constant at test time, are added
    to the loss as evaluate adds them to every batch's.
    """
    import keras

    from ..keras_io import predict_eagerly

    if any(getattr(layer, "activity_regularizer", None) is not None for layer in model.layers):
        return None
    if not data.sizes().get("test"):
        return None
    scorer = keras.Sequential([keras.Input(shape=model.output_shape[1:]), keras.layers.Identity()])
    scorer.compile(loss=config.train.loss, metrics=list(config.train.metrics))
    regularization = sum(float(keras.ops.convert_to_numpy(keras.ops.sum(loss))) for loss in model.losses)
    kept_y: list[np.ndarray] = []
    kept_outputs: list[np.ndarray] = []

    def scored_chunks():
        seen = 0
        for x, y in data.test_chunks():
            outputs = predict_eagerly(model, x)
            if seen < keep:
                kept_y.append(y[: keep - seen])
                kept_outputs.append(outputs[: keep - seen])
            seen += len(y)
            yield outputs, fit_targets(model, config, y)

    with warnings.catch_warnings():  # a generator's end is how evaluate learns the split's size: no warning
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        logs = scorer.evaluate(scored_chunks(), verbose=0, return_dict=True)
    metrics = {name: float(value) for name, value in logs.items()}
    metrics["loss"] += regularization
    return metrics, np.concatenate(kept_y), np.concatenate(kept_outputs)


def evaluate_arrays(model, config: ExperimentConfig, x, y) -> dict:
    """The model's loss and compiled metrics on (x, y), as floats."""
    batch_size = inference_batch_size(config.train.batch_size)
    result = model.evaluate(
        as_model_input(x), fit_targets(model, config, y), batch_size=batch_size, verbose=0, return_dict=True
    )
    return {k: float(v) for k, v in result.items()}


def fine_tuning_config(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with the second phase's learning rate in its optimizer (the optimizer's other settings kept)."""
    from ..config import OptimizerConfig

    optimizer = config.train.optimizer
    settings = {**(optimizer.model_extra or {}), "learning_rate": config.train.fine_tune.learning_rate}
    train = config.train.model_copy(update={"optimizer": OptimizerConfig(name=optimizer.name, **settings)})
    return config.model_copy(update={"train": train})


def start_fine_tuning(model, config: ExperimentConfig) -> list[str]:
    """Unfreeze the backbone as ``train.fine_tune.unfreeze`` says and compile the model again with a fresh optimizer
    at ``fine_tune.learning_rate`` (on the devices it trains on). Returns the names of the layers unfrozen."""
    import keras

    from ..config import backbone_of
    from .backbones import is_pretrained, unfreeze
    from .model import compile_model

    unfrozen = unfreeze(model, config.train.fine_tune.unfreeze, is_pretrained(backbone_of(config)))
    scope = contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":  # several devices: the new optimizer's variables are mirrored too
        scope = model.distribute_strategy.scope()
    with scope:
        compile_model(model, fine_tuning_config(config))
    return unfrozen
