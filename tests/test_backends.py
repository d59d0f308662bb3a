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
    """The MobileNetV3Small of conftest's backbone_run (its weights file, its photos), trained again on JAX, then
    predicted on TensorFlow: the same outputs."""
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


IN_A_FRESH_PROCESS = """
import sys
from dltool.cli import main
sys.argv = ["dltool", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print("TENSORFLOW IMPORTED" if "tensorflow" in sys.modules else "TENSORFLOW NOT IMPORTED")
"""


def _train_in_a_fresh_process(folder: Path, config: str, **env: str) -> subprocess.CompletedProcess:
    """`dltool train CONFIG` in a process of its own, which says last whether it imported TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-c", IN_A_FRESH_PROCESS, "train", config, "-q", "--runs-dir", "runs"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_jax_run_on_npz_never_imports_tensorflow_and_its_tensorboard_logs_read_back(tmp_path):
    """Importing TensorFlow costs a JAX run seconds and hundreds of MB it never uses: not for the data (arrays),
    the seed, saving the model (Keras asks whether TensorFlow is there) or the TensorBoard logs."""
    pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", x=rng.normal(size=(60, 4)).astype("float32"), y=(np.arange(60) % 3))
    (tmp_path / "npz.yaml").write_text(
        """\
name: npz-jax
backend: jax
data: {source: npz, path: xy.npz, test: 0.2, validation: 0.2}
model: {input_shape: [4], layers: [{Dense: {units: 8, activation: relu}}, {Dense: {units: 3, activation: softmax}}]}
train: {loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 3, batch_size: 8}
"""
    )
    cache = tmp_path / "jax-cache"
    env = {"DLTOOL_JAX_CACHE": str(cache), "JAX_COMPILATION_CACHE_DIR": ""}  # empty: not set
    result = _train_in_a_fresh_process(tmp_path, "npz.yaml", **env)
    assert result.stdout.strip().endswith("TENSORFLOW NOT IMPORTED"), result.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "COMPLETED"
    assert "TensorFlow imported" not in (run / "train.log").read_text()
    # JAX kept what it compiled (the train, test and predict steps, the initializers) for the next run.
    assert len([p for p in cache.iterdir() if p.is_file()]) >= 3
    shown = subprocess.run(
        [sys.executable, "-m", "dltool", "info", "--backend", "jax"],
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "COLUMNS": "400", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert f"compiled programs kept in {cache}" in shown.stdout, shown.stdout + shown.stderr

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    history = (run / "history.csv").read_text().splitlines()
    header, last = history[0].split(","), history[-1].split(",")
    for split, key in (("train", "loss"), ("validation", "val_accuracy")):
        events = EventAccumulator(str(run / "tensorboard" / split), size_guidance={"tensors": 0})
        events.Reload()
        scalars = events.Tensors(f"epoch_{key.removeprefix('val_')}")
        assert [e.step for e in scalars] == [0, 1, 2]  # what tf.summary.scalar writes: one tensor per epoch
        assert float(make_ndarray(scalars[-1].tensor_proto)) == pytest.approx(float(last[header.index(key)]), 1e-4)
        assert events.SummaryMetadata(f"epoch_{key.removeprefix('val_')}").plugin_data.plugin_name == "scalars"


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_streamed_jax_run_imports_tensorflow_for_tf_data_and_says_why(tmp_path):
    pytest.importorskip("jax")
    rows = "\n".join(f"{i % 7},{i % 5},{'abc'[i % 3]}" for i in range(60))
    (tmp_path / "rows.csv").write_text("a,b,label\n" + rows + "\n")
    (tmp_path / "stream.yaml").write_text(
        """\
