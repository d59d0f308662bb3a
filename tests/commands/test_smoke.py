"""`dltool smoke`: configs found, stand-in data of the declared shapes, and whole smoke runs through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from e2e_support import IRIS_CONFIG
from test_reports import check_junit
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.smoke import find_configs
from dltool.config import config_from_text
from dltool.data import load_source
from dltool.data.standins import missing_data, write_stand_in
from dltool.errors import UsageError

runner = CliRunner()
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}

TEXT_CONFIG = """
name: tiny-text
data: {source: text, path: reviews.csv, test: 0.2, validation: 0.2}
model:
  input_shape: [1]
  layers:
    - TextVectorization: {max_tokens: 50, output_sequence_length: 8}
    - Embedding: {input_dim: 50, output_dim: 4}
    - GlobalAveragePooling1D
    - Dense: {units: 1, activation: sigmoid}
train: {loss: binary_crossentropy, metrics: [accuracy], epochs: 3, batch_size: 16}
"""
FORECAST_CONFIG = """
name: tiny-forecast
data: {source: timeseries, path: series.csv, target: value, features: [value, other], window: 6, test: 0.2,
       validation: 0.1, standardize: true, standardize_targets: true}
model: {input_shape: [6, 2], layers: [Flatten, {Dense: {units: 1}}]}
train: {loss: mse, metrics: [mae], epochs: 2}
"""
IMAGES_CONFIG = """
name: tiny-images
data: {source: images, path: pictures, image_size: [8, 8], color_mode: grayscale, scale: 255, test: 0.25}
model: {input_shape: [8, 8, 1], layers: [Flatten, {Dense: {units: 3, activation: softmax}}]}
train: {loss: sparse_categorical_crossentropy, epochs: 1}
"""
TRANSFER_CONFIG = """
name: tiny-transfer
data: {source: images, path: photos, image_size: [32, 32], test: 0.25}
model:
  input_shape: [32, 32, 3]
  layers:
    - Backbone: {application: MobileNetV3Small, weights: imagenet, alpha: 0.75}
    - Dense: {units: 3, activation: softmax}
train: {loss: sparse_categorical_crossentropy, epochs: 5, fine_tune: {unfreeze: 10, epochs: 20}}
"""
EARLIER_CONFIG = """
name: earlier
data: {source: images, path: photos, image_size: [8, 8], test: 0.25}
model: {input_shape: [8, 8, 3], layers: [Flatten, {Dense: {units: 4, activation: relu}}, {Dense: {units: 3}}]}
train: {loss: sparse_categorical_crossentropy, epochs: 1}
"""
REUSE_CONFIG = """
name: reuse
data: {source: images, path: photos, image_size: [8, 8], test: 0.25}
model:
  input_shape: [8, 8, 3]
  layers: [{Backbone: {run: earlier, up_to: -2}}, {Dense: {units: 3, activation: softmax}}]
