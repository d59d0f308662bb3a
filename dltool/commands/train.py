"""`train` and `resume`: config -> data -> model -> fit -> run folder. The one place that writes a run while training.

The parts have rooms of their own: fitting (the Keras side), checkpoints
(resumable state), recorder (history, log, heartbeat), plots, interrupts.
This module only puts them in order and sets the run's final status.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..backend import device_count
from ..config import ExperimentConfig, config_to_yaml, load_config, resolve_paths
from ..distributed import LOCAL, ProcessGroup, current_group
from ..distributed.followers import follow, lost_workers, resume_command, share_out, tell_the_others, watch_workers
from ..distributed.group import weights_digest
from ..distributed.shares import even_batches
from ..errors import ConfigError, RunStateError, TrainingError, TrainingInterrupted
from ..runs import COMPLETED, FAILED, INTERRUPTED, Run, log_time, runs_dir
from ..training.checkpoints import Checkpointer, checkpointed_epoch, drop_resume_checkpoints
from ..training.interrupts import InterruptGuard
from ..training.observer import Observer
from ..training.recorder import RunRecorder
from ..training.session import check_precision, fresh_session, on_running_backend, training_devices

MAX_REPORTED_WEIGHTS = 20  # metrics.json lists the weights of models this small (linear regressions)


def small_model_weights(model) -> dict:
    """{layer: {kernel: [...], bias: [...]}} for models small enough to read (a linear fit's weight and bias)."""
    import keras

    return {
        layer.name: {w.path.rsplit("/", 1)[-1]: keras.ops.convert_to_numpy(w).ravel().tolist() for w in layer.weights}
        for layer in model.layers
        if layer.weights
    }


def prepare(config: ExperimentConfig, *, samples: int | None = None, group: ProcessGroup = LOCAL):
    """Everything that can refuse the config before a run folder exists: data, model, shapes.

    Returns (data, compiled model). ConfigErrors come back with file and line.
    ``samples`` keeps a random ``samples`` of the training split (smoke runs;
    default None: all of it). ``group``: the processes that train it
    (default one alone).
    """
    from ..data import prepare_data
    from ..training.fitting import check_outputs_fit_targets
    from ..training.model import adapt_preprocessing_layers, append_target_scaling, build_model, compile_model

    fresh_session(config.seed, config.train.deterministic, config.train.precision)
    try:
        check_precision(config)
        data = prepare_data(config, samples=samples)
        devices = device_count(config.train.devices)
        if config.backend == "jax" and devices > 1 and group.size == 1:  # several processes: share_out does it
            data.left_out = even_batches(data, devices)
        with training_devices(config, group):  # one device, or several in data parallel: the model is built for them
            model = build_model(config)
            if any(hasattr(layer, "adapt") for layer in model.layers):
                if not hasattr(data, "x_train"):
                    raise ConfigError(
                        "layers that adapt to the data (TextVectorization, Normalization, ...) need the "
                        "training split in memory; set data.stream: false",
                        path="data.stream",
                    )
                data.adapted = adapt_preprocessing_layers(model, data.x_train)
            if config.data.standardize_targets:
                if config.is_classifier or not hasattr(data, "y_train"):
                    raise ConfigError(
                        "standardize_targets applies to in-memory regression targets only; "
                        + ("remove it for a classification loss" if config.is_classifier else "set data.stream: false"),
                        path="data.standardize_targets",
                    )
                append_target_scaling(model, data.y_train)
            compile_model(model, config)
        check_outputs_fit_targets(model, config, data)
    except ConfigError as exc:
        raise config.locate(exc) from None
    return data, model


def _open_run_files(
    run: Run, config: ExperimentConfig, data, model, overrides, observer, group: ProcessGroup, parent=None
) -> None:
    from .. import backend
    from ..training.model import summary_text

    device = backend.device_description()
    devices = backend.device_count(config.train.devices) * group.size
    if devices > 1:
        device += f", data parallel over {devices} devices" + (f" in {group.size} processes" if group.size > 1 else "")
    run.write_text("config.yaml", config_to_yaml(config))
    run.start(
        name=config.name,
        seed=config.seed,
        epochs_planned=config.train.epochs,
        epochs_done=0,
        overrides=list(overrides or []),
        command=sys.argv,
        versions=backend.versions(),
        device=device,
        params=model.count_params(),
        data_fingerprint=data.fingerprint,
        data=data.sizes(),
        **({"processes": group.size} if group.size > 1 else {}),
        **({"parent": parent.id} if parent is not None else {}),
        **({"warnings": list(data.warnings)} if data.warnings else {}),
    )
    observer.on_run_created(run)
    run.write_json("preprocessing.json", data.preprocessing.to_dict())
    run.write_text("summary.txt", summary_text(model))
    adapted = f"; adapted on the training split: {', '.join(data.adapted)}" if getattr(data, "adapted", None) else ""
    if getattr(data, "left_out", None):  # JAX data parallel: every batch splits evenly over the devices
        adapted += "; left out so every batch splits evenly over the devices: " + ", ".join(
            f"{n} {split} sample(s)" for split, n in data.left_out.items()
        )
    start = f"; weights from run {parent.id}" if parent is not None else ""
    run.append_log(
        f"{log_time()} run {run.id} started: {data.sizes()['train']} training samples, "
        f"{model.count_params():,} parameters, device {device}{adapted}{start}"
    )
    for warning in data.warnings:
        run.append_log(f"{log_time()} warning: {warning}")


def _load_parent_weights(model, ref: str | Run, runs_root) -> Run:
    """Set ``model``'s weights to those of run ``ref``'s trained model; refuse a model of another shape."""
    from ..keras_io import load_model_safely

    parent = ref if isinstance(ref, Run) else Run.resolve(str(ref), runs_dir(runs_root))
    path = parent.file("model.keras")
    if not path.is_file():
        raise RunStateError(
            f"run {parent.id} has no model.keras ({parent.status}) to start from; "
            f"resume it with `dltool train --resume {parent.id}` first"
        )
    trained = load_model_safely(path).weights
    shapes = [tuple(w.shape) for w in model.weights], [tuple(w.shape) for w in trained]
    if shapes[0] != shapes[1]:
        raise ConfigError(
            f"--from {parent.id}: its model has weights of shapes {shapes[1]}, this config's model "
            f"{shapes[0]}; start from a run of the same architecture",
            path="model.layers",
        )
    for variable, value in zip(model.weights, trained):
        variable.assign(value)
    return parent


def train(
    config: ExperimentConfig | str | Path,
    overrides: list[str] | None = None,
    *,
    runs_root: str | Path | None = None,
    observer=None,
    init_from: str | Run | None = None,
    samples: int | None = None,
    group: ProcessGroup | None = None,
) -> Run:
    """Train the experiment and return its completed :class:`Run`.

    ``config`` is a config from :func:`dltool.config.load_config` (which
    records its ``--set`` overrides) or a path to a YAML file, loaded here
    with ``overrides`` (``key.path=value`` strings). Raises ConfigError or
    DataError before any run folder exists; once the run exists, a failure
    marks it FAILED and raises TrainingError, and Ctrl-C or SIGTERM saves
    nothing half-done, marks it INTERRUPTED and raises TrainingInterrupted.

    ``init_from`` (a run or run reference) starts from that run's trained
    weights instead of fresh ones: fine-tuning, or more epochs of a finished
    run. The optimizer starts fresh; run.json names the parent run.

    ``samples`` trains on a random ``samples`` of the training split (and
    tests on at most as many samples): what `dltool smoke` does. The
    config's ``expect:`` entries are checked against metrics.json; the
    result goes into run.json (``expectations``, ``expectations_met``).
    An observer with ``on_run_completed(run, model, data)`` gets the trained
    model and its data once the run is COMPLETED.

    ``group`` is the processes that train the run together (default: the
    one this process joined, else this process alone); process 0 owns the
    run folder, the others train alongside and return the same run.
    """
    group = current_group() if group is None else group
    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides)
    elif overrides:
        raise ConfigError(
            "overrides of an already loaded config would not be applied: pass them to load_config "
            "(or pass the config file's path to train)"
        )
    if observer is None:
        observer = Observer()
    overrides = list(config.overrides)
    config = on_running_backend(resolve_paths(config))
    data, model = prepare(config, samples=samples, group=group)
    parent = _load_parent_weights(model, init_from, runs_root) if init_from is not None else None
    if not group.is_leader:  # one of several processes: process 0 opens the run, this one trains alongside
        # Its folder, even where process 0's runs folder is not shared: this machine then keeps the log alone.
        run = Run(runs_dir(runs_root) / group.share_run())
        share_out(None, config, data, group)
        return follow(run, config, data, model, observer, group=group)
    try:
        run = Run.create(runs_dir(runs_root), config.name)
    except Exception as exc:
        group.share_run(failure=str(exc))
        raise
    try:
        _open_run_files(run, config, data, model, overrides, observer, group, parent)
    except Exception as exc:  # noqa: BLE001  (the folder exists: it must not be left looking RUNNING)
        reason = f"{type(exc).__name__}: {exc}"
        if run.file("run.json").is_file():
            run.finish(FAILED, error=reason)
        group.share_run(failure=reason)
        raise TrainingError(f"run {run.id} could not be started: {reason}") from exc
    if group.size > 1:
        tell_the_others(run, group)
        share_out(run, config, data, group)
    return _execute(run, config, data, model, observer=observer, group=group)


