"""The command line as a user meets it: real subprocesses for the end-to-end path, CliRunner for the rest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from e2e_support import IRIS_CONFIG, REPO, run_cli
from typer.testing import CliRunner

from dltool.cli.app import app

runner = CliRunner()


@pytest.mark.subprocess
@pytest.mark.slow
def test_import_of_cli_does_not_import_tensorflow():
    code = "import sys, dltool.cli.app; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_refused_config_costs_no_numpy_import(tmp_path):
    """`dltool train BAD.yaml` answers in a fraction of a second (benchmarks: < 0.5 s): no numpy, no Keras."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndata: {source: sklearn, name: digits}\nmodel:\n  input_shape: [64]\n"
        "  layers:\n    - Dense: {unit: 10}\ntrain: {loss: sparse_categorical_crossentropy}\n"
    )
    code = (
        "import sys\nfrom dltool.cli import main\nsys.argv = ['dltool', 'train', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, sorted(m for m in ('numpy', 'tensorflow', 'keras', 'jax') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "2 []", result.stdout + result.stderr


def _every_command(group=None, prefix=()):
    """Every command and subcommand of the CLI, as argument lists (['runs', 'show'], ...)."""
    import typer

    group = group or typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():
        found.append([*prefix, name])
        if hasattr(command, "commands"):
            found += _every_command(command, (*prefix, name))
    return found


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Example: dltool {' '.join(command)}" in result.output.replace("\n ", " ")
    # Flags take no value and lists say what they hold: no Python types such as <bool> or <list[Path]>.
    assert "<bool>" not in result.output and "<list[" not in result.output and "<str>" not in result.output


def test_the_command_list_is_complete():
    assert {" ".join(c) for c in _every_command()} >= {
        "train",
        "evaluate",
        "predict",
        "validate",
        "schema",
        "plot",
        "init",
        "runs",
        "runs show",
        "runs compare",
        "runs rm",
    }


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("dltool 0.")


def test_bad_config_exits_2_with_one_line_and_no_run(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(IRIS_CONFIG.replace("epochs: 5", "epochs: five"))
    result = runner.invoke(app, ["train", str(bad), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}:14: train.epochs: expected an integer >= 1, received 'five'"
    assert not (tmp_path / "runs").exists()


def test_missing_config_file_exits_2(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_validate_schema_only_prints_resolved_config(tmp_path):
    config = tmp_path / "iris.yaml"
    config.write_text(IRIS_CONFIG)
    result = runner.invoke(app, ["validate", str(config), "--schema-only", "--set", "train.epochs=7"])
    assert result.exit_code == 0, result.output
    assert "epochs: 7" in result.output and "steps_per_execution: 32" in result.output
    assert "config is valid" in result.output


def test_schema_is_json_with_the_top_level_keys():
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert set(schema["properties"]) == {"name", "seed", "backend", "data", "model", "train", "tracking", "expect"}


def test_runs_lists_runs_as_table_and_json(iris_run):
    root = iris_run.path.parent
    table = runner.invoke(app, ["runs", "--runs-dir", str(root)], env={"COLUMNS": "250"})
    assert table.exit_code == 0
    assert iris_run.id in table.output and "COMPLETED" in table.output and "5/5" in table.output
    listed = json.loads(runner.invoke(app, ["runs", "--runs-dir", str(root), "--json"]).output)
    assert [r["id"] for r in listed] == [iris_run.id]
    assert listed[0]["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "command", [["evaluate"], ["predict", "--runtime", "keras"], ["export", "--format", "onnx"], ["serve"]]
)
def test_unknown_run_exits_2_before_keras_is_imported(tmp_path, monkeypatch, command):
    """A mistyped run ref costs no TensorFlow import (seconds): the run is resolved first."""
    import dltool.backend

    def no_keras(*args, **kwargs):
        raise AssertionError("Keras imported before the run was resolved")

    monkeypatch.setattr(dltool.backend, "import_keras", no_keras)
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")
    args = [command[0], "nosuchrun", *([str(rows)] if command[0] == "predict" else []), *command[1:]]
    result = runner.invoke(app, [*args, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "no run matches 'nosuchrun'" in result.output


@pytest.mark.subprocess
@pytest.mark.slow
def test_train_evaluate_predict_end_to_end_through_the_real_cli(tmp_path):
    """The README's path: train the smoke config, evaluate it, predict on a CSV, list runs."""
    runs = tmp_path / "runs"
    trained = run_cli("train", str(REPO / "configs" / "smoke.yaml"), "--runs-dir", str(runs), "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    assert "epoch 10/10" in trained.stdout and "COMPLETED" in trained.stdout
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "COMPLETED"

    evaluated = run_cli("evaluate", "latest", "--runs-dir", str(runs), "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["samples"] == 30
    assert len(report["classification"]["confusion_matrix"]) == 3
    assert (run_dir / "evaluation.json").is_file()

    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"])
        writer.writerows([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    predicted = run_cli(
        "predict", run_dir.name[:15], str(rows), "-o", str(tmp_path / "out.csv"), "--runs-dir", str(runs), cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr
    out = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [r["row"] for r in out] == ["0", "1"]
    assert set(out[0]) == {"input", "row", "label", "prob_setosa", "prob_versicolor", "prob_virginica"}

    bad = run_cli("predict", "latest", str(tmp_path / "missing.csv"), "--runs-dir", str(runs), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'missing.csv'}: file not found"


@pytest.mark.subprocess
@pytest.mark.slow
def test_failed_run_exits_1_and_is_listed_failed(tmp_path):
    config = tmp_path / "nan.yaml"
    config.write_text(IRIS_CONFIG)
    result = run_cli(
        "train",
        str(config),
        "--set",
        "train.optimizer={name: sgd, learning_rate: 1e12}",
        "--runs-dir",
        str(tmp_path / "runs"),
        "-q",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "loss became" in result.stderr and "Traceback" not in result.stderr
    listed = json.loads(run_cli("runs", "--runs-dir", str(tmp_path / "runs"), "--json", cwd=tmp_path).stdout)
    assert listed[0]["status"] == "FAILED"


@pytest.mark.slow
def test_validate_loads_data_and_prints_the_model_summary(tmp_path):
    config = tmp_path / "iris.yaml"
    config.write_text(IRIS_CONFIG)
    result = runner.invoke(app, ["validate", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Total params: 67" in result.output
    assert "data: 96 train, validation 24, 30 test" in result.output
    assert "config, data and model are valid" in result.output
    broken = runner.invoke(app, ["validate", str(config), "--set", "model.input_shape=[5]"])
    assert broken.exit_code == 2 and "model.input_shape" in broken.output and "[4]" in broken.output