name: stream-jax
backend: jax
data: {source: csv, path: rows.csv, target: label, stream: true, test: 0.2, validation: 0.2}
model: {input_shape: [2], layers: [{Dense: {units: 3, activation: softmax}}]}
train: {loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, batch_size: 8, tensorboard: false}
"""
    )
    result = _train_in_a_fresh_process(tmp_path, "stream.yaml")
    assert result.stdout.strip().endswith("TENSORFLOW IMPORTED")
    (run,) = (tmp_path / "runs").iterdir()
    first_line = (run / "train.log").read_text().splitlines()[0]
    assert first_line.endswith(
        "; TensorFlow imported: tf.data reads the streamed data (data.stream) from disk, batch by batch"
    )


# --------------------------------------------------------------------------- train.precision: auto
AVX512_BF16_FLAGS = {"sse4_2", "avx2", "avx512f", "avx512_bf16"}


@pytest.mark.parametrize(
    ("backend", "flags", "gpus", "policy", "why"),
    [
        ("tensorflow", AVX512_BF16_FLAGS, [], "mixed_bfloat16", "the CPU has AVX512-BF16, which tensorflow's"),
        ("torch", {"amx_bf16", "amx_tile"}, [], "mixed_bfloat16", "the CPU has AMX-BF16, which torch's"),
        ("jax", AVX512_BF16_FLAGS, [], "float32", "XLA's CPU backend does not use them"),
        ("tensorflow", {"avx2", "avx512f"}, [], "float32", "the CPU has no bfloat16 instructions"),
        ("tensorflow", set(), [], "float32", "the CPU has no bfloat16 instructions"),
        ("jax", set(), [(8, 0)], "mixed_bfloat16", "the GPU (compute capability 8.0) computes bfloat16 natively"),
        ("tensorflow", set(), [(9, 0), (7, 5)], "mixed_bfloat16", "compute capability 9.0"),
        ("torch", AVX512_BF16_FLAGS, [(7, 5)], "float32", "compute capability 7.5 is under 8.0"),
    ],
)
def test_precision_auto_is_bfloat16_where_the_training_device_computes_it_natively(backend, flags, gpus, policy, why):
    from dltool.backend import choose_precision

    chosen, reason = choose_precision(backend, flags, gpus)
    assert chosen == policy and why in reason
    assert choose_precision(backend, set(flags), list(gpus)) == (chosen, reason)  # the same machine, the same answer


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    import builtins

    from dltool import backend

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k)
    )
    assert backend.cpu_flags() == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert backend.cpu_flags() == set()


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_auto_precision_is_resolved_into_the_config_with_its_reason(monkeypatch):
    from dltool import backend
    from dltool.training.session import resolve_precision

    config = config_from_text(IRIS_CONFIG.replace("  batch_size: 16", "  batch_size: 16\n  precision: auto"))
    assert config.train.precision == "auto"
    monkeypatch.setattr(backend, "cpu_flags", lambda: AVX512_BF16_FLAGS)
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [])
    resolved, choice = resolve_precision(config)
    assert resolved.train.precision == "mixed_bfloat16" and choice["asked"] == "auto"
    assert choice["policy"] == "mixed_bfloat16" and "AVX512-BF16" in choice["reason"]
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2"})
    assert resolve_precision(config)[0].train.precision == "float32"
    assert resolve_precision(resolved) == (resolved, None)  # an explicit policy stays as it is
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [(8, 6)])
    assert resolve_precision(config)[0].train.precision == "mixed_bfloat16"
    cpu_only = config.model_copy(update={"train": config.train.model_copy(update={"devices": "cpu"})})
    assert resolve_precision(cpu_only)[0].train.precision == "float32"  # the GPU is not the training device


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_info_says_what_precision_auto_picks_and_why(monkeypatch):
    from typer.testing import CliRunner

    from dltool import backend
    from dltool.cli.app import app

    monkeypatch.setattr(backend, "cpu_flags", lambda: AVX512_BF16_FLAGS)
    shown = CliRunner().invoke(app, ["info"])
    assert shown.exit_code == 0, shown.output
    assert "train.precision auto picks mixed_bfloat16: the CPU has AVX512-BF16" in shown.output
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2"})
    report = json.loads(CliRunner().invoke(app, ["info", "--json"]).output)
    assert report["precision_auto"] == {
        "policy": "float32",
        "reason": "the CPU has no bfloat16 instructions (AVX512-BF16 or AMX)",
    }


def test_jax_s_compilation_cache_folder_is_per_machine_and_the_user_s_own_setting_wins(monkeypatch, tmp_path):
    from dltool import backend

    for name in ("JAX_COMPILATION_CACHE_DIR", "DLTOOL_JAX_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2", "fma"})
    here = backend.jax_compilation_cache_folder()
    assert here.parent == tmp_path / "dltool" / "jax" and len(here.name) == 16
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2", "fma", "avx512_bf16"})
    assert backend.jax_compilation_cache_folder() != here  # code compiled for one CPU is never loaded on another

    monkeypatch.setenv("DLTOOL_JAX_CACHE", str(tmp_path / "mine"))
    assert backend.jax_compilation_cache_folder() == tmp_path / "mine"
    monkeypatch.setenv("DLTOOL_JAX_CACHE", "off")
    assert backend.jax_compilation_cache_folder() is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    assert backend.jax_compilation_cache_folder() == tmp_path / "jax-own"


def test_without_filelock_the_jax_cache_stays_off_unless_the_user_set_jax_s_own(monkeypatch, tmp_path):
    import importlib.util

    from dltool import backend

    # JAX bounds a cache's size only with filelock, and warned at every entry without it (seen in CI's wheel).
    for name in ("JAX_COMPILATION_CACHE_DIR", "DLTOOL_JAX_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "filelock" else found(name, *a))
    assert backend.jax_compilation_cache_folder() is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    assert backend.jax_compilation_cache_folder() == tmp_path / "jax-own"


def test_the_jax_compilation_cache_is_set_before_jax_starts_keeping_every_program(monkeypatch, tmp_path):
    from dltool import backend

    for name in (
        "JAX_COMPILATION_CACHE_DIR", "DLTOOL_JAX_CACHE", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_COMPILATION_CACHE_MAX_SIZE",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLTOOL_JAX_CACHE", "off")
    backend._use_jax_compilation_cache()
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    monkeypatch.setenv("DLTOOL_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")  # the user's own setting stays
    backend._use_jax_compilation_cache()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "2"
    assert os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(1024**3)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DLTOOL_JAX_CACHE", str(tmp_path / "a-file" / "jax"))  # cannot be created: no cache
    backend._use_jax_compilation_cache()
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
