"""The tracking tests' MLflow store: one real sqlite store for the session (creating its tables takes seconds)."""

from __future__ import annotations

import pytest

TINY = """
name: tracked
seed: 0
data: {source: synthetic, n_samples: 64, weights: 3, bias: 1, noise: {std: 0.1}, test: 0.25, validation: 0.25}
model: {input_shape: [1], layers: [{Dense: {units: 1}}]}
train: {optimizer: {name: adam, learning_rate: 0.1}, loss: mse, metrics: [mae], epochs: 3, batch_size: 16,
        tensorboard: false}
"""


def tiny_config(extra: str = "", overrides=()):
    """A 3-epoch linear regression (tracked with ``extra``: a tracking section)."""
    from dltool.config import config_from_text

    return config_from_text(TINY + extra, source="tracked.yaml", overrides=list(overrides))


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """A real MLflow sqlite store in a temporary folder; each test logs to an experiment of its own."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture(scope="session")
def client(mlflow_uri):
    """An MlflowClient of the session's store (to read back what dltool logged)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_uri)


def steps(client, run_id: str, key: str) -> list[int]:
    """The steps a metric was logged at, in order, duplicates kept."""
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def artifacts(client, run_id: str) -> set[str]:
    """The names of a run's artifacts."""
    return {entry.path for entry in client.list_artifacts(run_id)}
