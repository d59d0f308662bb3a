"""Reports for CI servers: JUnit XML, GitHub Actions annotations and step summaries. No Keras; nothing printed.

The JUnit XML keeps to what both schemas CI servers validate against accept:
Apache Ant's (windyroad ``JUnit.xsd``, the stricter one: each testsuite has
package, id, name, timestamp, hostname, tests, failures, errors and time, then
properties, its testcases, system-out and system-err, in that order; a testcase
has name, classname and time, and at most one failure or skipped) and
Jenkins' ``junit-10.xsd``. Each run or config is a testsuite of one testcase,
so its metrics can be the suite's properties (neither schema allows properties
on a testcase).
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import ConfigError, DltoolError
from .fileio import atomic_write_text

_XML_ILLEGAL = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not allowed in XML 1.0
GITHUB_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@dataclass
class JUnitCase:
    """One testcase: a run or a config, failed (message, type, details), skipped (reason) or passed."""

    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    failure_type: str = "failure"
    details: str = ""
    skipped: str | None = None
    properties: dict = field(default_factory=dict)


def _text(value) -> str:
    return _XML_ILLEGAL.sub("?", str(value))


def _seconds(value: float) -> str:
    return f"{max(0.0, float(value)):.3f}"


def junit_xml(cases: list[JUnitCase], package: str = "dltool") -> str:
    """The cases as a JUnit XML document: <testsuites>, one <testsuite> of one <testcase> each."""
    root = ET.Element("testsuites")
    timestamp = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    host = socket.gethostname() or "localhost"
    for index, case in enumerate(cases):
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "package": package,
                "id": str(index),
                "name": _text(case.name) or "unnamed",
                "timestamp": timestamp,
                "hostname": host,
                "tests": "1",
                "failures": str(int(case.failure is not None)),
                "errors": "0",
                "skipped": str(int(case.skipped is not None and case.failure is None)),
                "time": _seconds(case.seconds),
            },
        )
        properties = ET.SubElement(suite, "properties")
        for name, value in case.properties.items():
            ET.SubElement(properties, "property", {"name": _text(name), "value": _text(value)})
        testcase = ET.SubElement(
            suite,
            "testcase",
            {"name": _text(case.name) or "unnamed", "classname": _text(case.classname), "time": _seconds(case.seconds)},
        )
        if case.failure is not None:
            failure = ET.SubElement(
                testcase, "failure", {"message": _text(case.failure), "type": _text(case.failure_type)}
            )
            failure.text = _text(case.details or case.failure)
        elif case.skipped is not None:
            ET.SubElement(testcase, "skipped", {"message": _text(case.skipped)})
        ET.SubElement(suite, "system-out")
        ET.SubElement(suite, "system-err")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, cases: list[JUnitCase], package: str = "dltool") -> None:
    """Write :func:`junit_xml` to ``path`` atomically."""
    atomic_write_text(Path(path), junit_xml(cases, package))


def flat_metrics(metrics: dict | None) -> dict:
    """metrics.json's final figures as {"train.loss": ..., "test.accuracy": ...}."""
    metrics = metrics or {}
    return {
        f"{split}.{name}": value
        for split in ("train", "validation", "test")
        for name, value in (metrics.get(split) or {}).items()
    }


def run_case(run, name: str, classname: str = "dltool.train") -> JUnitCase:
    """A finished run as a testcase, its final metrics as properties: failed unless COMPLETED with every
    expectation met."""
    from .config.expectations import describe_expectation

    info = run.info
    metrics = run.read_json("metrics.json") if run.file("metrics.json").is_file() else {}
    checked = info.get("expectations") or []
    properties = {
        "run": run.id,
        "status": info.get("status"),
        **flat_metrics(metrics),
        **{f"expect {e['key']}": describe_expectation(e) for e in checked},
    }
    case = JUnitCase(name=name, classname=classname, seconds=info.get("duration_s") or 0.0, properties=properties)
    unmet = [describe_expectation(e) for e in checked if not e["met"]]
    if info.get("status") != "COMPLETED":
        case.failure, case.failure_type = info.get("error") or f"run {run.id} is {info.get('status')}", "TrainingError"
    elif unmet:
        case.failure, case.failure_type = "expectation not met: " + "; ".join(unmet), "expectation"
    return case


def error_case(name: str, classname: str, error: DltoolError, seconds: float = 0.0) -> JUnitCase:
    """A command that stopped with ``error`` before or while training, as a failed testcase."""
    return JUnitCase(
        name=name, classname=classname, seconds=seconds, failure=str(error), failure_type=type(error).__name__
    )


def sweep_cases(summary: dict) -> list[JUnitCase]:
    """A sweep's trials as testcases (from `sweep show`'s summary): FAILED trials fail with their reason, PRUNED ones
    are skipped, and the objective, parameters and run are properties."""
    metric, cases = summary["objective"]["metric"], []
    for row in sorted(summary["rows"], key=lambda r: r["trial"]):
        properties = {"status": row["status"], "run": row.get("run") or "", metric: row.get("objective")}
        properties.update({f"param {k}": v for k, v in row["params"].items()})
        case = JUnitCase(name=f"trial {row['trial']}", classname=f"dltool.sweep.{summary['id']}", properties=properties)
        if row["status"] == "FAILED":
            case.failure, case.failure_type = row.get("reason") or "failed", "TrialFailed"
        elif row["status"] == "PRUNED":
            case.skipped = row.get("reason") or "pruned"
        elif row["status"] != "COMPLETED":
            case.skipped = f"not finished ({row['status']})"
        cases.append(case)
    return cases


# --------------------------------------------------------------------------- GitHub Actions
def in_github_actions() -> bool:
    """Whether this runs as a step of a GitHub Actions workflow."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _workspace_relative(file: str) -> str:
    """A file as GitHub places annotations: relative to the checkout ($GITHUB_WORKSPACE) where it lies inside it."""
    workspace = os.environ.get("GITHUB_WORKSPACE")
    path = Path(file)
    if workspace and path.is_absolute():
        try:
            return path.relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            return file
    return path.as_posix()


def github_annotation(
    message: str, file: str | None = None, line: int | None = None, title: str = "dltool", level: str = "error"
) -> str:
    """A workflow command (``::error file=F,line=L,title=T::message``) that GitHub shows on that line of the diff."""
    fields = []
    if file:
        fields.append(f"file={_escape_property(_workspace_relative(file))}")
        if line:
            fields.append(f"line={int(line)}")
    fields.append(f"title={_escape_property(title)}")
    return f"::{level} {','.join(fields)}::{_escape_data(message)}"


def is_file_source(source: str | None) -> bool:
    """Whether an error's source is a file (not an option such as ``--set k=v`` or ``--expect ...``)."""
    return bool(source) and not source.startswith("--")


def config_error_annotation(error: ConfigError) -> str:
    """A config error as an annotation on its file and line (a ``--set`` or ``--expect`` error has no file)."""
    from_file = is_file_source(error.source)
    message = (f"{error.path}: " if error.path else "") + error.detail if from_file else str(error)
    return github_annotation(message, error.source if from_file else None, error.line if from_file else None)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def cell(value) -> str:
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]) + "\n"


def append_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to the file $GITHUB_STEP_SUMMARY names (the job's summary page); False when unset."""
    target = os.environ.get(GITHUB_SUMMARY_ENV)
    if not target:
        return False
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(markdown.rstrip("\n") + "\n\n")
    return True
