"""Whole-text output of `runs`, `runs show`, `runs compare` and a config error, pinned exactly.

The run folders are written by hand (no training), so every byte of the
output is known; a change in what users see fails here and must be deliberate.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dltool.cli.app import app

ENV = {"NO_COLOR": "1", "COLUMNS": "200"}
IRIS_ID = "20261124-101200-iris-test-ab12"
LINEAR_ID = "20261124-103000-linear-test-cd34"

IRIS_CONFIG = """name: iris-test
seed: 0
data:
  source: sklearn
  name: iris
train:
  optimizer:
    name: adam
    learning_rate: 0.05
  loss: sparse_categorical_crossentropy
  epochs: 3
"""
LINEAR_CONFIG = IRIS_CONFIG.replace("iris-test", "linear-test").replace("0.05", "0.1").replace("epochs: 3", "epochs: 2")


def _write_run(root, run_id, name, config, history, test, duration):
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config)
    info = {
        "id": run_id,
        "name": name,
        "status": "COMPLETED",
        "epochs_done": len(history),
        "epochs_planned": len(history),
        "duration_s": duration,
        "started": "2026-11-24T10:12:00+00:00",
        "started_ts": 0,
        "device": "CPU (2 cores)",
        "versions": {"keras": "3.15.1", "backend": "jax" if name == "linear-test" else "tensorflow"},
        "params": 67,
        "error": None,
        "data": {"train": 96, "validation": 24, "test": 30, "validation_is_test": False, "test_split": "builtin"},
    }
    (folder / "run.json").write_text(json.dumps(info))
    columns = list(history[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in history]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    best = min(history, key=lambda r: r["loss"])
    metrics = {
        "train": {"loss": history[-1]["loss"]},
        "validation": None,
        "test": test,
        "epochs": len(history),
        "stopped_early": False,
        "best_epoch": best,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    _write_run(
        root,
        IRIS_ID,
        "iris-test",
        IRIS_CONFIG,
        [
            {"epoch": 1, "loss": 1.0, "learning_rate": 0.05},
            {"epoch": 2, "loss": 0.5, "learning_rate": 0.05},
            {"epoch": 3, "loss": 0.25, "learning_rate": 0.05},
        ],
        {"loss": 0.3, "accuracy": 0.9},
        1.25,
    )
    _write_run(
        root,
        LINEAR_ID,
        "linear-test",
        LINEAR_CONFIG,
        [{"epoch": 1, "loss": 2.0, "learning_rate": 0.1}, {"epoch": 2, "loss": 1.5, "learning_rate": 0.1}],
        {"loss": 0.2, "accuracy": 0.95},
        2.5,
    )
    return root


def _output(*args):
    result = CliRunner().invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def test_runs_list_output(runs_root):
    code, text = _output("runs", "--runs-dir", str(runs_root))
    assert code == 0
    assert text.replace(str(runs_root), "RUNS") == RUNS_LIST


def test_runs_show_output(runs_root):
    code, text = _output("runs", "show", IRIS_ID, "--runs-dir", str(runs_root))
    assert code == 0
    assert text == RUNS_SHOW


def test_the_data_line_says_how_a_run_read_its_data():
    from dltool.cli.display.reports import data_line

    streamed = {
        "train": 800,
        "validation": 100,
        "test": 100,
        "test_split": "fraction 0.1 of the rows",
        "streamed": True,
    }
    assert data_line(streamed) == (
        "data: 800 train, 100 validation, 100 test (fraction 0.1 of the rows); streamed from disk each epoch"
    )
    assert data_line({**streamed, "validation": None, "cache": {"kind": "memory"}}).endswith(
        "800 train, no validation, 100 test (fraction 0.1 of the rows); streamed from disk each epoch; memory cache"
    )
    assert "validation: the test split" in data_line({**streamed, "validation_is_test": True})


def test_runs_compare_output(runs_root):
    code, text = _output("runs", "compare", IRIS_ID, LINEAR_ID, "--runs-dir", str(runs_root))
    assert code == 0
    assert text == RUNS_COMPARE


def test_config_error_output(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        IRIS_CONFIG.replace("  epochs: 3", "  epochs: 3\n  epoch: 4")
        + "model:\n  input_shape: [4]\n  layers: [{Dense: {units: 3}}]\n"
    )
    result = CliRunner().invoke(app, ["validate", str(config), "--schema-only"], env=ENV)
    assert result.exit_code == 2
    assert (
        result.output.replace(str(config), "bad.yaml")
        == "error: bad.yaml:12: train.epoch: unknown key 'epoch'; did you mean 'epochs'?\n"
    )


RUNS_LIST = """\
runs in RUNS
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┓
┃ id                               ┃ name        ┃ status    ┃ backend    ┃ epochs ┃ test metrics            ┃ duration ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━┩
│ 20261124-101200-iris-test-ab12   │ iris-test   │ COMPLETED │ tensorflow │ 3/3    │ loss 0.3  accuracy 0.9  │ 1.2s     │
│ 20261124-103000-linear-test-cd34 │ linear-test │ COMPLETED │ jax        │ 2/2    │ loss 0.2  accuracy 0.95 │ 2.5s     │
└──────────────────────────────────┴─────────────┴───────────┴────────────┴────────┴─────────────────────────┴──────────┘
"""

RUNS_SHOW = """\
20261124-101200-iris-test-ab12  COMPLETED  3/3 epochs  tensorflow on CPU (2 cores)  67 parameters
data: 96 train, 24 validation, 30 test (builtin); in memory
final metrics
┏━━━━━━━━━━┳━━━━━━━┳━━━━━━┓
┃ metric   ┃ train ┃ test ┃
┡━━━━━━━━━━╇━━━━━━━╇━━━━━━┩
│ loss     │  0.25 │  0.3 │
│ accuracy │     - │  0.9 │
└──────────┴───────┴──────┘
best epoch 3: loss=0.25
history (first → last epoch)
┏━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━┳━━━━━━┳━━━━━━┳━━━━━━━┓
┃ value         ┃ first ┃ last ┃  min ┃  max ┃ curve ┃
┡━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━╇━━━━━━╇━━━━━━╇━━━━━━━┩
│ loss          │     1 │ 0.25 │ 0.25 │    1 │ █▃▁   │
│ learning_rate │  0.05 │ 0.05 │ 0.05 │ 0.05 │ ▁▁▁   │
└───────────────┴───────┴──────┴──────┴──────┴───────┘
config
name: iris-test
seed: 0
data: {source: sklearn, name: iris}
train:
  optimizer: {name: adam, learning_rate: 0.05}
  loss: sparse_categorical_crossentropy
  epochs: 3
