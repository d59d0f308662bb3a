"""`dltool export`: each format written, reloaded in its own runtime and compared; failures leave nothing behind.

One tiny iris run (standardized inputs: the folded preprocessing is exercised)
serves the per-format tests; the matrix test exports every shipped config's
model, trained one epoch on stand-in data, in every format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_support import IRIS_CONFIG, REPO, config_with_data_path, train_in
from typer.testing import CliRunner

from dltool.errors import ExportError, VerificationError

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A COMPLETED 2-epoch iris run of its own (exports write into the run folder)."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    root = tmp_path_factory.mktemp("export")
    config = config_from_text(IRIS_CONFIG, source="iris.yaml", overrides=["train.epochs=2", "train.plots=false"])
    return train(config, runs_root=root / "runs")


pytestmark = pytest.mark.slow  # every test runs Keras; most train or convert a model

DIABETES_CONFIG = """
name: diabetes-test
seed: 0
data:
  source: csv
  path: {path}
  target: target
  standardize: true
  test: 0.2
  validation: 0.1
model:
  input_shape: [10]
  layers:
    - Dense: {{units: 32, activation: relu}}
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: 1}}
train:
  optimizer: {{name: adam, learning_rate: 0.01}}
  loss: mse
  epochs: 3
  batch_size: 32
  plots: false
"""


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    """A COMPLETED 3-epoch regression run on scikit-learn's diabetes as a CSV: raw features, targets 25 to 346,
    so the model's outputs are in the hundreds, where float32 rounds in steps of 1.5e-5 to 3e-5."""
    from sklearn.datasets import load_diabetes

    root = tmp_path_factory.mktemp("diabetes")
    data = load_diabetes(scaled=False)
    path = root / "diabetes.csv"
    header = ",".join([*data.feature_names, "target"])
    np.savetxt(path, np.column_stack([data.data, data.target]), delimiter=",", header=header, comments="", fmt="%.6g")
    return train_in(root, config_with_data_path(DIABETES_CONFIG, path, source="diabetes.yaml"))


def _records(run) -> list[dict]:
    return json.loads(run.file("exports.json").read_text())


def test_left_out_layers_are_identity_at_inference():
    import keras

    from dltool.exporting.inference import INFERENCE_IDENTITY_LAYERS

    needs = {
        "RandomRotation": {"factor": 0.2},
        "RandomZoom": {"height_factor": 0.2},
        "RandomTranslation": {"height_factor": 0.1, "width_factor": 0.1},
        "RandomContrast": {"factor": 0.2},
        "RandomBrightness": {"factor": 0.2},
        "RandomShear": {"x_factor": 0.2},
        "RandomGrayscale": {"factor": 0.5},
        "RandomPosterization": {"factor": (1, 8)},
        "RandomColorJitter": {"brightness_factor": 0.2},
        "GaussianNoise": {"stddev": 1.0},
        "Solarization": {"addition_factor": 0.2, "threshold_factor": 0.2},
    }
    ranged = {"RandomHue", "RandomSaturation", "RandomSharpness", "RandomColorDegeneration"}
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    for name in sorted(INFERENCE_IDENTITY_LAYERS):
        args = dict(needs.get(name, {}))
        if "Dropout" in name:
            args["rate"] = 0.3
        if name in ranged:
            args["factor"] = 0.2
        cls = getattr(keras.layers, name)
        if "value_range" in cls.__init__.__code__.co_varnames:
            args["value_range"] = (0, 255)
        sample = {"SpatialDropout1D": x[:, 0], "SpatialDropout3D": x[:, None]}.get(name, x)
        assert np.array_equal(np.asarray(cls(**args)(sample, training=False)), sample), name


