"""The CI recipe: `dltool init ci` writes a valid workflow naming real commands; the README shows the same."""

from __future__ import annotations

import re
import shlex

import typer
import yaml
from e2e_support import REPO
from typer.testing import CliRunner

from dltool import installation
from dltool.cli.app import app
from dltool.installation import from_direct_url
from dltool.templates import ci_workflow_text

runner = CliRunner()
README_INSTALL = "keras-dltool @ git+https://github.com/OWNER/dltool@COMMIT"  # what the README's workflow installs


def _check_dltool_command(line: str) -> None:
    """`dltool SUBCOMMAND --option ...` names a subcommand and options the CLI has."""
    words = shlex.split(line)
    assert words[0] == "dltool"
    command = typer.main.get_command(app).commands.get(words[1])
    assert command is not None, f"no command {words[1]!r} in: {line}"
    options = {opt for param in command.params for opt in param.opts}
    unknown = [w.split("=")[0] for w in words[2:] if w.startswith("-") and w.split("=")[0] not in options]
    assert unknown == [], f"{line}: unknown options {unknown}"


def test_init_ci_writes_a_workflow_that_installs_with_a_pip_cache_and_runs_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    installed = from_direct_url(None, "0.1.0")  # keras-dltool 0.1.0 from the package index
    monkeypatch.setattr(installation, "current", lambda: installed)
    result = runner.invoke(app, ["init", "ci"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote .github/workflows/dltool-smoke.yml; ")
    text = (tmp_path / ".github" / "workflows" / "dltool-smoke.yml").read_text()
    assert text.startswith("# GitHub Actions: ")
    workflow = yaml.safe_load(text)
    assert workflow["name"] == "dltool smoke" and set(workflow[True]) == {
        "push",
        "pull_request",
    }  # YAML 1.1: on -> True
    steps = workflow["jobs"]["smoke"]["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == ".github/workflows/dltool-smoke.yml"  # a file that exists
    commands = [line.strip() for step in steps for line in step.get("run", "").splitlines()]
    assert commands == ["pip install keras-dltool==0.1.0", "dltool smoke configs/ --fake-data --junit smoke.xml"]
    _check_dltool_command(commands[1])
    again = runner.invoke(app, ["init", "ci"])
    assert again.exit_code == 2 and "already exists; choose another path or add --force" in again.output


def test_in_a_checkout_of_dltool_the_workflow_installs_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "keras-dltool"\n')
    assert runner.invoke(app, ["init", "ci", "ci.yml"]).exit_code == 0
    assert "        run: pip install -e .\n" in (tmp_path / "ci.yml").read_text()


def test_the_docs_show_the_workflow_and_name_only_real_commands():
    section = (REPO / "docs" / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert blocks[0] == ci_workflow_text(install=README_INSTALL)
    gitlab = yaml.safe_load(blocks[1])["dltool-smoke"]
    assert gitlab["artifacts"]["reports"]["junit"] == "smoke.xml"
    lines = [line.strip().lstrip("$- ").split("  #")[0] for line in section.splitlines()]
    for line in [line for line in lines if line.startswith("dltool ") and not line.startswith("dltool-")]:
        _check_dltool_command(line.rstrip("`"))
    commands = (REPO / "docs" / "commands.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |", "| 143 |"):
        assert code in commands


def test_ci_runs_smoke_over_the_shipped_configs():
    assert "\ndltool smoke configs/ --fake-data\n" in (REPO / ".ci" / "run").read_text()


def test_ci_installs_the_wheel_as_a_new_user_would_outside_the_checkout():
    ci = (REPO / ".ci" / "run").read_text()
    user = ci.split('# README: "Set up", as a new user', 1)[1]
    assert 'pip wheel -q --no-deps -w "$user/dist" .' in user and 'cd "$user"' in user
    assert 'pip install -q "$(ls dist/keras_dltool-*.whl)[jax]"' in user  # with its dependencies
    for command in ("dltool init csv-classifier exp.yaml", "dltool train exp.yaml", "dltool smoke exp.yaml"):
        assert f"\n    {command}" in user