train: {loss: sparse_categorical_crossentropy, epochs: 1}
"""
SWEEP_SPEC = "experiment: iris.yaml\nobjective: {metric: val_accuracy, goal: max}\nparameters: {train.epochs: {choice: [1, 2]}}\n"
BAD_CONFIG = "name: bad\ndata: {source: sklearn, name: iris}\nmodel:\n  input_shape: [4]\n  layers:\n    - Dense: {unit: 3}\ntrain: {loss: mse}\n"


def _folder(tmp_path, **files):
    folder = tmp_path / "configs"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


# --------------------------------------------------------------------------- finding configs (no TensorFlow)
def test_a_folder_gives_its_yaml_configs_and_skips_sweeps_and_other_yaml(tmp_path):
    folder = _folder(
        tmp_path,
        iris=IRIS_CONFIG,
        sweep=SWEEP_SPEC,
        notes="- a list\n",
        compose="services: {web: {image: nginx}}\n",
        broken="name: [unclosed\n",
    )
    (folder / "README.md").write_text("not yaml")
    found = {path.name: reason for path, reason in find_configs([folder, folder / "iris.yaml"])}
    assert found == {
        "broken.yaml": None,
        "compose.yaml": "not an experiment config (no data, model or train key)",
        "iris.yaml": None,
        "notes.yaml": "not an experiment config (not a mapping)",
        "sweep.yaml": "a sweep spec, not an experiment config",
    }


def test_paths_that_give_no_config_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="nothere: no such file or folder"):
        find_configs([tmp_path / "nothere"])
    with pytest.raises(UsageError, match="no \\*.yaml files in this folder"):
        find_configs([tmp_path])
    result = runner.invoke(app, ["smoke", str(tmp_path / "nothere")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


def test_data_that_needs_a_download_or_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    mnist = config_from_text(
        IRIS_CONFIG.replace("{source: sklearn, name: iris,", "{source: keras, name: mnist,").replace("[4]", "[28, 28]")
    )
    assert missing_data(mnist) == (
        f"keras dataset 'mnist' needs a download (not in {tmp_path / 'datasets'}); "
        "set data.path to a local copy, or use --fake-data"
    )
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mnist.npz").touch()
    assert missing_data(mnist) is None
    assert missing_data(config_from_text(TEXT_CONFIG)) == "data.path: reviews.csv not found; use --fake-data"
    assert missing_data(config_from_text(IRIS_CONFIG)) is None
    parts = TEXT_CONFIG.replace("source: text, path: reviews.csv", "source: csv, path: [a.csv, 'p/*.csv'], target: y")
    assert missing_data(config_from_text(parts)) == "data.path: a.csv not found; use --fake-data"
    (tmp_path / "a.csv").touch()
    monkeypatch.chdir(tmp_path)
    assert missing_data(config_from_text(parts)) == "data.path: p/*.csv matches no file; use --fake-data"


# --------------------------------------------------------------------------- stand-in data (no TensorFlow)
STAND_INS = {
    "keras mnist": ("{source: keras, name: mnist, scale: 255}", "[28, 28, 1]", "Dense: {units: 10}", (28, 28), 10),
    "keras cifar10": ("{source: keras, name: cifar10}", "[32, 32, 3]", "Dense: {units: 10}", (32, 32, 3), 10),
    "keras boston": ("{source: keras, name: boston_housing}", "[13]", "Dense: {units: 1}", (13,), None),
    "npz": ("{source: npz, path: x.npz, test: 0.2}", "[3, 2]", "Dense: {units: 4}", (3, 2), 4),
    "npy": ("{source: npy, x: x.npy, y: y.npy, test: 0.2}", "[5]", "Dense: {units: 1}", (5,), None),
    "csv": (
        "{source: csv, path: t.csv, target: kind, features: [a, b, c], test: 0.2}",
        "[3]",
        "Dense: {units: 3}",
        (3,),
        3,
    ),
    "csv regression": ("{source: csv, path: t.csv, target: y, test: 0.2}", "[7]", "Dense: {units: 1}", (7,), None),
    "csv with an id": (
        "{source: csv, path: 't*.csv', target: kind, exclude: [id], split_key: key, test: 0.2}",
        "[4]",
        "Dense: {units: 2}",
        (4,),
        2,
    ),
    "parquet": (
        "{source: parquet, path: 'data/*.parquet', target: kind, exclude: id, split_key: id, test: 0.2}",
        "[3]",
        "Dense: {units: 3}",
        (3,),
        3,
    ),
    "parquet regression": ("{source: parquet, path: t.parquet, target: y}", "[2]", "Dense: {units: 1}", (2,), None),
    "imdb": ("{source: text, dataset: imdb}", "[1]", "Dense: {units: 1, activation: sigmoid}", (1,), 2),
    "timeseries": (
        "{source: timeseries, path: s.csv, target: [a, b], window: 5, stride: 2, test: 0.2}",
        "[5, 2]",
        "Dense: {units: 2}",
        (5, 2),
        None,
    ),
    "images": (
        "{source: images, path: pics, image_size: [6, 4], classes: [cat, dog]}",
        "[6, 4, 3]",
        "Dense: {units: 2}",
        (6, 4, 3),
        2,
    ),
}


@pytest.mark.parametrize("name", STAND_INS)
def test_stand_in_data_has_the_shapes_and_classes_the_config_declares(tmp_path, name):
    data, shape, last, sample, classes = STAND_INS[name]
    loss = "sparse_categorical_crossentropy" if classes else "mse"
    if "sigmoid" in last:
        loss = "binary_crossentropy"
    first = "TextVectorization" if "text" in data else "Flatten"
    text = f"name: s\ndata: {data}\nmodel: {{input_shape: {shape}, layers: [{first}, {{{last}}}]}}\ntrain: {{loss: {loss}}}\n"
    config = config_from_text(text)
    overrides = write_stand_in(config, tmp_path / "stand-in", samples=32)
    config = config_from_text(text, overrides=overrides)
    raw = load_source(config.data, seed=0, classification=config.is_classifier)
    assert raw.x.shape[1:] == sample
    assert len(raw.x) + (0 if raw.x_test is None else len(raw.x_test)) >= 32 + 8
    labels = raw.y if raw.y_test is None else np.concatenate([raw.y, raw.y_test])
    if classes:
        assert len(set(map(str, labels))) == classes
    else:
        assert np.isfinite(np.asarray(labels, dtype=np.float64)).all()  # a CSV's targets are read as text


def test_sources_without_files_keep_their_own_data(tmp_path):
    assert write_stand_in(config_from_text(IRIS_CONFIG), tmp_path, samples=32) == []


def test_smoke_bounds_both_phases_and_builds_an_imagenet_backbone_untrained():
    from dltool.commands.smoke import smoke_overrides, untrained_backbone

    transfer = config_from_text(TRANSFER_CONFIG)
    assert untrained_backbone(transfer) == ["model.layers[0].Backbone.weights=none"]
    changes = smoke_overrides(2, False, transfer)
    assert {"train.epochs=2", "train.fine_tune.epochs=2", "model.layers[0].Backbone.weights=none"} <= set(changes)
    smoked = config_from_text(TRANSFER_CONFIG, overrides=changes)
    assert smoked.train.total_epochs == 4 and smoked.model.layers[0]["Backbone"]["weights"] == "none"
    # The Backbone may follow augmentation layers: the override names its place.
    augmented = TRANSFER_CONFIG.replace("  layers:\n", "  layers:\n    - RandomFlip: {mode: horizontal}\n")
    assert untrained_backbone(config_from_text(augmented)) == ["model.layers[1].Backbone.weights=none"]
    # A weights file stays (it belongs to the repository, like data); a config without fine_tune gets none.
    from_file = config_from_text(TRANSFER_CONFIG.replace("weights: imagenet", "weights: mobilenet.weights.h5"))
    assert untrained_backbone(from_file) == [] and untrained_backbone(config_from_text(IRIS_CONFIG)) == []
    assert not any("fine_tune" in change for change in smoke_overrides(1, False, config_from_text(IRIS_CONFIG)))
    tracked = IRIS_CONFIG + "tracking: {mlflow: {uri: 'http://mlflow:5000'}}\n"
    assert config_from_text(tracked).tracking.mlflow.uri == "http://mlflow:5000"
    changes = smoke_overrides(1, False, config_from_text(tracked))
    assert config_from_text(tracked, overrides=changes).tracking is None  # a smoke run is never logged to MLflow


# --------------------------------------------------------------------------- whole smoke runs
@pytest.mark.slow
def test_smoke_with_fake_data_trains_each_kind_and_reports_to_ci(tmp_path, monkeypatch):
    _folder(
        tmp_path,
        iris=IRIS_CONFIG,
        text=TEXT_CONFIG,
        forecast=FORECAST_CONFIG,
        images=IMAGES_CONFIG,
        bad=BAD_CONFIG,
        sweep=SWEEP_SPEC,
    )
    summary = tmp_path / "summary.md"
    junit = tmp_path / "smoke.xml"
    monkeypatch.chdir(tmp_path)
    env = {**WIDE, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = runner.invoke(
        app,
        [
            "smoke",
            "configs",
            "--fake-data",
            "--samples",
            "64",
            "--junit",
            str(junit),
            "--json",
            "--keep-runs",
            "--runs-dir",
            "runs",
        ],
        env=env,
    )
    assert result.exit_code == 1, result.output
    annotation, report_text = result.output.split("\n", 1)
    assert annotation == (
        "::error file=configs/bad.yaml,line=6,title=dltool::model.layers[0].Dense.unit: unknown "
        "argument 'unit' for Dense; did you mean 'units'?"
    )
    report = json.loads(report_text)
    status = {r["config"]: (r["status"], r["stage"]) for r in report["configs"]}
    assert status == {
        "configs/bad.yaml": ("failed", "validate"),
        "configs/forecast.yaml": ("passed", None),
        "configs/images.yaml": ("passed", None),
        "configs/iris.yaml": ("passed", None),
        "configs/sweep.yaml": ("skipped", "validate"),
        "configs/text.yaml": ("passed", None),
    }
    assert (report["passed"], report["failed"], report["skipped"], report["unmet"]) == (4, 1, 1, 0)
    iris = next(r for r in report["configs"] if r["config"] == "configs/iris.yaml")
    assert set(iris["stages"]) == {"train", "evaluate", "reload", "predict"} and "test.accuracy" in iris["metrics"]
    root = check_junit(junit.read_text())
    assert [s.get("name") for s in root] == sorted(status)
    assert "| configs/bad.yaml | failed |" in summary.read_text()
    # Kept runs keep their stand-in data, so they can be evaluated later.
    from dltool.commands.evaluate import evaluate

    text_run = next(r for r in report["configs"] if r["config"] == "configs/text.yaml")["run"]
    assert evaluate(text_run)["samples"] > 0


@pytest.mark.slow
def test_smoke_without_fake_data_skips_missing_data_and_checks_expectations_when_asked(tmp_path, monkeypatch):
    folder = _folder(tmp_path, iris=IRIS_CONFIG + 'expect: {test.accuracy: ">= 2"}\n', text=TEXT_CONFIG)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["smoke", str(folder), "--samples", "32"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert (
        "skipped     0.0s  " in result.output
        and "data: data.path: reviews.csv not found; use --fake-data" in result.output
    )
    assert "smoke: 2 configs, 1 passed, 1 skipped in" in result.output
    assert not (tmp_path / "runs").exists()
    expected = runner.invoke(app, ["smoke", str(folder / "iris.yaml"), "--expect-from-configs"], env=WIDE)
    assert expected.exit_code == 3, expected.output
    assert (
        "unmet" in expected.output
        and "test.accuracy = " in expected.output
        and "expected >= 2: NOT met" in expected.output
    )


@pytest.mark.slow
def test_smoke_with_fake_data_trains_an_imagenet_backbone_untrained_and_says_so(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    from dltool.runs import Run

    def no_download(*args, **kwargs):
        raise AssertionError("smoke asked Keras for the imagenet weights file")

    monkeypatch.setattr(file_utils, "get_file", no_download)  # the weights are neither cached nor downloadable
    _folder(tmp_path, transfer=TRANSFER_CONFIG)
    monkeypatch.chdir(tmp_path)
    args = ["smoke", "configs", "--fake-data", "--samples", "32", "--json", "--keep-runs", "--runs-dir", "runs"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    (transfer,) = json.loads(result.output)["configs"]
    assert transfer["status"] == "passed", transfer["message"]
    swapped = (
        "MobileNetV3Small's imagenet weights swapped for weights: none (the same architecture, untrained), so the "
        "smoke run needs no weights file and no download"
    )
    assert transfer["notes"] == [swapped]
    run = Run(Path(transfer["run"]))
    assert run.info["backbone"]["weights"] == "none" and "weights_sha256" not in run.info["backbone"]
    assert "model.layers[0].Backbone.weights=none" in run.info["overrides"]
    assert f"smoke: {swapped}" in run.file("train.log").read_text()
    phases = [line.split(",")[1] for line in run.file("history.csv").read_text().splitlines()[1:]]
    assert phases == ["1", "2"]  # one epoch in each phase, not 1 + 20


@pytest.mark.slow
def test_smoke_finds_a_backbone_run_in_the_runs_folder_and_skips_a_config_whose_run_is_not_there(tmp_path, monkeypatch):
    from e2e_support import write_photos

    from dltool.commands.train import train

    write_photos(tmp_path / "photos", per_class=4, size=8)
    monkeypatch.chdir(tmp_path)
    train(config_from_text(EARLIER_CONFIG), runs_root=tmp_path / "runs")
    _folder(tmp_path, reuse=REUSE_CONFIG, orphan=REUSE_CONFIG.replace("run: earlier", "run: nobody"))
    # The smoke runs go to a scratch folder; the backbone's run is looked up in ./runs all the same.
    result = runner.invoke(app, ["smoke", "configs", "--json"], env=WIDE)
    assert result.exit_code == 0, result.output
    report = {Path(r["config"]).name: r for r in json.loads(result.output)["configs"]}
    assert report["reuse.yaml"]["status"] == "passed", report["reuse.yaml"]["message"]
    orphan = report["orphan.yaml"]
    assert (orphan["status"], orphan["stage"]) == ("skipped", "validate")
    assert orphan["message"] == (
        f"model.layers[0].Backbone.run: no run matches 'nobody' in {tmp_path.resolve() / 'runs'} (by id prefix or "
        "name); `dltool runs` lists them; the backbone is that run's layers: train it first, or name its folder"
    )


@pytest.mark.slow
def test_smoke_with_fake_data_weighs_a_class_weight_mapping_balanced_and_says_so(tmp_path, monkeypatch):
    from dltool.runs import Run

    weighted = IMAGES_CONFIG.replace("epochs: 1}", "epochs: 1, class_weight: {cats: 2.0}}")
    _folder(tmp_path, weighted=weighted)
    monkeypatch.chdir(tmp_path)
    args = ["smoke", "configs", "--fake-data", "--samples", "32", "--json", "--keep-runs", "--runs-dir", "runs"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)["configs"]
    assert report["status"] == "passed", report["message"]
    assert report["notes"] == [
        "train.class_weight's labels name the real data's classes, which the stand-in data does not have: weighed "
        "balanced instead"
    ]
    assert Run(Path(report["run"])).info["class_weight"]["mode"] == "balanced"


@pytest.mark.slow
def test_smoke_with_fake_data_resamples_a_label_mapping_whole_and_fills_a_weight_column(tmp_path, monkeypatch):
    from dltool.runs import Run

    resampled = IMAGES_CONFIG.replace("test: 0.25", "test: 0.25, resample: {oversample: {cats: 2}}")
    assert resampled != IMAGES_CONFIG
    weighted = (
        "name: weighted\ndata: {source: csv, path: missing.csv, target: label, sample_weight: w}\n"
        "model: {input_shape: [3], layers: [{Dense: {units: 2, activation: softmax}}]}\n"
        "train: {loss: sparse_categorical_crossentropy, epochs: 1}\n"
    )
    _folder(tmp_path, resampled=resampled, weighted=weighted)
    monkeypatch.chdir(tmp_path)
    args = ["smoke", "configs", "--fake-data", "--samples", "32", "--json", "--keep-runs", "--runs-dir", "runs"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    reports = {report["config"].rsplit("/", 1)[-1]: report for report in json.loads(result.output)["configs"]}
    first, second = reports["resampled.yaml"], reports["weighted.yaml"]
    assert first["status"] == second["status"] == "passed", (first["message"], second["message"])
    assert first["notes"] == [
        "data.resample's labels name the real data's classes, which the stand-in data does not have: resampled "
        "{oversample: minority} instead"
    ]
    assert Run(Path(first["run"])).info["resample"]["setting"] == "minority"
