"""Keras backends: choosing one (config, --backend, KERAS_BACKEND), refusals, mixed precision, and runs that move
between backends with equal outputs (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_support import IRIS_CONFIG, REPO, run_cli

from dltool.config import config_from_text
from dltool.errors import ConfigError, UsageError

IRIS_ROWS = (
    "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
    "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5\n"
)
TEXT_CONFIG = """
name: text-test
backend: jax
data: {source: text, path: reviews.csv, text: review, target: label}
model:
  input_shape: []
  layers:
    - TextVectorization: {max_tokens: 100, output_sequence_length: 8}
    - Embedding: {input_dim: 100, output_dim: 4}
    - GlobalAveragePooling1D
    - Dense: {units: 1, activation: sigmoid}
train: {loss: binary_crossentropy, metrics: [accuracy], epochs: 1}
"""


# --------------------------------------------------------------------------- choosing (no training)
def test_a_text_model_is_refused_outside_tensorflow_with_the_line():
    with pytest.raises(ConfigError) as caught:
        config_from_text(TEXT_CONFIG, source="text.yaml")
    message = str(caught.value)
    assert message.startswith("text.yaml:3: backend: TextVectorization runs only inside TensorFlow graphs")
    assert "remove `backend: jax`" in message
    assert config_from_text(TEXT_CONFIG.replace("backend: jax", "backend: tensorflow")).backend == "tensorflow"


def test_torch_refuses_steps_per_execution_above_one_only_when_asked_for():
    config = IRIS_CONFIG + "backend: torch\n"
    assert config_from_text(config).train.steps_per_execution == 32  # the default is adapted at fit time
    with pytest.raises(ConfigError, match="expected steps_per_execution: 1 with backend torch, received 8"):
        config_from_text(config.replace("  batch_size: 16", "  batch_size: 16\n  steps_per_execution: 8"))


def test_an_unknown_or_missing_backend_names_the_pip_command(monkeypatch):
    import importlib.util

    from dltool.backend import select_backend

    with pytest.raises(UsageError, match="unknown backend 'mxnet'; expected one of tensorflow, jax, torch"):
        select_backend("mxnet")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(UsageError, match=r'backend torch is not installed: pip install -e "\.\[torch\]"'):
        select_backend("torch")


@pytest.mark.jax
@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_a_process_whose_keras_runs_on_tensorflow_refuses_another_backend():
    pytest.importorskip("jax")
    import keras

    from dltool.backend import select_backend

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(UsageError, match="Keras already runs on tensorflow in this process"):
        select_backend("jax")
    assert select_backend("tensorflow") == "tensorflow"


@pytest.mark.jax
@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_train_refuses_a_config_for_another_backend_before_any_run_exists(tmp_path):
    pytest.importorskip("jax")
    from dltool.commands.train import train

    config = config_from_text(IRIS_CONFIG + "backend: jax\n", source="iris.yaml")
    with pytest.raises(ConfigError, match="iris.yaml:16: backend: this config trains on backend jax, but Keras runs"):
        train(config, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_mixed_precision_keeps_the_last_layer_in_float32():
    from dltool.training.model import build_model
    from dltool.training.session import fresh_session

    config = config_from_text(IRIS_CONFIG.replace("  epochs: 5", "  epochs: 5\n  precision: mixed_bfloat16"))
    try:
        fresh_session(0, False, config.train.precision)
        model = build_model(config)
        assert model.layers[0].dtype_policy.name == "mixed_bfloat16"
        assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].variable_dtype == "float32"
        assert model.layers[-1].dtype_policy.name == "float32"
    finally:
        fresh_session(0, False)  # the policy is process-wide


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_mixed_float16_without_a_gpu_is_refused():
    from dltool.backend import gpu_names
    from dltool.training.session import check_precision

    if gpu_names():
        pytest.skip("this machine has a GPU")
    config = config_from_text(IRIS_CONFIG.replace("  epochs: 5", "  epochs: 5\n  precision: mixed_float16"))
    with pytest.raises(ConfigError, match="mixed_float16 needs a GPU, and none is visible"):
        check_precision(config)


@pytest.mark.slow  # trains a MobileNetV3Small (seconds)
def test_mixed_precision_trains_a_backbone_in_both_phases_with_its_preprocessing_and_last_layer_in_float32(tmp_path):
    from e2e_support import backbone_config, train_in, write_photos

    from dltool.keras_io import load_model_safely
    from dltool.training.session import fresh_session

    photos = write_photos(tmp_path / "photos")
    # data.scale 255: the inputs come in 0-1, and the backbone's first layer turns them back into pixels.
    config = backbone_config(photos, "none", ["train.precision=mixed_bfloat16", "data.scale=255"])
    try:
        run = train_in(tmp_path, config)
        assert run.status == "COMPLETED"
        rows = [line.split(",") for line in run.file("history.csv").read_text().splitlines()[1:]]
        assert [row[1] for row in rows] == ["1", "2"] and all(np.isfinite(float(row[2])) for row in rows)
        model = load_model_safely(run.file("model.keras"))
        backbone = model.get_layer("backbone")
        assert backbone.get_layer("to_pretrained_scale").dtype_policy.name == "float32"
        convolutions = [layer for layer in backbone.get_layer("pretrained").layers if "Conv" in type(layer).__name__]
        assert {layer.compute_dtype for layer in convolutions} == {"bfloat16"}
        assert {layer.variable_dtype for layer in convolutions} == {"float32"}
        assert model.layers[-1].dtype_policy.name == "float32"  # the softmax
        outputs = model.predict(np.full((2, 32, 32, 3), 0.5, dtype=np.float32), verbose=0)
        assert outputs.dtype == np.float32 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-5)
    finally:
        fresh_session(0, False)  # the policy is process-wide


# --------------------------------------------------------------------------- moving between backends (slow)
OUTPUTS_SCRIPT = """
import json, sys
from dltool.backend import import_keras
import_keras(backend=sys.argv[1])
from dltool.commands.evaluate import evaluate
from dltool.commands.predict import predict
loss = evaluate(sys.argv[2])["compiled"]["loss"]
print(json.dumps({"loss": loss, "predictions": json.loads(predict(sys.argv[2], [sys.argv[3]], fmt="json").output)}))
"""


def _outputs_on(backend: str, run_path: Path, rows: Path) -> dict:
    """The run's test loss and its predictions on ``rows``, from a process whose Keras runs on ``backend``."""
    if backend == "tensorflow":  # this process
        from dltool.commands.evaluate import evaluate
        from dltool.commands.predict import predict

        loss = evaluate(str(run_path))["compiled"]["loss"]
        return {"loss": loss, "predictions": json.loads(predict(str(run_path), [str(rows)], fmt="json").output)}
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", OUTPUTS_SCRIPT, backend, str(run_path), str(rows)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_equal_outputs(run_path: Path, rows: Path, classes: int = 3, other: str = "jax") -> None:
    on_other, on_tensorflow = _outputs_on(other, run_path, rows), _outputs_on("tensorflow", run_path, rows)
    assert abs(on_other["loss"] - on_tensorflow["loss"]) <= 1e-5  # on the run's test split
    pairs = [
        (a, b)
        for x, y in zip(on_other["predictions"], on_tensorflow["predictions"])
        for a, b in zip(x["probabilities"].values(), y["probabilities"].values())
    ]
    assert len(pairs) == 3 * classes and max(abs(a - b) for a, b in pairs) <= 1e-5


