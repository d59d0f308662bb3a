"""`train`: config -> data -> model -> fit -> run folder. The one place that writes a run while training."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from .config import ExperimentConfig, config_to_yaml, load_config, resolve_paths
from .errors import ConfigError, DltoolError, TrainingError
from .runs import COMPLETED, FAILED, INTERRUPTED, Run, runs_dir


MAX_REPORTED_WEIGHTS = 20  # metrics.json lists the weights of models this small (linear regressions)
FLUSH_SECONDS = 1.0  # history.csv, run.json heartbeat and train.log are rewritten at most this often


class TrainingInterrupted(DltoolError):
    """Training was stopped by Ctrl-C or SIGTERM; the run is INTERRUPTED."""

    exit_code = 130

    def __init__(self, message: str, run: Run):
        super().__init__(message)
        self.run = run


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
    from .model import build_model, compile_model
    from .training import check_outputs_fit_targets

    keras.backend.clear_session()  # fresh layer names (dense, dense_1, ...) and memory for every run
    keras.utils.set_random_seed(config.seed)
    try:
        data = prepare_data(config)
        model = build_model(config)
        compile_model(model, config)
        check_outputs_fit_targets(model, config, data)
    except ConfigError as exc:
        raise config.locate(exc) from None
    return data, model


def train(config: ExperimentConfig | str | Path, overrides: list[str] | None = None, *,
          runs_root: str | Path | None = None, observer=None) -> Run:  # fmt: skip
    """Train the experiment and return its completed :class:`Run`.

    ``config`` is a validated config or a path to a YAML file (``overrides``
    are ``key.path=value`` strings). Raises ConfigError/DataError before any
    run folder exists; once the run exists, a failure marks it FAILED and
    raises TrainingError, and Ctrl-C marks it INTERRUPTED and raises
    TrainingInterrupted.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides)
    config = resolve_paths(config)
    data, model = prepare(config)

    from . import backend
    from .model import summary_text
    from .training import evaluate_arrays, fit, save_model_atomic

    run = Run.create(runs_dir(runs_root), config.name)
    run.write_text("config.yaml", config_to_yaml(config))
    run.start(
        name=config.name, seed=config.seed, epochs_planned=config.train.epochs, epochs_done=0,
        overrides=list(overrides or []), command=sys.argv, versions=backend.versions(),
        device=backend.device_description(), params=model.count_params(), data_fingerprint=data.fingerprint,
        data={"train": len(data.x_train), "validation": None if data.x_val is None else len(data.x_val),
              "test": len(data.x_test), "validation_is_test": data.validation_is_test, "test_split": data.test_source},
    )  # fmt: skip
    if observer is not None and hasattr(observer, "on_run_created"):
        observer.on_run_created(run)
    run.write_json("preprocessing.json", data.preprocessing.to_dict())
    run.write_text("summary.txt", summary_text(model))
    run.append_log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {run.id} started: {len(data.x_train)} training samples, "
                   f"{model.count_params():,} parameters, device {run.info['device']}")  # fmt: skip
    rows: list[dict] = []
    pending_log: list[str] = []
    last_flush = [0.0]

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

    try:
        result = fit(model, config, data, on_epoch_end=on_epoch_end, observer=observer,
                     best_checkpoint=run.file("checkpoints") / "best.keras")  # fmt: skip
        flush()
        test = evaluate_arrays(model, config, data.x_test, data.y_test)
        save_model_atomic(model, run.file("model.keras"))
        train_metrics, val_metrics = split_metrics(result.history[-1])
        run.write_json("metrics.json", {
            "train": train_metrics, "validation": val_metrics or None, "test": test,
            "epochs": len(result.history), "stopped_early": result.stopped_early,
            "best_epoch": _best_epoch(result.history), "fit_seconds": round(result.seconds, 3),
            **({"weights": small_model_weights(model)} if model.count_params() <= MAX_REPORTED_WEIGHTS else {}),
        })  # fmt: skip
        run.append_log("test  " + "  ".join(f"{k}={v:.4g}" for k, v in test.items()))
        run.finish(COMPLETED, fit_seconds=round(result.seconds, 3))
        return run
    except KeyboardInterrupt:
        flush()
        epochs = len(rows)
        run.finish(INTERRUPTED, error=f"interrupted after {epochs} completed epoch(s)")
        raise TrainingInterrupted(f"training interrupted after {epochs} completed epoch(s); run {run.id} is INTERRUPTED",
                                  run) from None  # fmt: skip
    except TrainingError as exc:
        flush()
        run.finish(FAILED, error=str(exc))
        run.append_log(f"FAILED: {exc}")
        raise TrainingError(f"run {run.id} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (any Keras/OS error ends the run FAILED with its reason)
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        try:
            run.finish(FAILED, error=reason)
            run.append_log(f"FAILED: {reason}")
        except OSError:
            pass
        raise TrainingError(f"run {run.id} failed: {reason}") from exc
