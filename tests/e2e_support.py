"""Shared helpers for tests that train real (tiny) models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IRIS_CONFIG = """
name: iris-test
seed: 0
data: {source: sklearn, name: iris, standardize: true, test: 0.2, validation: 0.2}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
train:
  optimizer: {name: adam, learning_rate: 0.05}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: 5
  batch_size: 16
"""

LINEAR_CONFIG = """
name: linear-test
seed: 0
data: {source: synthetic, n_samples: 64, weights: 3, bias: 1, noise: {std: 0.1}, test: 0.25, validation: null}
model: {input_shape: [1], layers: [{Dense: {units: 1}}]}
train: {optimizer: {name: adam, learning_rate: 0.1}, loss: mse, metrics: [mae], epochs: 5, batch_size: 16}
"""


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `python -m dltool ARGS` in a subprocess, as a user would, without a terminal."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dltool", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config_with_data_path(template: str, path, overrides=(), source: str = "test.yaml"):
    """A validated config from a template whose ``{path}`` is a data file or folder (quoted for YAML)."""
    import json

    from dltool.config import config_from_text

    return config_from_text(template.format(path=json.dumps(str(path))), source=source, overrides=list(overrides))


def train_in(root: Path, config):
    """Train ``config`` with its runs under ``root/runs``; return the COMPLETED run."""
    from dltool.commands.train import train

    return train(config, runs_root=root / "runs")