def test_saved_model_goes_to_the_next_version_folder_with_labels_and_a_serving_signature(run, tmp_path):
    import tensorflow as tf

    from dltool.commands.export import export, serving_commands

    first = export(run, "saved_model", output=tmp_path / "models")
    second = export(run, "saved_model", output=tmp_path / "models")
    assert (first["version"], second["version"]) == (1, 2)
    folder = tmp_path / "models" / "iris-test"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]
    assert (folder / "2" / "labels.txt").read_text().split() == ["setosa", "versicolor", "virginica"]
    assert first["max_abs_diff"] <= 1e-5 and first["samples"] == 30 and first["data"] == "test split"
    signature = tf.saved_model.load(str(folder / "1")).signatures["serving_default"]
    raw = np.array([first["example"]], dtype=np.float32)  # raw centimetres: the standardization is inside
    probabilities = next(iter(signature(inputs=tf.constant(raw)).values())).numpy()
    assert probabilities.shape == (1, 3) and abs(probabilities.sum() - 1) < 1e-5
    docker, curl = serving_commands(second)
    assert docker == (
        f"docker run -p 8501:8501 --mount type=bind,source={folder.resolve()},target=/models/iris-test "
        "-e MODEL_NAME=iris-test -t tensorflow/serving"
    )
    assert curl.startswith('curl -d \'{"instances": [[') and curl.endswith(
        "-X POST http://localhost:8501/v1/models/iris-test:predict"
    )
    records = _records(run)[-2:]
    assert [r["format"] for r in records] == ["saved_model", "saved_model"]
    assert records[1]["path"] == str((folder / "2").resolve()) and "example" not in records[1]
    assert set(records[0]) >= {"runtime", "runtime_version", "max_abs_diff", "samples", "seconds", "created"}


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("litert", ".tflite")])
def test_file_formats_are_verified_in_their_runtime_and_recorded(run, tmp_path, fmt, suffix):
    from dltool.commands.export import export

    record = export(run, fmt, output=tmp_path)
    target = tmp_path / f"iris-test{suffix}"
    assert record["path"] == str(target.resolve()) and target.is_file()
    assert record["max_abs_diff"] <= 1e-5 and record["samples"] == 30
    assert json.loads((tmp_path / "iris-test.json").read_text())["class_names"] == ["setosa", "versicolor", "virginica"]
    assert (tmp_path / "iris-test.labels.txt").read_text() == "setosa\nversicolor\nvirginica\n"
    latest = _records(run)[-1]
    if fmt == "onnx":
        assert latest["runtime"] == "onnxruntime" and isinstance(latest["opset"], int) and latest["opset"] >= 13
    else:
        assert latest["runtime"] == "ai-edge-litert" and latest["batch"] is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_a_difference_over_the_tolerance_exits_1_and_leaves_nothing(run, tmp_path, monkeypatch):
    from dltool.cli.app import app
    from dltool.exporting import to_onnx

    before = len(_records(run)) if run.file("exports.json").is_file() else 0
    original = to_onnx.Runner.run
    monkeypatch.setattr(to_onnx.Runner, "run", lambda self, x: original(self, x) + 1e-3)
    target = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(run.path), "--format", "onnx", "-o", str(target)])
    assert result.exit_code == 1, result.output
    assert "differs from model.keras by up to 0.001 on 30 samples" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
    after = len(_records(run)) if run.file("exports.json").is_file() else 0
    assert after == before
    with pytest.raises(VerificationError):
        from dltool.commands.export import export

        export(run, "onnx", output=tmp_path / "m.onnx")