def _execute(
    run: Run,
    config: ExperimentConfig,
    data,
    model,
    *,
    observer: Observer,
    history: list[dict] | None = None,
    initial_epoch: int = 0,
    restore: dict | None = None,
    group: ProcessGroup = LOCAL,
) -> Run:
    """Fit, checkpoint, evaluate and save into an open RUNNING run (process 0 of ``group``); set its final status."""
    from ..training.fitting import StopRequested, fit

    recorder = RunRecorder(run, config.train.epochs, history)
    checkpoints = Checkpointer(run, model, config.train.checkpoint_every, config.train.epochs)
    interrupts = InterruptGuard()
    stopped_by = ""  # why an observer stopped the run (a sweep prunes with "pruned"); empty for a signal
    try:
        with interrupts:
            stop_watching = watch_workers(run, group)
            try:
                result = fit(
                    model,
                    config,
                    data,
                    on_epoch_end=recorder.on_epoch_end,
                    on_checkpoint=lambda epoch, states: checkpoints.on_epoch_end(epoch, states, recorder.rows),
                    observer=observer,
                    best_checkpoint=run.file("checkpoints/best.keras"),
                    initial_epoch=initial_epoch,
                    restore=restore,
                    should_stop=interrupts.requested,
                    tensorboard_dir=run.file("tensorboard"),
                    group=group,
                )
            except StopRequested as stop:
                stopped_by = str(stop)
                raise KeyboardInterrupt from None
            finally:
                stop_watching()
        recorder.flush()
        _finish_completed(run, config, data, model, recorder, result, group)
        drop_resume_checkpoints(run)
        observer.on_run_completed(run, model, data)
        return run
    except KeyboardInterrupt:
        group.make_local(model)
        recorder.flush()
        checkpoints.write_pending()
        signal_name = interrupts.signal_name or "SIGINT"
        done = checkpointed_epoch(run)
        where = (
            f"resume from epoch {done} with: {resume_command(run, group)}"
            if done
            else "no epoch was checkpointed, so it cannot be resumed"
        )
        epochs = f"{recorder.epochs_done} completed epoch(s)"
        cause = stopped_by or f"interrupted by {signal_name}"
        run.finish(INTERRUPTED, error=f"{cause} after {epochs}")
        run.append_log(
            f"INTERRUPTED ({stopped_by}); {where}" if stopped_by else f"INTERRUPTED by {signal_name}; {where}"
        )
        raise TrainingInterrupted(
            f"run {run.id} {cause} after {epochs}; {where}", run, exit_code=143 if signal_name == "SIGTERM" else 130
        ) from None
    except TrainingError as exc:
        group.make_local(model)
        recorder.flush()
        checkpoints.write_pending()
        run.finish(FAILED, error=str(exc))
        run.append_log(f"FAILED: {exc}")
        done = checkpointed_epoch(run)
        hint = f"; the last good checkpoint is epoch {done}" if done else ""
        raise TrainingError(f"run {run.id} failed: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001  (any Keras/OS error ends the run FAILED with its reason)
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if group.looks_like_lost_peer(exc):
            reason = lost_workers(reason, group)
        try:
            group.make_local(model)
            checkpoints.write_pending()  # the last finished epoch's state, kept in memory: resumable from there
        except Exception:  # noqa: BLE001  (the run is failing already: its reason is the first error)
            pass
        try:
            run.finish(FAILED, error=reason)
            run.append_log(f"FAILED: {reason}")
        except OSError:
            pass
        done = checkpointed_epoch(run)
        hint = f"; resume from epoch {done} with: {resume_command(run, group)}" if done else ""
        raise TrainingError(f"run {run.id} failed: {reason}{hint}") from exc


def _finish_completed(
    run: Run, config: ExperimentConfig, data, model, recorder: RunRecorder, result, group: ProcessGroup
) -> None:
    """Test the trained model, save it, write metrics.json and the plots, and mark the run COMPLETED."""
    from ..config.expectations import check_expectations, describe_expectation
    from ..keras_io import save_model_atomic
    from ..plots import write_run_plots
    from ..training.fitting import evaluate_data

    if group.size > 1:  # process 0 tests the model on the whole test split by itself
        group.make_local(model)
        run.append_log(f"{log_time()} final weights {weights_digest(model)} (each worker logs its own)")
    test = evaluate_data(model, config, data)
    save_model_atomic(model, run.file("model.keras"))
    # After restore_best_weights the saved model is the best epoch's: report that epoch's figures, not the last's.
    train_metrics, val_metrics = recorder.final_metrics(result.restored_epoch)
    metrics = {
        "train": train_metrics,
        "validation": val_metrics or None,
        "test": test,
        "epochs": recorder.epochs_done,
        "stopped_early": result.stopped_early,
        **({"restored_epoch": result.restored_epoch} if result.restored_epoch is not None else {}),
        "best_epoch": recorder.best_epoch(),
        "fit_seconds": round(result.seconds, 3),
        **({"weights": small_model_weights(model)} if model.count_params() <= MAX_REPORTED_WEIGHTS else {}),
    }
    run.write_json("metrics.json", metrics)
    run.append_log("test  " + "  ".join(f"{k}={v:.4g}" for k, v in test.items()))
    expectations = check_expectations(config.expect, metrics)
    if expectations:
        run.append_log("\n".join("expect  " + describe_expectation(checked) for checked in expectations))
    if config.train.plots:
        write_run_plots(run, config, recorder.rows, model, data)
    met = (
        {"expectations": expectations, "expectations_met": all(e["met"] for e in expectations)} if expectations else {}
    )
    run.finish(COMPLETED, fit_seconds=round(result.seconds, 3), **met)


def check(config: ExperimentConfig) -> tuple[str, dict, list, list[str]]:
    """`dltool validate`: load the data and build the model, train nothing.

    Returns (the model summary, the split sizes, the sample shape, warnings about the data such as an
    id-like feature column).
    """
    from ..training.model import summary_text

    data, model = prepare(on_running_backend(resolve_paths(config)))
    return summary_text(model), data.sizes(), data.preprocessing.input_shape, list(data.warnings)
