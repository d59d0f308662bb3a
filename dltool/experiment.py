"""`train`: config -> data -> model -> fit -> run folder. The one place that writes a run while training."""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .config import ExperimentConfig, config_to_yaml, load_config, resolve_paths
from .errors import ConfigError, DltoolError, RunStateError, TrainingError
from .fileio import atomic_write_text
from .runs import COMPLETED, FAILED, INTERRUPTED, Run, runs_dir


MAX_PLOTTED_TEST_SAMPLES = 200_000  # the confusion matrix / scatter of a streamed test split use its first rows
MAX_REPORTED_WEIGHTS = 20  # metrics.json lists the weights of models this small (linear regressions)
STATE_FILE = "checkpoints/state.json"  # the last resumable checkpoint: epoch, model file, callbacks, history
FLUSH_SECONDS = 1.0
CHECKPOINT_MIN_SECONDS = 2.0  # resumable checkpoints reach disk at most this often (kill -9 loses at most this)  # history.csv, run.json heartbeat and train.log are rewritten at most this often


class TrainingInterrupted(DltoolError):
    """Training was stopped by Ctrl-C or SIGTERM; the run is INTERRUPTED."""

    def __init__(self, message: str, run: Run, exit_code: int = 130):
        super().__init__(message)
        self.run = run
        self.exit_code = exit_code


def history_csv(rows: list[dict]) -> str:
    """Rows of per-epoch values as CSV text; columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _best_epoch(rows: list[dict]) -> dict | None:
    key = "val_loss" if rows and "val_loss" in rows[0] else "loss"
    finite = [r for r in rows if r.get(key) is not None]
    return min(finite, key=lambda r: r[key]) if finite else None


def small_model_weights(model) -> dict:
    """{layer: {kernel: [...], bias: [...]}} for models small enough to read (a linear fit's weight and bias)."""
    import keras

    return {
        layer.name: {w.path.rsplit("/", 1)[-1]: keras.ops.convert_to_numpy(w).ravel().tolist() for w in layer.weights}
        for layer in model.layers if layer.weights
    }  # fmt: skip


def split_metrics(row: dict) -> tuple[dict, dict]:
    """Split a history row into (train metrics, validation metrics)."""
    skip = {"epoch", "learning_rate", "epoch_seconds"}
    train = {k: v for k, v in row.items() if k not in skip and not k.startswith("val_")}
    val = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return train, val


def prepare(config: ExperimentConfig):
    """Everything that can refuse the config before a run folder exists: data, model, shapes.

    Returns (data, compiled model). ConfigErrors come back with file and line.
    """
    import keras

    from .data import prepare_data
    from .model import adapt_preprocessing_layers, append_target_scaling, build_model, compile_model
    from .training import check_outputs_fit_targets

    keras.backend.clear_session()  # fresh layer names (dense, dense_1, ...) and memory for every run
    keras.utils.set_random_seed(config.seed)
    try:
        data = prepare_data(config)
        model = build_model(config)
        if _adapts(model):
            if not hasattr(data, "x_train"):
                raise ConfigError("layers that adapt to the data (TextVectorization, Normalization, ...) need the "
                                  "training split in memory; set data.stream: false", path="data.stream")  # fmt: skip
            data.adapted = adapt_preprocessing_layers(model, data.x_train)
        if config.data.standardize_targets:
            if config.is_classifier or not hasattr(data, "y_train"):
                raise ConfigError("standardize_targets applies to in-memory regression targets only; "
                                  + ("remove it for a classification loss" if config.is_classifier else "set data.stream: false"),
                                  path="data.standardize_targets")  # fmt: skip
            append_target_scaling(model, data.y_train)
        compile_model(model, config)
        check_outputs_fit_targets(model, config, data)
    except ConfigError as exc:
        raise config.locate(exc) from None
    return data, model


def _adapts(model) -> bool:
    return any(hasattr(layer, "adapt") for layer in model.layers)


def _open_run_files(run: Run, config: ExperimentConfig, data, model, overrides, observer) -> None:
    from . import backend
    from .model import summary_text

    run.write_text("config.yaml", config_to_yaml(config))
    run.start(
        name=config.name, seed=config.seed, epochs_planned=config.train.epochs, epochs_done=0,
        overrides=list(overrides or []), command=sys.argv, versions=backend.versions(),
        device=backend.device_description(), params=model.count_params(), data_fingerprint=data.fingerprint,
        data=data.sizes(),
    )  # fmt: skip
    if observer is not None and hasattr(observer, "on_run_created"):
        observer.on_run_created(run)
    run.write_json("preprocessing.json", data.preprocessing.to_dict())
    run.write_text("summary.txt", summary_text(model))
    run.append_log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {run.id} started: {data.sizes()['train']} training samples, "
                   f"{model.count_params():,} parameters, device {run.info['device']}"
                   + (f"; adapted on the training split: {', '.join(data.adapted)}" if getattr(data, "adapted", None) else ""))  # fmt: skip


