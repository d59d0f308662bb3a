"""Issue-5 workflow commands: runs show/compare/rm and filters, plot, init, schema, run plots."""

from __future__ import annotations

import json
import shutil

import pytest
from e2e_support import REPO
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.runs_report import config_differences, parse_since, sparkline
from dltool.config import json_schema, load_config
from dltool.templates import SCHEMA_PATH, template_names

runner = CliRunner()
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def two_runs(tmp_path, iris_run, linear_run):
    """Copies of the session's runs in one runs folder (so rm can delete them)."""
    root = tmp_path / "runs"
    root.mkdir()
    for run in (iris_run, linear_run):
        shutil.copytree(run.path, root / run.id)
    return root, iris_run.id, linear_run.id


@pytest.mark.slow
def test_classifier_run_has_curves_and_confusion_matrix_pngs(iris_run):
    width, height = _png_size(iris_run.file("curves.png"))
    assert width > 900 and 300 < height < 600  # two panels side by side: loss, accuracy
    width, height = _png_size(iris_run.file("confusion_matrix.png"))
    assert 300 < width < 900 and 300 < height < 900
    assert not iris_run.file("predictions.png").exists()


@pytest.mark.slow
def test_regression_run_has_predicted_vs_true_png(linear_run):
    assert _png_size(linear_run.file("predictions.png"))[0] > 300
    assert (linear_run.path / "tensorboard").is_dir()


@pytest.mark.slow
def test_runs_show_prints_metrics_history_chart_config_and_files(two_runs):
    root, iris_id, _ = two_runs
    result = runner.invoke(app, ["runs", "show", iris_id[:17], "--runs-dir", str(root)], env=WIDE)
    assert result.exit_code == 0, result.output
    for text in (
        "COMPLETED",
        "final metrics",
        "history (first → last epoch)",
        "val_accuracy",
        "name: iris-test",
        "model.keras",
    ):
        assert text in result.output
    shown = json.loads(runner.invoke(app, ["runs", "show", iris_id, "--runs-dir", str(root), "--json"]).output)
    assert len(shown["history"]) == 5 and shown["config"]["name"] == "iris-test"


@pytest.mark.slow
def test_runs_compare_shows_config_differences_and_metrics(two_runs):
    root, iris_id, linear_id = two_runs
    result = runner.invoke(app, ["runs", "compare", iris_id, linear_id, "--runs-dir", str(root), "--json"])
    compared = json.loads(result.output)
    assert compared["config_differences"]["name"] == ["iris-test", "linear-test"]
    assert compared["test"]["loss"][0] is not None
    table = runner.invoke(app, ["runs", "compare", iris_id, linear_id, "--runs-dir", str(root)], env=WIDE)
    assert "config differences" in table.output and "data.source" in table.output


@pytest.mark.slow
def test_runs_filters_and_sort(two_runs):
    root, iris_id, linear_id = two_runs

    def ids(*args):
        return [
            r["id"] for r in json.loads(runner.invoke(app, ["runs", "--runs-dir", str(root), "--json", *args]).output)
        ]

    assert ids("--name", "iris") == [iris_id]
    assert ids("--status", "FAILED") == []
    assert set(ids("--since", "1h")) == {iris_id, linear_id}
    assert ids("--sort", "accuracy") == [iris_id]
    bad = runner.invoke(app, ["runs", "--runs-dir", str(root), "--sort", "acuracy"])
    assert bad.exit_code == 2 and "no run has a test metric 'acuracy'" in bad.output


@pytest.mark.slow
def test_runs_rm_asks_unless_yes(two_runs):
    root, iris_id, linear_id = two_runs
    refused = runner.invoke(app, ["runs", "rm", iris_id, "--runs-dir", str(root)], input="n\n")
    assert refused.exit_code != 0 and (root / iris_id).exists()
    removed = runner.invoke(app, ["runs", "rm", iris_id, "--runs-dir", str(root), "--yes"])
    assert removed.exit_code == 0 and "deleted 1 run(s)" in removed.output
    assert not (root / iris_id).exists() and (root / linear_id).exists()