def test_a_missing_runtime_exits_2_with_the_pip_command(run, tmp_path, monkeypatch):
    from dltool.cli.app import app

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = runner.invoke(app, ["export", str(run.path), "--format", "onnx", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        'error: ONNX verification needs the package onnxruntime, which is not installed; pip install -e ".[export]"'
    )
    assert list(tmp_path.iterdir()) == []


def test_export_on_a_data_file_and_runs_show_lists_exports(run, tmp_path):
    from dltool.cli.app import app

    rows = tmp_path / "rows.csv"
    header = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)"
    rows.write_text(header + "\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n")
    result = runner.invoke(
        app, ["export", str(run.path), "-f", "litert", "--data", str(rows), "-o", str(tmp_path / "iris.tflite")]
    )
    assert result.exit_code == 0, result.output
    assert f"exported litert: {(tmp_path / 'iris.tflite').resolve()}" in result.output
    assert f"on 3 samples of the file {rows.resolve()}" in result.output
    shown = runner.invoke(app, ["runs", "show", str(run.path)])
    assert "exports (dltool export)" in shown.output and "ai-edge-litert" in shown.output
    as_json = json.loads(runner.invoke(app, ["runs", "show", str(run.path), "--json"]).output)
    assert as_json["exports"][-1]["path"] == str((tmp_path / "iris.tflite").resolve())
    assert as_json["exports"][-1]["samples"] == 3


def test_a_bad_format_or_output_is_refused_before_any_work(run, tmp_path):
    from dltool.commands.export import export
    from dltool.errors import UsageError

    with pytest.raises(UsageError, match="expected saved_model, onnx, litert, received 'tflite'"):
        export(run, "tflite")
    with pytest.raises(UsageError, match=r"a onnx file ends in \.onnx"):
        export(run, "onnx", output=tmp_path / "model.tflite")
    with pytest.raises(UsageError, match="does not exist; create it first"):
        export(run, "onnx", output=tmp_path / "missing" / "model.onnx")


# ------------------------------------------------------------------ every shipped config in every format
# What each converter cannot hold, with the exact error dltool gives (exit 2); every other cell must verify.
TEXT_ONNX = (
    "onnx: TextVectorization (the model's raw-text input) becomes TensorFlow string ops (StaticRegexReplace, "
    "StringSplit, lookup tables) that ONNX Runtime has no kernels for; export this run as saved_model"
)
TEXT_LITERT = (
    "litert: TextVectorization (the model's raw-text input) needs TensorFlow string ops as Flex ops, which the "
    "standalone ai-edge-litert interpreter lacks (it has no Flex delegate); export this run as saved_model"
)
REFUSED = {("imdb_lstm", "onnx"): TEXT_ONNX, ("imdb_lstm", "litert"): TEXT_LITERT}
FORMATS = ("saved_model", "onnx", "litert")
SUFFIX = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}


def export_matrix(root: Path, configs: list[Path]) -> tuple[dict[tuple[str, str], dict | ExportError], dict]:
    """Train each config one epoch on 32 stand-in samples and export it in every format: (record or error per
    (config, format), the runs by config)."""
    from dltool.commands.export import export
    from dltool.commands.smoke import smoke_overrides
    from dltool.commands.train import train
    from dltool.config import load_config
    from dltool.data.standins import write_stand_in

    cells, runs = {}, {}
    for path in configs:
        config = load_config(path)
        overrides = write_stand_in(config, root / "data" / path.stem, 32, seed=0)
        # This process runs Keras on TensorFlow; a config naming jax (mnist_mlp) is exported from a TensorFlow run.
        # As in `dltool smoke`, a backbone's imagenet weights are swapped for none (no download here).
        config = load_config(path, smoke_overrides(1, False, config) + overrides + ["backend=tensorflow"])
        trained = runs[path.stem] = train(config, runs_root=root / "runs", samples=32)
        for fmt in FORMATS:
            try:
                cells[path.stem, fmt] = export(trained, fmt, output=root / f"{path.stem}-{fmt}{SUFFIX[fmt]}")
            except ExportError as exc:
                cells[path.stem, fmt] = exc
    return cells, runs


