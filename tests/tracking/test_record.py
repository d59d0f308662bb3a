"""A run's record as MLflow parameters, tags and metrics (dltool.tracking.record): pure data, no MLflow."""

from __future__ import annotations

from dltool.tracking.record import (
    MAX_PARAM_VALUE,
    epoch_metrics,
    final_metrics,
    flatten_params,
    metric_steps,
)


def test_the_config_flattened_into_parameters():
    config = {
        "name": "iris",
        "seed": 0,
        "backend": None,
        "expect": {},
        "model": {"input_shape": [4], "layers": [{"Dense": {"units": 8}}, "Flatten"]},
        "train": {"optimizer": {"name": "adam", "learning_rate": 0.05}, "metrics": ["accuracy"], "plots": True},
        "tracking": {"mlflow": {"uri": "postgresql://me:secret@db/mlflow", "experiment": None}},
    }
    assert flatten_params(config) == {
        "name": "iris",
        "seed": "0",
        "backend": "null",
        "expect": "{}",
        "model.input_shape": "[4]",
        "model.layers.0.Dense.units": "8",
        "model.layers.1": "Flatten",
        "train.optimizer.name": "adam",
        "train.optimizer.learning_rate": "0.05",
        "train.metrics": '["accuracy"]',
        "train.plots": "true",
        "tracking.mlflow.uri": "postgresql://me:***@db/mlflow",
        "tracking.mlflow.experiment": "null",
    }


def test_keys_mlflow_would_refuse_are_written_as_it_takes_them():
    # A sweep's search space names layers by index (model.layers[0]...): MLflow refused the whole batch of the
    # parent run's parameters, and the sweep's parent was left RUNNING with no best trial tagged.
    flat = flatten_params({"parameters": {"model.layers[0].Dense.units": {"choice": [32, 64]}}, "w": {"é+x": 2}})
    assert flat == {"parameters.model.layers.0.Dense.units.choice": "[32, 64]", "w.é_x": "2"}


def test_long_values_are_cut_to_mlflows_limit_with_a_marker():
    flat = flatten_params({"data": {"columns": [f"feature_{i:03d}" for i in range(100)], "path": "x" * 600}})
    for key in ("data.columns", "data.path"):
        assert len(flat[key]) == MAX_PARAM_VALUE
        assert flat[key].endswith("...[truncated]")
    assert flat["data.columns"].startswith('["feature_000", "feature_001"')
    assert flatten_params({"path": "x" * MAX_PARAM_VALUE})["path"] == "x" * MAX_PARAM_VALUE  # at the limit: whole


def test_epoch_rows_become_metrics_by_step():
    row = {"epoch": "2", "phase": "1", "loss": "0.5", "val_loss": 0.75, "learning_rate": "0.001", "mae": "nan", "x": ""}
    assert epoch_metrics(row) == {"loss": 0.5, "val_loss": 0.75, "learning_rate": 0.001}
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": "2", "loss": "0.5"}]
    assert metric_steps(rows) == [("loss", 1.0, 1), ("loss", 0.5, 2)]


def test_final_and_test_figures():
    metrics = {
        "train": {"loss": 0.1, "accuracy": 0.9},
        "validation": None,
        "test": {"loss": 0.2, "accuracy": 0.85},
        "epochs": 5,
        "fit_seconds": 3.5,
        "stopped_early": False,
    }
    assert final_metrics(metrics) == {
        "final_loss": 0.1,
        "final_accuracy": 0.9,
        "test_loss": 0.2,
        "test_accuracy": 0.85,
        "fit_seconds": 3.5,
    }
