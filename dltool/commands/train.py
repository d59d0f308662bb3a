"""`dltool train`: config -> data -> model, then a new run folder, trained and recorded.

What a new run needs of its own is here: the checks before a run folder exists (:func:`prepare`), the
run's first files, the weights of a parent run. Opening the run (or joining it from another process),
fitting and setting its final status is :mod:`~dltool.commands.run_lifecycle`'s, shared with `resume`; the
parts it puts in order have rooms of their own: fitting (the Keras side), checkpoints (resumable state),
recorder (history, log, heartbeat), plots, interrupts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..backend import device_count, import_tensorflow, tensorflow_note
from ..config import ExperimentConfig, config_to_yaml, load_config, resolve_paths
from ..distributed import LOCAL, ProcessGroup, current_group
from ..errors import ConfigError, RunStateError
from ..runs import Run, log_time, runs_dir
from ..system_info import PhaseClock
from ..tracking import check_tracking, tracking_observer
from ..training.backbones import pin_backbone
from ..training.observer import Observer
from ..training.session import (
    check_precision,
    fresh_session,
    on_running_backend,
    resolve_precision,
    training_devices,
)
from .run_lifecycle import open_or_join, train_or_follow


def prepare(
    config: ExperimentConfig,
    *,
    samples: int | None = None,
    group: ProcessGroup = LOCAL,
    clock: PhaseClock | None = None,
):
    """Everything that can refuse the config before a run folder exists: data, model, shapes.

    Returns (data, compiled model). ConfigErrors come back with file and line.
    ``samples`` keeps a random ``samples`` of the training split (smoke runs;
    default None: all of it). ``group``: the processes that train it
    (default one alone). ``clock`` (if given) gets the seconds of its ``data`` and ``model`` phases.
    """
    from ..config.keras_names import check_threshold_classes
    from ..data import prepare_data
    from ..data.class_weights import resolve_class_weights

    clock = PhaseClock() if clock is None else clock
    fresh_session(config.seed, config.train.deterministic, config.train.precision)
    try:
        check_precision(config)
        with clock.phase("data"):
            data = prepare_data(config, samples=samples)
            check_threshold_classes(config, data.preprocessing.class_names)
            # From the whole training split, before a process keeps its share or batches are evened out.
            data.class_weight = resolve_class_weights(
                config, data.preprocessing.class_names, data.class_counts() if config.train.class_weight else None
            )
            if data.tensorflow_reason:  # now rather than at the first epoch: the run log says why, from its first line
                import_tensorflow(data.tensorflow_reason)
        devices = device_count(config.train.devices)
        # Every batch splits evenly over the devices: JAX needs it, and TensorFlow's MirroredStrategy fails on a
        # split whose only batch does not (a validation split smaller than one batch). Several processes: share_out.
        if devices > 1 and group.size == 1:
            data.even_out(devices)
        with clock.phase("model"):
            model = _build_for(config, data, group)
    except ConfigError as exc:
        raise config.locate(exc) from None
    return data, model


def _build_for(config: ExperimentConfig, data, group: ProcessGroup):
    """The compiled model, on the devices it trains on, adapted to ``data`` where its layers ask."""
    from ..training.fitting import check_outputs_fit_targets
    from ..training.model import adapt_preprocessing_layers, append_target_scaling, build_model, compile_model

    with training_devices(config, group):  # one device, or several in data parallel: the model is built for them
        model = build_model(config)
        if any(hasattr(layer, "adapt") for layer in model.layers):
            x_train, _ = data.training_arrays(
                "layers that adapt to the data (TextVectorization, Normalization, ...)", "data.stream"
            )
            data.adapted = adapt_preprocessing_layers(model, x_train)
        if config.data.standardize_targets:
            if config.is_classifier:
                raise ConfigError(
                    "standardize_targets applies to regression targets only; remove it for a classification loss",
                    path="data.standardize_targets",
                )
            _, y_train = data.training_arrays("data.standardize_targets", "data.standardize_targets")
            append_target_scaling(model, y_train)
        compile_model(model, config)
    check_outputs_fit_targets(model, config, data)
    return model


def _open_run_files(
    run: Run,
    config: ExperimentConfig,
    data,
    model,
    overrides,
    observer,
    group: ProcessGroup,
    parent=None,
    precision: dict | None = None,
) -> None:
    from .. import backend
    from ..training.backbones import parameter_counts
    from ..training.model import summary_text

    device = backend.device_description()
    devices = backend.device_count(config.train.devices) * group.size
    if devices > 1:
        device += f", data parallel over {devices} devices" + (f" in {group.size} processes" if group.size > 1 else "")
    run.write_text("config.yaml", config_to_yaml(config))
    run.start(
        name=config.name,
        seed=config.seed,
        epochs_planned=config.train.total_epochs,
        epochs_done=0,
        overrides=list(overrides or []),
        command=sys.argv,
        versions=backend.versions(),
        device=device,
        params=model.count_params(),
        parameters=parameter_counts(model),
        precision=precision or {"policy": config.train.precision},
        **({"backbone": model.dltool_backbone.record} if getattr(model, "dltool_backbone", None) else {}),
        **({"phases": _first_phase(config, model)} if config.train.fine_tune else {}),
        data_fingerprint=data.fingerprint,
        data=data.sizes(),
        **({"processes": group.size} if group.size > 1 else {}),
        **({"parent": parent.id} if parent is not None else {}),
        **({"warnings": list(data.warnings)} if data.warnings else {}),
        **({"class_weight": data.class_weight.record()} if data.class_weight else {}),
        **({"resample": data.resampling.record()} if data.resampling else {}),
    )
    observer.on_run_created(run)
    run.write_json("preprocessing.json", data.preprocessing.to_dict())
    run.write_text("summary.txt", summary_text(model))
    adapted = f"; adapted on the training split: {', '.join(data.adapted)}" if data.adapted else ""
    if data.left_out:  # data parallel: every batch splits evenly over the devices
        adapted += "; left out so every batch splits evenly over the devices: " + ", ".join(
            f"{n} {split} sample(s)" for split, n in data.left_out.items()
        )
    start = f"; weights from run {parent.id}" if parent is not None else ""
    if data.class_weight:
        start += f"; class weights {data.class_weight.describe()}"
    start += tensorflow_note(config.backend)
    if precision:
        start += f"; precision auto: {precision['policy']} ({precision['reason']})"
    run.append_log(
        f"{log_time()} run {run.id} started: {data.sizes()['train']} training samples, "
        f"{model.count_params():,} parameters, device {device}{adapted}{start}"
    )
    if data.resampling:
        run.append_log(f"{log_time()} resample: {data.resampling.describe()}")
    for warning in data.warnings:
        run.append_log(f"{log_time()} warning: {warning}")
    backbone = getattr(model, "dltool_backbone", None)
    for note in backbone.record.get("notes", []) if backbone else []:
        run.append_log(f"{log_time()} backbone: {note}")


def _first_phase(config: ExperimentConfig, model) -> list[dict]:
    """run.json's phases as a run with fine_tune starts: the first phase's parameter counts; none where
    train.epochs is 0 (the run goes straight to fine-tuning, whose entry on_fine_tune adds)."""
    from ..training.backbones import parameter_counts

    return [{"phase": 1, "first_epoch": 1, **parameter_counts(model)}] if config.train.epochs else []


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
    tracking_uri: str | None = None,
    tracking_parent=None,
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

    ``tracking_uri`` (`--mlflow`) logs the run to that MLflow store, as the
    config's ``tracking.mlflow`` does (and takes the place of its uri);
    ``tracking_parent`` (a :class:`~dltool.tracking.settings.Nesting`) makes its MLflow run a child of a sweep's
    or cv's.
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
    check_tracking(config, tracking_uri)
    observer = tracking_observer(observer, config, group, override_uri=tracking_uri, parent=tracking_parent)
    overrides = list(config.overrides)
    config, precision = resolve_precision(pin_backbone(on_running_backend(resolve_paths(config)), runs_root))
    clock = PhaseClock(start_up=True)
    data, model = prepare(config, samples=samples, group=group, clock=clock)
    with clock.phase("run_folder"):
        parent = _load_parent_weights(model, init_from, runs_root) if init_from is not None else None
        run = open_or_join(
            group,
            open_run=lambda: Run.create(runs_dir(runs_root), config.name),
            # A follower's folder, even where process 0's runs folder is not shared: this machine then keeps the log.
            join_run=lambda run_id: Run(runs_dir(runs_root) / run_id),
            start_run=lambda run: _open_run_files(
                run, config, data, model, overrides, observer, group, parent, precision
            ),
        )
    return train_or_follow(run, config, data, model, observer=observer, group=group, clock=clock)


def check(config: ExperimentConfig) -> tuple[str, dict, list, list[str], dict | None]:
    """`dltool validate`: load the data and build the model, train nothing.

    Returns (the model summary, the split sizes, the sample shape, warnings about the data such as an
    id-like feature column or imbalanced classes, the class counts). The class counts, for a classification
    config, are ``{"names": [...], "train": [...], "validation": [...] or None, "test": [...]}``, counted as the
    data was loaded (in memory, from an image folder's paths, or in the scan of a streamed table); else None.
    With data.resample, "train" counts the resampled training split and "train_before" the split as drawn.
    """
    from ..data.class_weights import imbalance_warning
    from ..training.model import summary_text

    check_tracking(config)
    config, _ = resolve_precision(pin_backbone(on_running_backend(resolve_paths(config))))
    data, model = prepare(config)
    warnings = list(data.warnings)
    counts = data.class_counts()
    classes = None
    if counts is not None:
        classes = {"names": list(data.preprocessing.class_names or []), **counts}
        if data.resampling is not None:
            classes["train_before"] = list(data.resampling.before)
        imbalanced = imbalance_warning(counts["train"], classes["names"])
        if imbalanced and config.train.class_weight is None:
            warnings.append(imbalanced)
    return summary_text(model), data.sizes(), data.preprocessing.input_shape, warnings, classes