def test_every_shipped_config_exports_in_every_format_or_says_why(tmp_path, monkeypatch):
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"digits_mlp", "cifar10_cnn", "imdb_lstm", "lstm_forecaster", "mnist_cnn"}
    cells, runs = export_matrix(tmp_path, configs)
    for (name, fmt), cell in cells.items():
        if (name, fmt) in REFUSED:
            assert isinstance(cell, ExportError) and str(cell) == REFUSED[name, fmt], (name, fmt, cell)
        else:
            assert isinstance(cell, dict), (name, fmt, str(cell))
            assert 0 <= cell["tolerance_used"] <= 1, (name, fmt, cell["max_abs_diff"])
    assert cells["cifar10_cnn", "onnx"]["left_out"] == ["random_flip", "random_translation", "random_zoom", "dropout"]
    page = (REPO / "docs" / "export.md").read_text()
    assert all(f"exit 2: `{message}`" in page for message in REFUSED.values())  # the docs' table says the same
    assert cells["lstm_forecaster", "litert"]["batch"] == 1
    assert (cells["lstm_forecaster", "onnx"]["rtol"], cells["lstm_forecaster", "onnx"]["atol"]) == (1e-4, 1e-4)
    assert (cells["digits_mlp", "onnx"]["rtol"], cells["digits_mlp", "onnx"]["atol"]) == (1e-5, 1e-5)

    # The refusals are what the converters do: without them tf2onnx's graph asks for TextVectorization's lookup
    # table as a second input (a graph ONNX Runtime could not run either), and LiteRT's converter asks for Flex ops.
    from dltool.commands.export import export
    from dltool.exporting import to_litert, to_onnx

    monkeypatch.setattr(to_onnx, "refuse", lambda model, state: None)
    monkeypatch.setattr(to_litert, "refuse", lambda model, state: None)
    with pytest.raises(ExportError, match="^onnx: tf2onnx left a tensor of layer .*text_vectorization.* as an input"):
        export(runs["imdb_lstm"], "onnx", output=tmp_path / "text.onnx")
    with pytest.raises(ExportError, match=r"\(Flex\), which the standalone ai-edge-litert interpreter lacks"):
        export(runs["imdb_lstm"], "litert", output=tmp_path / "text.tflite")
    assert not (tmp_path / "text.onnx").exists() and not (tmp_path / "text.tflite").exists()


