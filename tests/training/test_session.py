"""The Keras session a run trains in: train.devices (one device, or data parallel over several) (issue 14)."""

from __future__ import annotations

import json
import os

import pytest
from e2e_support import IRIS_CONFIG, REPO, run_cli

from dltool.config import config_from_text
from dltool.errors import ConfigError


def _with_devices(value: str, batch: int = 16):
    return config_from_text(
        IRIS_CONFIG.replace("  batch_size: 16", f"  batch_size: {batch}\n  devices: {value}"), source="iris.yaml"
    )


@pytest.mark.parametrize(
    "value, expected", [("auto", "auto"), ("cpu", "cpu"), ("2", 2), ("[gpu:0, gpu:1]", ["gpu:0", "gpu:1"])]
)
def test_devices_take_a_word_a_count_or_a_list(value, expected):
    assert _with_devices(value).train.devices == expected


@pytest.mark.parametrize("value", ["0", "tpu", "[tpu:0]", "[gpu]"])
def test_devices_refuse_what_is_not_a_device(value):
    with pytest.raises(ConfigError, match="train.devices"):
        _with_devices(value)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_more_devices_than_the_machine_has_are_refused_before_any_run(tmp_path):
    from dltool.commands.train import train

    with pytest.raises(
        ConfigError, match=r"iris.yaml:\d+: train.devices: train.devices asks for 64 devices, and tensorflow sees"
    ):
        train(_with_devices("64", batch=64), runs_root=tmp_path / "runs")
    with pytest.raises(ConfigError, match="device gpu:3 does not exist"):
        train(_with_devices("[gpu:3, gpu:4]"), runs_root=tmp_path / "runs")


def _digits_on(tmp_path, *args: str) -> dict:
    result = run_cli(
        "train",
        str(REPO / "configs" / "digits_mlp.yaml"),
        "-q",
        "--runs-dir",
        "runs",
        "--set",
        "train.epochs=10",
        *args,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    info = json.loads((folder / "run.json").read_text())
    return {"info": info, "accuracy": json.loads((folder / "metrics.json").read_text())["test"]["accuracy"]}


# Test accuracy of configs/digits_mlp.yaml with 10 epochs on one device, measured on both backends (2 devices: 0.9444).
DIGITS_ONE_DEVICE = 0.9500


@pytest.mark.subprocess
@pytest.mark.slow
def test_digits_on_two_cpu_devices_with_tensorflow_mirrored_strategy(tmp_path):
    run = _digits_on(tmp_path, "--devices", "2")
    assert "data parallel over 2 devices" in run["info"]["device"]
    assert abs(run["accuracy"] - DIGITS_ONE_DEVICE) <= 0.01


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_digits_on_two_cpu_devices_with_jax_data_parallel(tmp_path):
    pytest.importorskip("jax")
    run = _digits_on(tmp_path, "--devices", "2", "--backend", "jax")
    assert run["info"]["versions"]["backend"] == "jax" and "data parallel over 2 devices" in run["info"]["device"]
    assert abs(run["accuracy"] - DIGITS_ONE_DEVICE) <= 0.01
    assert "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "")  # only the child's


def test_several_devices_on_tensorflow_refuse_an_explicit_multi_batch_loop_at_validation():
    text = IRIS_CONFIG.replace("  batch_size: 16", "  batch_size: 16\n  devices: 2\n  steps_per_execution: 8")
    with pytest.raises(ConfigError, match=r"iris.yaml:\d+: train.steps_per_execution: expected steps_per_execution: 1"):
        config_from_text(text, source="iris.yaml")
    assert config_from_text(text.replace("  steps_per_execution: 8", ""), source="iris.yaml").train.devices == 2