@pytest.mark.slow
def test_plot_overlays_runs_into_a_png(two_runs, tmp_path):
    root, iris_id, linear_id = two_runs
    target = tmp_path / "both.png"
    result = runner.invoke(app, ["plot", iris_id, linear_id, "-o", str(target), "--runs-dir", str(root)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "loss" in result.output
    assert _png_size(target)[0] > 300
    pdf = tmp_path / "both.pdf"
    written = runner.invoke(app, ["plot", iris_id, linear_id, "-o", str(pdf), "--runs-dir", str(root)])
    assert written.exit_code == 0 and pdf.read_bytes().startswith(b"%PDF"), written.output
    none = runner.invoke(
        app, ["plot", iris_id, linear_id, "-o", str(target), "-m", "accuracy", "--runs-dir", str(root)]
    )
    assert none.exit_code == 2 and "share no metric named accuracy" in none.output


@pytest.mark.parametrize("template", template_names())
def test_init_writes_a_template_that_validates(tmp_path, template):
    target = tmp_path / f"{template}.yaml"
    result = runner.invoke(app, ["init", template, str(target)])
    assert result.exit_code == 0, result.output
    config = load_config(target)
    assert config.name == template
    assert target.read_text().startswith(f"# yaml-language-server: $schema={SCHEMA_PATH.resolve().as_uri()}")
    again = runner.invoke(app, ["init", template, str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_init_unknown_template_suggests_one(tmp_path):
    result = runner.invoke(app, ["init", "mnist-mpl", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "did you mean 'mnist-mlp'?" in result.output


def test_shipped_schema_is_up_to_date_and_configs_point_at_it():
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema(), (
        "regenerate: dltool schema > dltool/resources/schema.json"
    )
    for config in (REPO / "configs").glob("*.yaml"):
        assert config.read_text().splitlines()[0] == "# yaml-language-server: $schema=../dltool/resources/schema.json"


def test_config_differences_and_sparkline_and_since():
    diff = config_differences([{"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": [1]}])
    assert diff == {"b.c": [2, 3], "d": [None, [1]]}
    assert sparkline([1.0, 2.0, 3.0]) == "▁▄█"
    assert parse_since("2026-11-24").year == 2026


def test_init_help_lists_every_template():
    result = runner.invoke(app, ["init", "--help"], env={"COLUMNS": "300"})
    assert all(name in result.output for name in template_names()), result.output


def test_init_with_a_file_name_writes_the_default_template_there_and_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "my.yaml"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "my.yaml").read_text()
    assert "name: mnist-mlp" in text
    assert "dltool validate my.yaml" in text and "mnist_mlp.yaml" not in text
    named = runner.invoke(app, ["init", "csv-classifier", "flowers.yaml"])
    assert named.exit_code == 0
    assert "dltool validate flowers.yaml" in (tmp_path / "flowers.yaml").read_text()


def test_config_differences_compare_a_left_out_optimizer_argument_as_its_default():
    tuned = {"train": {"optimizer": {"name": "adam", "learning_rate": 0.01}}}
    default = {"train": {"optimizer": {"name": "adam"}}}
    assert config_differences([tuned, default]) == {"train.optimizer.learning_rate": [0.01, 0.001]}


def test_plot_legend_names_what_differs_between_the_runs(tmp_path):
    from dltool.commands.runs_report import run_labels
    from dltool.runs import Run

    runs = []
    for run_id, rate in (("20261124-000000-a-aaaa", 0.01), ("20261124-000001-a-bbbb", None)):
        folder = tmp_path / run_id
        folder.mkdir()
        optimizer = {"name": "adam", **({"learning_rate": rate} if rate else {})}
        (folder / "config.yaml").write_text(json.dumps({"name": "a", "train": {"optimizer": optimizer, "epochs": 3}}))
        runs.append(Run(folder))
    labels = run_labels(runs)
    assert labels == {
        "20261124-000000-a-aaaa": "20261124-000000-a-aaaa (learning_rate=0.01)",
        "20261124-000001-a-bbbb": "20261124-000001-a-bbbb (learning_rate=0.001)",
    }
