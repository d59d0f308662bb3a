"""Reports for CI servers: JUnit XML that CI schemas accept, GitHub annotations and step summaries."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.errors import ConfigError
from dltool.reports import (
    JUnitCase,
    append_step_summary,
    config_error_annotation,
    github_annotation,
    junit_xml,
    markdown_table,
    run_case,
    sweep_cases,
)

runner = CliRunner()
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
DECIMAL = re.compile(r"^\d+(\.\d+)?$")
JUNIT_10 = xmlschema.XMLSchema(str(Path(__file__).with_name("data") / "junit-10.xsd"))  # Jenkins' schema


def check_junit(text: str) -> ET.Element:
    """Validate against Jenkins' junit-10.xsd and check what the Ant JUnit schema (windyroad JUnit.xsd, the
    strictest CI servers use) also requires; return the root."""
    JUNIT_10.validate(text)
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites" and root.attrib == {}  # the Ant schema allows no attributes here
    for index, suite in enumerate(root):
        assert suite.tag == "testsuite"
        for required in ("package", "id", "name", "timestamp", "hostname", "tests", "failures", "errors", "time"):
            assert suite.get(required), f"testsuite lacks {required}"
        assert suite.get("id") == str(index) and TIMESTAMP.match(suite.get("timestamp"))
        assert DECIMAL.match(suite.get("time"))
        tags = [child.tag for child in suite]
        assert tags[0] == "properties" and tags[-2:] == ["system-out", "system-err"]
        assert set(tags[1:-2]) <= {"testcase"}
        for prop in suite.find("properties"):
            assert prop.tag == "property" and prop.get("name") and prop.get("value") is not None
        cases = suite.findall("testcase")
        failures = skipped = 0
        for case in cases:
            assert case.get("name") and case.get("classname") and DECIMAL.match(case.get("time"))
            children = list(case)
            assert len(children) <= 1 and all(c.tag in ("failure", "skipped") for c in children)
            for child in children:
                if child.tag == "failure":
                    assert child.get("type") and child.get("message") is not None
                    failures += 1
                else:
                    skipped += 1
        assert int(suite.get("tests")) == len(cases) and int(suite.get("failures")) == failures
        assert int(suite.get("skipped", "0")) == skipped and suite.get("errors") == "0"
    return root


def test_junit_xml_holds_passed_failed_and_skipped_cases_with_properties():
    text = junit_xml(
        [
            JUnitCase("configs/a.yaml", "dltool.smoke", 1.5, properties={"test.accuracy": 0.97, "name": "a"}),
            JUnitCase(
                "configs/b.yaml", "dltool.smoke", 0.2, failure="train: loss became NaN at epoch 1", failure_type="train"
            ),
            JUnitCase("configs/c.yaml", "dltool.smoke", 0.0, skipped="keras dataset 'mnist' needs a download"),
        ],
        package="dltool.smoke",
    )
    root = check_junit(text)
    first, second, third = root
    assert {p.get("name"): p.get("value") for p in first.find("properties")} == {"test.accuracy": "0.97", "name": "a"}
    assert second.find("testcase/failure").get("message") == "train: loss became NaN at epoch 1"
    assert second.find("testcase/failure").text == "train: loss became NaN at epoch 1"
    assert third.find("testcase/skipped").get("message") == "keras dataset 'mnist' needs a download"


def test_junit_xml_replaces_characters_xml_cannot_hold():
    root = check_junit(junit_xml([JUnitCase("x", "dltool.train", failure="bad \x1b[31mcolour\x00 & <tags>")]))
    assert root.find("testsuite/testcase/failure").get("message") == "bad ?[31mcolour? & <tags>"


@pytest.mark.parametrize(
    "suite, why",
    [
        ('<testsuite name="a" failures="0" errors="0"/>', "missing required attribute 'tests'"),
        ('<testsuite name="a" tests="1" failures="0" errors="0" time="0.1234"/>', "attribute time='0.1234'"),
        (
            '<testsuite name="a" tests="1" failures="0" errors="0"><testcase/></testsuite>',
            "missing required attribute 'name'",
        ),
        (
            '<testsuite name="a" tests="1" failures="0" errors="0"><testcase name="t"><note/></testcase></testsuite>',
            "Unexpected child with tag 'note'",
        ),
    ],
)
def test_the_junit_schema_refuses_what_ci_servers_refuse(suite, why):
    with pytest.raises(xmlschema.XMLSchemaValidationError) as refused:
        check_junit(f"<testsuites>{suite}</testsuites>")
    assert why in refused.value.reason


def test_the_docs_describe_the_junit_file_as_it_is():
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "ci.md").read_text().split())
    assert (
        "a `<testsuites>` file with one `<testsuite>` per run, config or trial, each holding one `<testcase>`" in page
    )
    root = check_junit(junit_xml([JUnitCase("configs/a.yaml", "dltool.smoke"), JUnitCase("b", "dltool.smoke")]))
    assert [suite.tag for suite in root] == ["testsuite", "testsuite"]
    assert [len(suite.findall("testcase")) for suite in root] == [1, 1]


def test_sweep_trials_are_valid_junit_failed_ones_failing_and_pruned_ones_skipped():
    rows = [
        {"trial": 1, "status": "FAILED", "run": None, "objective": None, "params": {"lr": 0.1}, "reason": "NaN loss"},
        {"trial": 0, "status": "COMPLETED", "run": "r0", "objective": 0.93, "params": {"lr": 0.01, "units": 64}},
        {"trial": 2, "status": "PRUNED", "run": "r2", "objective": 0.5, "params": {"lr": 1.0}, "reason": "epoch 2"},
    ]
    summary = {"id": "20260101-000000-lr-abcd", "objective": {"metric": "validation.accuracy"}, "rows": rows}
    root = check_junit(junit_xml(sweep_cases(summary), package="dltool.sweep"))
    assert [suite.get("name") for suite in root] == ["trial 0", "trial 1", "trial 2"]
    first = {p.get("name"): p.get("value") for p in root[0].find("properties")}
    assert first == {
        "status": "COMPLETED",
        "run": "r0",
        "validation.accuracy": "0.93",
        "param lr": "0.01",
        "param units": "64",
    }
    assert root[1].find("testcase/failure").get("message") == "NaN loss"
    assert root[2].find("testcase/skipped").get("message") == "epoch 2"


def test_a_trained_run_is_a_valid_junit_testsuite_with_its_metrics(iris_run):
    root = check_junit(junit_xml([run_case(iris_run, "iris.yaml")]))
    properties = {p.get("name"): p.get("value") for p in root.find("testsuite/properties")}
    assert properties["status"] == "COMPLETED" and "test.accuracy" in properties
    assert root.find("testsuite/testcase").get("classname") == "dltool.train" and not len(
        root.find("testsuite/testcase")
    )


def test_github_annotations_escape_what_the_workflow_command_format_reserves():
    assert github_annotation("unknown key 'unit'", "configs/bad.yaml", 14) == (
        "::error file=configs/bad.yaml,line=14,title=dltool::unknown key 'unit'"
    )
    assert (
        github_annotation("50% done\nnext", "a,b:c.yaml")
        == "::error file=a%2Cb%3Ac.yaml,title=dltool::50%25 done%0Anext"
    )


def test_a_config_error_is_annotated_on_its_file_and_line_and_a_set_error_without_a_file():
    located = ConfigError(
        "unknown argument 'unit' for Dense; did you mean 'units'?",
        source="configs/bad.yaml",
        path="model.layers[1].Dense.unit",
        line=14,
    )
    assert config_error_annotation(located) == (
        "::error file=configs/bad.yaml,line=14,title=dltool::model.layers[1].Dense.unit: unknown argument 'unit' "
        "for Dense; did you mean 'units'?"
    )
    override = ConfigError("expected an integer >= 1", source="--set train.epochs=five", path="train.epochs")
    assert (
        config_error_annotation(override)
        == "::error title=dltool::--set train.epochs=five: train.epochs: expected an integer >= 1"
    )


def test_validate_prints_an_annotation_in_github_actions_only(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndata: {source: sklearn, name: iris}\nmodel:\n  input_shape: [4]\n  layers:\n"
        "    - Dense: {unit: 3}\ntrain: {loss: mse}\n"
    )
    inside = runner.invoke(app, ["validate", str(bad), "--schema-only"], env={"GITHUB_ACTIONS": "true"})
    assert inside.exit_code == 2
    assert (
        f"::error file={bad.as_posix()},line=6,title=dltool::model.layers[0].Dense.unit: unknown argument 'unit'"
        in inside.output
    )
    outside = runner.invoke(app, ["validate", str(bad), "--schema-only"], env={"GITHUB_ACTIONS": ""})
    assert outside.exit_code == 2 and "::error" not in outside.output


def test_markdown_tables_and_the_step_summary(tmp_path, monkeypatch):
    table = markdown_table(["config", "status"], [["a|b.yaml", "passed"], ["c.yaml", None]])
    assert table == "| config | status |\n|---|---|\n| a\\|b.yaml | passed |\n| c.yaml |  |\n"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary(table) is False
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert append_step_summary(table) is True
    assert summary.read_text() == "earlier step\n" + table + "\n"


def test_train_writes_a_junit_failure_and_a_summary_for_a_config_it_refuses(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndata: {source: sklearn, name: iris}\nmodel: {input_shape: [4], layers: [Dense]}\n"
        "train: {loss: mse, epochs: five}\n"
    )
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = runner.invoke(app, ["train", str(bad), "--junit", str(tmp_path / "train.xml")])
    assert result.exit_code == 2
    failure = check_junit((tmp_path / "train.xml").read_text()).find("testsuite/testcase/failure")
    assert failure.get("type") == "ConfigError"
    assert failure.get("message") == f"{bad}:4: train.epochs: expected an integer >= 1, received 'five'"
    assert summary.read_text().startswith(f"### dltool train {bad}: failed\n")


def test_smoke_table_title_counts_one_config_in_the_singular():
    from rich.console import Console

    from dltool.cli.display.reports import smoke_table

    row = {"config": "a.yaml", "status": "passed", "seconds": 1.0, "stage": "", "message": ""}
    report = {"configs": [row], "passed": 1, "failed": 0, "unmet": 0, "skipped": 0, "seconds": 1.0}
    console = Console(record=True, width=100)
    console.print(smoke_table(report))
    assert "smoke: 1 config, 1 passed in 1.0s" in console.export_text()
    console = Console(record=True, width=100)
    console.print(smoke_table({**report, "configs": [row, {**row, "config": "b.yaml"}], "passed": 2}))
    assert "smoke: 2 configs, 2 passed in 1.0s" in console.export_text()