def train(config: ExperimentConfig | str | Path, overrides: list[str] | None = None, *,
          runs_root: str | Path | None = None, observer=None) -> Run:  # fmt: skip
    """Train the experiment and return its completed :class:`Run`.

    ``config`` is a validated config or a path to a YAML file (``overrides``
    are ``key.path=value`` strings). Raises ConfigError/DataError before any
    run folder exists; once the run exists, a failure marks it FAILED and
    raises TrainingError, and Ctrl-C or SIGTERM saves nothing half-done,
    marks it INTERRUPTED and raises TrainingInterrupted.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides)
    config = resolve_paths(config)
    data, model = prepare(config)
    run = Run.create(runs_dir(runs_root), config.name)
    try:
        _open_run_files(run, config, data, model, overrides, observer)
    except Exception as exc:  # noqa: BLE001  (the folder exists: it must not be left looking RUNNING)
        reason = f"{type(exc).__name__}: {exc}"
        if run.file("run.json").is_file():
            run.finish(FAILED, error=reason)
        raise TrainingError(f"run {run.id} could not be started: {reason}") from exc
    return _execute(run, config, data, model, observer=observer)


def resume(ref: str | Run, *, runs_root: str | Path | None = None, observer=None) -> Run:
    """Continue an INTERRUPTED, FAILED or died run from its last checkpoint, with its own saved config.

    Weights, optimizer state (learning rate included), the epoch counter and
    the callbacks' progress are restored; history.csv continues where the
    checkpoint was taken.
    """
    import keras

    from .config import config_from_text
    from .data import prepare_data
    from .runs import RUNNING, now_iso

    run = ref if isinstance(ref, Run) else Run.resolve(str(ref), runs_dir(runs_root))
    info = run.info
    status = run.status
    if status == COMPLETED:
        raise RunStateError(f"run {run.id} is COMPLETED: there is nothing to resume; "
                            f"start a new run with `dltool train {run.path / 'config.yaml'}`")  # fmt: skip
    if status == RUNNING:
        raise RunStateError(f"run {run.id} is still RUNNING (pid {info.get('pid')} on {info.get('host')}); "
                            "stop it first (Ctrl-C or kill) or wait for it")  # fmt: skip
    state_file = run.file(STATE_FILE)
    if not state_file.is_file():
        raise RunStateError(f"run {run.id} ({status}) has no checkpoint: it stopped before its first checkpoint "
                            f"was written; start it again with `dltool train {run.path / 'config.yaml'}`")  # fmt: skip
    state = json.loads(state_file.read_text(encoding="utf-8"))
    config = config_from_text(run.file("config.yaml").read_text(encoding="utf-8"), source=str(run.file("config.yaml")))
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed + state["epoch"])  # a fresh but reproducible shuffle order
    data = prepare_data(config)
    if data.fingerprint != info.get("data_fingerprint"):
        raise RunStateError(f"the data of run {run.id} has changed since it started (fingerprint "
                            f"{info.get('data_fingerprint')}, now {data.fingerprint}); resuming would mix two datasets")  # fmt: skip
    from .keras_io import load_model_safely

    model = load_model_safely(run.file(state["model"]))
    history = state["history"]
    run.write_text("history.csv", history_csv(history))
    resumes = info.get("resumes", []) + [{"at": now_iso(), "from_epoch": state["epoch"], "previous_status": status}]
    run.restart(resumes=resumes, epochs_done=state["epoch"])
    run.append_log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed from epoch {state['epoch']} (was {status})")
    if observer is not None and hasattr(observer, "on_run_created"):
        observer.on_run_created(run)
    return _execute(run, config, data, model, observer=observer, history=history, initial_epoch=state["epoch"],
                    restore=state.get("callbacks", {}))  # fmt: skip


def _execute(run: Run, config: ExperimentConfig, data, model, *, observer=None, history: list[dict] | None = None,
             initial_epoch: int = 0, restore: dict | None = None) -> Run:  # fmt: skip
    """Fit, checkpoint, evaluate and save into an open RUNNING run; set its final status."""
    from .keras_io import save_model_atomic
    from .training import StopRequested, evaluate_data, fit

    rows: list[dict] = list(history or [])
    pending_log: list[str] = []
    last_flush = [0.0]
    checkpoint_dir = run.file("checkpoints")

    def flush() -> None:
        if not rows:
            return
        run.write_text("history.csv", history_csv(rows))
        run.heartbeat(epochs_done=rows[-1]["epoch"])
        if pending_log:
            run.append_log("\n".join(pending_log))
            pending_log.clear()
        last_flush[0] = time.monotonic()

    def on_epoch_end(row: dict) -> None:
        rows.append(row)
        shown = "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        pending_log.append(f"epoch {row['epoch']}/{config.train.epochs}  {shown}")
        # Epochs of tiny models take milliseconds: persist at most every FLUSH_SECONDS, and at the end.
        if time.monotonic() - last_flush[0] >= FLUSH_SECONDS or row["epoch"] == config.train.epochs:
            flush()

    last_write = [0.0]
    pending: dict = {}  # the newest epoch-end state not yet on disk (see on_checkpoint)

    def write_checkpoint(epoch: int, callback_states: dict, history_rows: list[dict]) -> None:
        checkpoint_dir.mkdir(exist_ok=True)
        name = f"epoch-{epoch:05d}.keras"
        save_model_atomic(model, checkpoint_dir / name)
        previous = run.file(STATE_FILE)
        old = json.loads(previous.read_text(encoding="utf-8")).get("model") if previous.is_file() else None
        # state.json is renamed into place only after its model file is complete, so it always names a whole checkpoint.
        atomic_write_text(previous, json.dumps({"epoch": epoch, "model": f"checkpoints/{name}",
                                                "callbacks": callback_states, "history": history_rows}, indent=1))  # fmt: skip
        if old and old != f"checkpoints/{name}":
            run.file(old).unlink(missing_ok=True)
        last_write[0] = time.monotonic()
        pending.clear()

    def on_checkpoint(epoch: int, callback_states: dict) -> None:
        every = config.train.checkpoint_every
        if not every or (epoch % every and epoch != config.train.epochs):
            return
        if time.monotonic() - last_write[0] >= CHECKPOINT_MIN_SECONDS or epoch == config.train.epochs:
            write_checkpoint(epoch, callback_states, list(rows))
        else:
            # Epochs of milliseconds would spend most of their time writing checkpoints: keep this epoch's end
            # state in memory instead, so Ctrl-C, SIGTERM or a NaN still checkpoint the last completed epoch.
            pending.update(epoch=epoch, callback_states=callback_states, history_rows=list(rows),
                           variables=[np.array(v) for v in _state_variables(model)])  # fmt: skip

    def write_pending_checkpoint() -> None:
        if pending:
            for variable, value in zip(_state_variables(model), pending.pop("variables")):
                variable.assign(value)
            write_checkpoint(**pending)

    interrupts = InterruptGuard()
    try:
        with interrupts:
            try:
                result = fit(model, config, data, on_epoch_end=on_epoch_end, on_checkpoint=on_checkpoint,
                             observer=observer, best_checkpoint=checkpoint_dir / "best.keras",
                             initial_epoch=initial_epoch, restore=restore, should_stop=interrupts.requested,
                             tensorboard_dir=run.file("tensorboard"))  # fmt: skip
            except StopRequested:
                raise KeyboardInterrupt from None
        flush()
        test = evaluate_data(model, config, data)
        save_model_atomic(model, run.file("model.keras"))
        train_metrics, val_metrics = split_metrics(rows[-1])
        run.write_json("metrics.json", {
            "train": train_metrics, "validation": val_metrics or None, "test": test,
            "epochs": len(rows), "stopped_early": result.stopped_early,
            "best_epoch": _best_epoch(rows), "fit_seconds": round(result.seconds, 3),
            **({"weights": small_model_weights(model)} if model.count_params() <= MAX_REPORTED_WEIGHTS else {}),
        })  # fmt: skip
        run.append_log("test  " + "  ".join(f"{k}={v:.4g}" for k, v in test.items()))
        if config.train.plots:
            write_run_plots(run, config, rows, model, data)
        run.finish(COMPLETED, fit_seconds=round(result.seconds, 3))
        _drop_resume_checkpoints(run)
        return run
    except KeyboardInterrupt:
        flush()
        write_pending_checkpoint()
        signal_name = interrupts.signal_name or "SIGINT"
        done = _checkpointed_epoch(run)
        where = (f"resume from epoch {done} with: dltool train --resume {run.id}" if done
                 else "no epoch was checkpointed, so it cannot be resumed")  # fmt: skip
        run.finish(INTERRUPTED, error=f"interrupted by {signal_name} after {len(rows)} completed epoch(s)")
        run.append_log(f"INTERRUPTED by {signal_name}; {where}")
        raise TrainingInterrupted(f"run {run.id} interrupted by {signal_name} after {len(rows)} completed "
                                  f"epoch(s); {where}", run, exit_code=143 if signal_name == "SIGTERM" else 130) from None  # fmt: skip
    except TrainingError as exc:
        flush()
        write_pending_checkpoint()
        run.finish(FAILED, error=str(exc))
        run.append_log(f"FAILED: {exc}")
        done = _checkpointed_epoch(run)
        hint = f"; the last good checkpoint is epoch {done}" if done else ""
        raise TrainingError(f"run {run.id} failed: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001  (any Keras/OS error ends the run FAILED with its reason)
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        try:
            run.finish(FAILED, error=reason)
            run.append_log(f"FAILED: {reason}")
        except OSError:
            pass
        raise TrainingError(f"run {run.id} failed: {reason}") from exc


def write_run_plots(run: Run, config: ExperimentConfig, rows: list[dict], model, data) -> None:
    """curves.png, and confusion_matrix.png (classifiers) or predictions.png (regression), into the run."""
    from . import plots
    from .metrics import confusion_matrix, predicted_classes

    title = f"{config.name} ({run.id})"
    plots.curves(rows, run.file("curves.png"), title)
    from .keras_io import predict_eagerly

    chunks = [(y, predict_eagerly(model, x)) for x, y in data.test_chunks(limit=MAX_PLOTTED_TEST_SAMPLES)]
    y_test = np.concatenate([y for y, _ in chunks])
    outputs = np.concatenate([o for _, o in chunks])
    state = data.preprocessing
    if config.is_classifier:
        matrix = confusion_matrix(y_test, predicted_classes(outputs), len(state.class_names)).tolist()
        plots.confusion_matrix(matrix, state.class_names, run.file("confusion_matrix.png"), title)
    elif state.kind == "timeseries":
        plots.forecast(y_test, outputs, run.file("predictions.png"), title, state.target_names[0])
    else:
        target = state.target_names[0] if state.target_names else "target"
        plots.predicted_vs_true(y_test, outputs, run.file("predictions.png"), title, target)


def _state_variables(model) -> list:
    """Everything a resumed run needs restored: the model's weights and the optimizer's variables."""
    return list(model.weights) + list(model.optimizer.variables)


def _drop_resume_checkpoints(run: Run) -> None:
    """A COMPLETED run cannot be resumed: its per-epoch checkpoints only take space (best.keras stays)."""
    for path in run.file("checkpoints").glob("epoch-*.keras"):
        path.unlink(missing_ok=True)
    run.file(STATE_FILE).unlink(missing_ok=True)
    if run.file("checkpoints").is_dir() and not any(run.file("checkpoints").iterdir()):
        run.file("checkpoints").rmdir()


def _checkpointed_epoch(run: Run) -> int:
    try:
        return int(json.loads(run.file(STATE_FILE).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


class InterruptGuard:
    """Turns the first Ctrl-C or SIGTERM into a request to stop between batches; a second one stops at once.

    Only the main thread can receive signals; elsewhere this guard does nothing.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt  # the second signal: stop now; every file is written atomically anyway
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
