"""Metric expectations: `expect:` in a config and `train --expect`, checked before training and after it."""

from __future__ import annotations

import json

import pytest
from e2e_support import IRIS_CONFIG, LINEAR_CONFIG
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.config import check_expectations, config_from_text, with_expectations
from dltool.config.expectations import describe_expectation, parse_condition
from dltool.errors import ConfigError

runner = CliRunner()
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}


@pytest.mark.parametrize(
    "text, parsed",
    [
        (">= 0.95", (">=", 0.95)),
        ("<=0.2", ("<=", 0.2)),
        (" < 1e-3 ", ("<", 0.001)),
        ("> -2", (">", -2.0)),
        ("== 10", ("==", 10.0)),
    ],
)
def test_conditions_are_an_operator_and_a_number(text, parsed):
    assert parse_condition(text) == parsed


def test_expectations_in_a_config_validate_with_their_line():
    config = config_from_text(
        IRIS_CONFIG + 'expect: {test.accuracy: ">= 0.9", validation.loss: "<= 0.5", epochs: "== 5"}\n'
    )
    assert config.expect == {"test.accuracy": ">= 0.9", "validation.loss": "<= 0.5", "epochs": "== 5"}
    text = IRIS_CONFIG + 'expect:\n  test.accuracy: ">= 0.9"\n  test.acuracy: ">= 0.9"\n'
    with pytest.raises(ConfigError) as caught:
        config_from_text(text, source="iris.yaml")
    line = text.splitlines().index('  test.acuracy: ">= 0.9"') + 1
    assert str(caught.value) == (
        f"iris.yaml:{line}: expect.test.acuracy: unknown metric 'test.acuracy' "
        "(metrics.json will have 7 entries); did you mean 'test.accuracy'?"
    )


def test_a_condition_that_is_not_a_comparison_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"expect.test.loss: expected a comparison such as '>= 0.95' .* received "
        r"'at most 0.2'",
    ):
        config_from_text(IRIS_CONFIG + 'expect: {test.loss: "at most 0.2"}\n', source="iris.yaml")


def test_a_validation_expectation_needs_a_validation_split():
    with pytest.raises(ConfigError, match="this config has no validation split"):
        config_from_text(LINEAR_CONFIG + 'expect: {validation.loss: "<= 1"}\n')


def test_expect_options_add_to_the_config_and_name_themselves_in_errors():
    config = with_expectations(config_from_text(IRIS_CONFIG), ["test.accuracy>=0.9", "train.loss < 1"])
    assert config.expect == {"test.accuracy": ">=0.9", "train.loss": "< 1"}
    with pytest.raises(ConfigError) as caught:
        with_expectations(config_from_text(IRIS_CONFIG), ["test.acc>=0.9"])
    assert str(caught.value).startswith("--expect test.acc>=0.9: unknown metric 'test.acc'")
    with pytest.raises(ConfigError, match="expected KEY OPERATOR NUMBER such as test.accuracy>=0.95, received 'x=1'"):
        with_expectations(config_from_text(IRIS_CONFIG), ["x=1"])


def test_expectations_are_checked_against_metrics_json():
    metrics = {"test": {"accuracy": 0.93, "loss": 0.4}, "validation": None, "epochs": 5}
    checked = check_expectations({"test.accuracy": ">= 0.95", "test.loss": "<= 0.5", "epochs": "== 5"}, metrics)
    assert [c["met"] for c in checked] == [False, True, True]
    assert describe_expectation(checked[0]) == "test.accuracy = 0.93, expected >= 0.95: NOT met"
    missing = check_expectations({"validation.loss": "<= 1"}, metrics)[0]
    assert missing["value"] is None and not missing["met"]


@pytest.mark.slow
def test_an_unmet_expectation_completes_the_run_exits_3_and_shows_in_runs(tmp_path):
    config = tmp_path / "iris.yaml"
    config.write_text(IRIS_CONFIG + 'expect: {test.loss: "<= 100"}\n')
    root = str(tmp_path / "runs")
    result = runner.invoke(
        app, ["train", str(config), "--expect", "test.accuracy>=1.5", "-q", "--runs-dir", root], env=WIDE
    )
    assert result.exit_code == 3, result.output
    assert "expect test.accuracy = " in result.output and "expected >= 1.5: NOT met" in result.output
    assert "expect test.loss = " in result.output and "expected <= 100: met" in result.output
    shown = json.loads(runner.invoke(app, ["runs", "show", "latest", "--json", "--runs-dir", root]).output)
    assert shown["status"] == "COMPLETED" and shown["expectations_met"] is False
    assert [(e["key"], e["met"]) for e in shown["expectations"]] == [("test.loss", True), ("test.accuracy", False)]
    listed = runner.invoke(app, ["runs", "--runs-dir", root], env=WIDE).output
    assert "expect" in listed and "1 of 2 unmet" in listed
    met = runner.invoke(app, ["train", str(config), "-q", "--runs-dir", root], env=WIDE)
    assert met.exit_code == 0, met.output
