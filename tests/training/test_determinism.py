"""`train.deterministic` / `train --deterministic`: two runs of a config give bit-identical metrics."""

from __future__ import annotations

import pytest
from e2e_support import IRIS_CONFIG
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.config import config_from_text
from dltool.runs import Run

pytestmark = pytest.mark.slow  # trains
TIMINGS = ("fit_seconds", "epoch_seconds")  # wall-clock times are the only figures allowed to differ


def _figures(run: Run) -> tuple[dict, list[str]]:
    """metrics.json (its floats exactly as written) and history.csv, without wall-clock times."""
    metrics = run.read_json("metrics.json")
    metrics.pop("fit_seconds")
    metrics["best_epoch"].pop("epoch_seconds")
    header, *rows = run.file("history.csv").read_text().splitlines()
    timing = header.split(",").index("epoch_seconds")
    return metrics, [",".join(v for i, v in enumerate(line.split(",")) if i != timing) for line in [header, *rows]]


def test_two_deterministic_runs_give_identical_metrics_and_history(tmp_path):
    from tensorflow.python.framework import config as tf_config

    from dltool.commands.train import train

    quiet = ["train.tensorboard=false", "train.plots=false"]
    first = train(config_from_text(IRIS_CONFIG, overrides=["train.deterministic=true", *quiet]), runs_root=tmp_path)
    assert tf_config.is_op_determinism_enabled()
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--deterministic",
            "-q",
            "--runs-dir",
            str(tmp_path),
            "--set",
            quiet[0],
            "--set",
            quiet[1],
            str(_write(tmp_path / "iris.yaml", IRIS_CONFIG)),
        ],
    )
    assert result.exit_code == 0, result.output
    second = Run.resolve("latest", tmp_path)
    assert second != first and "deterministic: true" in second.file("config.yaml").read_text()
    assert _figures(first) == _figures(second)
    # The switch is process-wide: a run that does not ask for it turns it off again.
    train(config_from_text(IRIS_CONFIG, overrides=quiet), runs_root=tmp_path)
    assert not tf_config.is_op_determinism_enabled()


def _write(path, text):
    path.write_text(text)
    return path