files  config.yaml (172 B)  history.csv (59 B)  metrics.json (187 B)  run.json (421 B)
"""

RUNS_COMPARE = """\
config differences
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ key                           ┃ 20261124-101200-iris-test-ab12 ┃ 20261124-103000-linear-test-cd34 ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ name                          │ iris-test                      │ linear-test                      │
│ train.optimizer.learning_rate │ 0.05                           │ 0.1                              │
│ train.epochs                  │ 3                              │ 2                                │
└───────────────────────────────┴────────────────────────────────┴──────────────────────────────────┘
test metrics (best in bold)
┏━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ metric     ┃ 20261124-101200-iris-test-ab12 ┃ 20261124-103000-linear-test-cd34 ┃
┡━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ loss       │                            0.3 │                              0.2 │
│ accuracy   │                            0.9 │                             0.95 │
│ status     │                      COMPLETED │                        COMPLETED │
│ best epoch │                              3 │                                2 │
│ duration   │                           1.2s │                             2.5s │
└────────────┴────────────────────────────────┴──────────────────────────────────┘
"""


def test_runs_show_names_the_data_streamed_and_its_cache(runs_root):
    info_file = runs_root / IRIS_ID / "run.json"
    info = json.loads(info_file.read_text())
    info["data"] = {
        "train": 24,
        "validation": 6,
        "test": 10,
        "validation_is_test": False,
        "test_split": "fraction 0.25 of each class (seed 5), streamed",
        "streamed": True,
        "cache": {"kind": "disk", "state": "reused", "folder": "/cache/0123456789abcdef"},
        "unreadable_files": 2,
    }
    info_file.write_text(json.dumps(info))
    code, text = _output("runs", "show", IRIS_ID, "--runs-dir", str(runs_root))
    assert code == 0
    assert text.splitlines()[1] == (
        "data: 24 train, 6 validation, 10 test (fraction 0.25 of each class (seed 5), streamed); "
        "streamed from disk each epoch; disk cache reused: /cache/0123456789abcdef; 2 unreadable file(s) left out"
    )


@pytest.mark.slow
def test_validate_prints_class_counts_per_split_and_warns_of_imbalance(tmp_path):
    path = tmp_path / "skewed.csv"
    rows = ["majority"] * 380 + ["minority"] * 12 + ["rare"] * 8
    path.write_text("x,y,label\n" + "".join(f"{i % 7},{i % 5},{label}\n" for i, label in enumerate(rows)))
    config = tmp_path / "skewed.yaml"
    config.write_text(
        f"name: skewed\ndata: {{source: csv, path: {path}, target: label, features: [x], test: 0.25, validation: 0.2}}\n"
        "model: {input_shape: [1], layers: [{Dense: {units: 3, activation: softmax}}]}\n"
        "train: {loss: sparse_categorical_crossentropy}\n"
    )
    from dltool.config import load_config
    from dltool.data import prepare_data

    counts = prepare_data(load_config(config)).class_counts()  # the splits validate counts, drawn with the seed
    code, text = _output("validate", str(config))
    assert code == 0
    small, large = counts["train"][2], counts["train"][0]
    assert (
        f"warning: the training split is imbalanced: class 'rare' has {small} sample(s), "
        f"{100 * small / large:.1f} % of the {large} of class 'majority'; a model can score well by rarely "
        "predicting it. Consider train.class_weight: balanced\n"
    ) in text
    table = "classes: samples per split (train / validation / test)\n" + "".join(
        f"  {name:<8}  {counts['train'][i]} / {counts['validation'][i]} / {counts['test'][i]}\n"
        for i, name in enumerate(["majority", "minority", "rare"])
    )
    assert table in text
    assert sum(map(sum, counts.values())) == 400
    # With class weights set, the counts stay and the suggestion goes.
    code, text = _output("validate", str(config), "--set", "train.class_weight=balanced")
    assert code == 0 and table in text and "imbalanced" not in text
    # A regression config has no classes to count.
    regression = ["--set", "train.loss=mse", "--set", "model.layers[0].Dense={units: 1}", "--set", "data.target=y"]
    code, text = _output("validate", str(config), *regression)
    assert code == 0 and "config, data and model are valid" in text and "classes:" not in text


@pytest.mark.slow
def test_validate_prints_the_training_counts_before_and_after_resampling(tmp_path):
    path = tmp_path / "skewed.csv"
    rows = ["majority"] * 380 + ["minority"] * 20
    path.write_text("x,label\n" + "".join(f"{i % 7},{label}\n" for i, label in enumerate(rows)))
    config = tmp_path / "skewed.yaml"
    config.write_text(
        f"name: skewed\ndata: {{source: csv, path: {path}, target: label, test: 0.25, validation: 0.2, "
        "resample: {oversample: minority}}\n"
        "model: {input_shape: [1], layers: [{Dense: {units: 2, activation: softmax}}]}\n"
        "train: {loss: sparse_categorical_crossentropy}\n"
    )
    from dltool.config import load_config
    from dltool.data import prepare_data

    data = prepare_data(load_config(config))
    before, counts = data.resampling.before, data.class_counts()
    assert counts["train"] == [before[0], before[0]]
    code, text = _output("validate", str(config))
    assert code == 0
    table = "classes: samples per split (train before resample / train resampled / validation / test)\n" + "".join(
        f"  {name:<8}  {before[i]} / {counts['train'][i]} / {counts['validation'][i]} / {counts['test'][i]}\n"
        for i, name in enumerate(["majority", "minority"])
    )
    assert table in text
    assert "imbalanced" not in text  # the resampled split is balanced
    # With class weights as well: a warning of the double correction.
    code, text = _output("validate", str(config), "--set", "train.class_weight={minority: 2}")
    assert code == 0 and "warning: data.resample and train.class_weight both correct the class balance" in text
