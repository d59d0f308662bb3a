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


# --------------------------------------------------------------------------- a backbone on a tiny photo folder
PHOTO_COLORS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}

# MobileNetV3Small at its smallest (minimalistic, alpha 0.75: 0.27M parameters) on 32x32 photos: a real
# keras.applications backbone that trains an epoch in seconds. {weights} is none or a weights file's path.
BACKBONE_CONFIG = """
name: backbone-test
seed: 0
data: {{source: images, path: {path}, image_size: [32, 32], test: 0.25, validation: 0.25}}
model:
  input_shape: [32, 32, 3]
  layers:
    - Backbone: {{application: MobileNetV3Small, weights: {weights}, minimalistic: true, alpha: 0.75}}
    - Dense: {{units: 3, activation: softmax}}
train:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: 1
  batch_size: 8
  tensorboard: false
  fine_tune: {{unfreeze: 10, epochs: 1}}
"""


def write_photos(folder: Path, per_class: int = 6, size: int = 32) -> Path:
    """A folder per class of PHOTO_COLORS, each with ``per_class`` noisy solid-colour PNGs of size x size."""
    import numpy as np
    from PIL import Image

    for name, color in PHOTO_COLORS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = np.random.default_rng(i).integers(-25, 25, (size, size, 3))
            pixels = (np.array(color) + noise).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name}{i}.png")
    return folder


def backbone_config(photos: Path, weights: str | Path = "none", overrides=(), source: str = "backbone.yaml"):
    """BACKBONE_CONFIG, validated, on the photo folder ``photos`` with the backbone's ``weights``."""
    import json

    from dltool.config import config_from_text

    text = BACKBONE_CONFIG.format(path=json.dumps(str(photos)), weights=json.dumps(str(weights)))
    return config_from_text(text, source=source, overrides=list(overrides))


def save_backbone_weights(path: Path) -> Path:
    """A weights file saved from the MobileNetV3Small of BACKBONE_CONFIG, as a user saves one (save_weights), with
    BatchNormalization statistics of its own: untrained weights with Keras's initial statistics (mean 0, variance
    1) shrink every image's features to about 1e-7, and all outputs would be alike."""
    import keras
    import numpy as np

    core = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), minimalistic=True, alpha=0.75
    )
    batch_norms = [layer for layer in core.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0  # one training-mode call sets the moving statistics to that batch's
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    core(pixels, training=True)
    core.save_weights(str(path))
    return path


def stop_after(epoch: int):
    """An observer that stops the run after epoch ``epoch``, as a Ctrl-C (or a sweep's pruner) would."""
    from dltool.training.observer import Observer, StopRequested

    class StopAfter(Observer):
        def on_epoch_end(self, row: dict) -> None:
            if int(row["epoch"]) == epoch:
                raise StopRequested("stopped by the test")

    return StopAfter()