def _digits_rows(path: Path) -> Path:
    """Three raw digits as a CSV with the feature names dltool's sklearn digits source uses."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    header = ",".join(digits.feature_names)
    path.write_text(header + "\n" + "\n".join(",".join(f"{v:g}" for v in row) for row in digits.data[:3]) + "\n")
    return path


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_jax_run_resumes_evaluates_and_predicts_on_tensorflow_with_equal_outputs(tmp_path):
    pytest.importorskip("jax")
    from dltool.commands.resume import resume

    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    config = str(REPO / "configs" / "digits_mlp.yaml")  # 30 epochs: about 2 s on JAX after the first
    process = subprocess.Popen(
        [sys.executable, "-m", "dltool", "train", config, "--backend", "jax", "-q", "--runs-dir", "runs"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/history.csv")):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # after its first epoch
    process.communicate(timeout=60)
    (folder,) = (tmp_path / "runs").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "INTERRUPTED" and info["versions"]["backend"] == "jax" and info["versions"]["jax"]
    assert "backend: jax" in (folder / "config.yaml").read_text()
    from dltool.commands.runs_report import summarize
    from dltool.runs import Run

    assert summarize(Run(folder))["backend"] == "jax"  # what `dltool runs` and `runs show` print

    assert resume(str(folder)).status == "COMPLETED"  # this process runs Keras on TensorFlow
    assert "on backend tensorflow, trained on jax" in (folder / "train.log").read_text()
    _assert_equal_outputs(folder, _digits_rows(tmp_path / "rows.csv"), classes=10)


TRAIN_ON_JAX_SCRIPT = """
import json, sys
from dltool.backend import import_keras
import_keras(backend="jax")
import keras
from dltool.commands.predict import predict
from dltool.commands.train import train
from dltool.config import load_config
run = train(load_config(sys.argv[1]), runs_root=sys.argv[2])
predictions = json.loads(predict(run, sys.argv[3:], fmt="json").output)
print(json.dumps({"backend": keras.backend.backend(), "run": str(run.path), "predictions": predictions}))
"""


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_backbone_with_fine_tuning_trains_on_jax_and_predicts_alike_on_tensorflow(backbone_run, tmp_path):
    """The MobileNetV3Small of conftest's backbone_run (its weights file, its photos), trained again on JAX. Every
    dltool process imports TensorFlow, whatever the backend (the data layer, and set_determinism), so a JAX run
    does too; what JAX changes is where the model computes."""
    pytest.importorskip("jax")
    from dltool.commands.predict import predict
    from dltool.config import load_config
    from dltool.runs import Run

    config = tmp_path / "backbone.yaml"
    config.write_text(backbone_run.file("config.yaml").read_text().replace("backend: tensorflow", "backend: jax"))
    photos = sorted(Path(load_config(backbone_run.file("config.yaml")).data.path).rglob("*.png"))[::6]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ON_JAX_SCRIPT, str(config), str(tmp_path / "runs"), *map(str, photos)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    on_jax = json.loads(result.stdout.strip().splitlines()[-1])
    run = Run(Path(on_jax["run"]))
    assert on_jax["backend"] == "jax" and run.info["versions"]["backend"] == "jax" and run.status == "COMPLETED"
    assert [line.split(",")[1] for line in run.file("history.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert run.info["backbone"]["weights_sha256"] == backbone_run.info["backbone"]["weights_sha256"]
    on_tensorflow = json.loads(predict(run, photos, fmt="json").output)
    got = np.array([list(r["probabilities"].values()) for r in on_jax["predictions"]])
    expected = np.array([list(r["probabilities"].values()) for r in on_tensorflow])
    # Within the tolerance export holds a backbone to: each backend sums its hundred-odd layers its own way.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.ptp(expected, axis=0).max() > 0.01  # outputs that depend on the image


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_tensorflow_run_evaluates_and_predicts_equally_on_jax(iris_run, tmp_path):
    pytest.importorskip("jax")
    rows = tmp_path / "rows.csv"
    rows.write_text(IRIS_ROWS)
    _assert_equal_outputs(iris_run.path, rows)


@pytest.mark.torch
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_torch_run_evaluates_and_predicts_equally_on_tensorflow(tmp_path):
    pytest.importorskip("torch")
    config = str(REPO / "configs" / "digits_mlp.yaml")
    trained = run_cli("train", config, "--backend", "torch", "-q", "--set", "train.epochs=3", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert info["versions"]["backend"] == "torch" and info["versions"]["torch"].startswith("2.")
    _assert_equal_outputs(folder, _digits_rows(tmp_path / "rows.csv"), classes=10, other="torch")


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_smoke_on_jax_trains_what_it_can_and_skips_text_models_saying_why(tmp_path):
    pytest.importorskip("jax")
    configs = [str(REPO / "configs" / name) for name in ("digits_mlp.yaml", "imdb_lstm.yaml")]
    result = run_cli("smoke", *configs, "--fake-data", "--backend", "jax", "--json", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    report = {Path(r["config"]).name: r for r in json.loads(result.stdout)["configs"]}
    assert report["digits_mlp.yaml"]["status"] == "passed"
    assert report["imdb_lstm.yaml"]["status"] == "skipped"
    assert "TextVectorization runs only inside TensorFlow graphs" in report["imdb_lstm.yaml"]["message"]


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_info_reports_versions_backend_devices_and_extras():
    from typer.testing import CliRunner

    from dltool.cli.app import app

    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backend"] == "tensorflow" and report["versions"]["keras"]
    assert any(d["kind"] == "CPU" for d in report["devices"])
    assert report["optional"]["optuna"]  # the test extra installs it
    shown = CliRunner().invoke(app, ["info"])
    assert shown.exit_code == 0 and "backend: tensorflow" in shown.output and "optional packages:" in shown.output