# ------------------------------------------------------------------ the tolerance scales with the outputs
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_regression_run_with_outputs_in_the_hundreds_exports_in_every_format(diabetes_run, tmp_path, fmt):
    from dltool.commands.export import export

    record = export(diabetes_run, fmt, output=tmp_path / f"diabetes{SUFFIX[fmt]}")
    assert (record["rtol"], record["atol"]) == (1e-5, 1e-5) and 0 <= record["tolerance_used"] <= 1
    latest = _records(diabetes_run)[-1]
    assert latest["format"] == fmt and (latest["rtol"], latest["atol"]) == (1e-5, 1e-5)
    assert latest["max_abs_diff"] == record["max_abs_diff"] and latest["tolerance_used"] == record["tolerance_used"]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(record["path"], providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["inputs"]  # the name serve and the SavedModel use
        raw = np.array([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], dtype=np.float32)  # the CSV's first row
        assert 25 < session.run(None, {"inputs": raw})[0][0, 0] < 346  # raw values in, blood-test units out


def test_the_check_is_relative_to_the_outputs_and_rtol_atol_move_it(diabetes_run, tmp_path, monkeypatch):
    from dltool.cli.app import app
    from dltool.exporting import to_onnx

    target = tmp_path / "model.onnx"
    original = to_onnx.Runner.run
    # 1e-4 off outputs in the hundreds is a float32 rounding step or two: within rtol 1e-5 (allowed >= 2.5e-4).
    monkeypatch.setattr(to_onnx.Runner, "run", lambda self, x: original(self, x) + 1e-4)
    result = runner.invoke(app, ["export", str(diabetes_run.path), "-f", "onnx", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "of the allowed difference (rtol 1e-05, atol 1e-05) on 89 samples" in result.output

    # 1 part in 10,000 off is ten times rtol: refused, the worst element named, the way out said.
    monkeypatch.setattr(to_onnx.Runner, "run", lambda self, x: original(self, x) * (1 + 1e-4))
    target.unlink()
    result = runner.invoke(app, ["export", str(diabetes_run.path), "-f", "onnx", "-o", str(target)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "differs from model.keras by up to " in message and "on 89 samples (test split); worst at sample " in message
    assert "(atol + rtol * |expected|, rtol 1e-05, atol 1e-05); nothing was written to " in message
    assert message.endswith("if such a difference is acceptable, loosen the check with --rtol/--atol")
    assert not target.exists()

    loosened = ["export", str(diabetes_run.path), "-f", "onnx", "-o", str(target), "--rtol", "1e-3", "--atol", "0"]
    result = runner.invoke(app, loosened)
    assert result.exit_code == 0, result.output
    assert "(rtol 0.001, atol 0)" in result.output
    assert (_records(diabetes_run)[-1]["rtol"], _records(diabetes_run)[-1]["atol"]) == (1e-3, 0.0)


def test_exact_gelu_converts_to_onnx_as_one_minus_erf(tmp_path):
    """TensorFlow computes exact GELU with Erfc, which tf2onnx 1.17 cannot convert; dltool teaches it 1 - Erf."""
    from dltool.commands.export import export
    from dltool.commands.train import train
    from dltool.config import config_from_text

    config = config_from_text(
        IRIS_CONFIG,
        source="iris.yaml",
        overrides=[
            "train.epochs=1",
            "train.plots=false",
            "model.layers=[{Dense: {units: 8, activation: gelu}}, {Dense: {units: 3, activation: softmax}}]",
        ],
    )
    gelu_run = train(config, runs_root=tmp_path / "runs")
    record = export(gelu_run, "onnx", output=tmp_path)
    assert record["max_abs_diff"] <= 1e-5 and record["samples"] == 30


MIXED_CNN_CONFIG = """
name: mixed-cnn
seed: 0
data: {source: sklearn, name: digits, scale: 16, test: 0.2, validation: 0.1}
model:
  input_shape: [64]
  layers: [{Reshape: {target_shape: [8, 8, 1]}}, {Conv2D: {filters: 8, kernel_size: 3, activation: relu}},
           MaxPooling2D, Flatten, {Dense: {units: 10, activation: softmax}}]
train: {loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, precision: mixed_bfloat16,
        tensorboard: false, plots: false}
"""


def test_a_mixed_precision_run_exports_its_float32_copy_to_onnx_and_litert_and_says_so(tmp_path):
    """ONNX and LiteRT hold no bfloat16 ops (LiteRT's converter asks for Flex ops, ONNX export refused them): the
    run's float32 copy is exported, verified against itself, and the record says how far it is from the run as
    trained. SavedModel keeps the run's own precision."""
    import keras

    from dltool.cli.display.export import export_lines
    from dltool.commands.export import export
    from dltool.config import config_from_text

    try:
        run = train_in(tmp_path, config_from_text(MIXED_CNN_CONFIG, source="mixed.yaml"))
    finally:  # Keras's dtype policy is process-wide: the next test's model loads must not build in bfloat16
        keras.config.set_dtype_policy("float32")
    for fmt, name in (("onnx", "m.onnx"), ("litert", "m.tflite")):
        record = export(run, fmt, output=tmp_path / name)
        assert record["computes_in"] == "float32" and record["trained_in"] == "mixed_bfloat16"
        assert record["max_abs_diff"] <= 1e-5  # the float32 copy, as exported
        assert 0 < record["max_abs_diff_from_trained"] < 1e-2  # bfloat16 rounding of the run as trained
        shown = "\n".join(export_lines(record, None))
        assert "from model.keras in float32" in shown and "the run trained in mixed_bfloat16" in shown
    saved = export(run, "saved_model", output=tmp_path / "models")
    assert "computes_in" not in saved and saved["max_abs_diff"] == 0
