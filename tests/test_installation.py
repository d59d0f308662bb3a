"""Install hints follow how this dltool was installed (pip's PEP 610 record): pure data, no TensorFlow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO
from typer.testing import CliRunner

from dltool import installation
from dltool.cli.app import app
from dltool.errors import DltoolError, UsageError
from dltool.installation import Installation, from_direct_url

runner = CliRunner()
GIT = {
    "url": "https://github.com/acme/dltool.git",
    "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567", "requested_revision": "main"},
}
COMMIT = GIT["vcs_info"]["commit_id"]
RECORDS = {  # kind -> direct_url.json as pip writes it (None: installed from the index, no record)
    "editable": {"url": "file:///home/ann/src/dltool", "dir_info": {"editable": True}},
    "local": {"url": "file:///tmp/dist/keras_dltool-0.1.0-py3-none-any.whl", "archive_info": {"hash": "sha256=ab"}},
    "url": {"url": "https://example.org/keras_dltool-0.1.0-py3-none-any.whl", "archive_info": {}},
    "vcs": GIT,
    "index": None,
}


def _installed_as(monkeypatch, record: dict | None, version: str = "0.1.0") -> Installation:
    installed = from_direct_url(record, version)
    monkeypatch.setattr(installation, "current", lambda: installed)
    return installed


def test_each_install_record_gives_the_pip_command_that_installs_it_again(tmp_path):
    commands = {
        kind: from_direct_url(record, "0.1.0").pip_install("export", cwd=tmp_path) for kind, record in RECORDS.items()
    }
    assert commands == {
        "editable": 'pip install -e "/home/ann/src/dltool[export]"',
        "local": 'pip install "/tmp/dist/keras_dltool-0.1.0-py3-none-any.whl[export]"',
        "url": 'pip install "keras-dltool[export] @ https://example.org/keras_dltool-0.1.0-py3-none-any.whl"',
        "vcs": f'pip install "keras-dltool[export] @ git+https://github.com/acme/dltool.git@{COMMIT}"',
        "index": 'pip install "keras-dltool[export]==0.1.0"',
    }
    assert from_direct_url(None, "0.2.0").pip_install() == "pip install keras-dltool==0.2.0"
    in_subfolder = {**GIT, "subdirectory": "python"}
    assert from_direct_url(in_subfolder, "0.1.0").requirement(("jax", "serve")) == (
        f'"keras-dltool[jax,serve] @ git+https://github.com/acme/dltool.git@{COMMIT}#subdirectory=python"'
    )


def test_an_editable_install_is_dot_inside_its_checkout_and_its_path_elsewhere(tmp_path):
    editable = from_direct_url({"url": tmp_path.as_uri(), "dir_info": {"editable": True}}, "0.1.0")
    assert editable.pip_install("sweep", cwd=tmp_path) == 'pip install -e ".[sweep]"'
    assert editable.pip_install(cwd=tmp_path) == "pip install -e ."
    assert editable.pip_install("sweep", cwd=tmp_path.parent) == f'pip install -e "{tmp_path}[sweep]"'
    spaced = from_direct_url({"url": "file:///home/ann/my%20src", "dir_info": {"editable": True}}, "0.1.0")
    assert (
        spaced.location == "/home/ann/my src"
        and spaced.pip_install(cwd=tmp_path) == 'pip install -e "/home/ann/my src"'
    )


def test_this_checkout_on_the_path_is_a_checkout_install():
    installed = installation.current()  # the tests import dltool from this checkout
    assert installed.kind in ("checkout", "editable") and Path(installed.location) == REPO
    assert installed.pip_install("export", cwd=REPO) == 'pip install -e ".[export]"'
    assert installation.names_this_project(REPO) and not installation.names_this_project(REPO / "dltool")


def test_the_missing_extra_messages_follow_the_install(monkeypatch):
    from dltool.backend import select_backend
    from dltool.commands.serve import require_serve_extra
    from dltool.exporting.runtimes import require
    from dltool.sweep.storage import import_optuna

    _installed_as(monkeypatch, GIT)
    pinned = f'"keras-dltool[{{}}] @ git+https://github.com/acme/dltool.git@{COMMIT}"'
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name in ("torch", "uvicorn") else real(name, *a)
    )
    with pytest.raises(UsageError) as error:
        select_backend("torch")
    assert (
        str(error.value)
        == f"backend torch is not installed: pip install {pinned.format('torch')}  (or: pip install torch)"
    )
    with pytest.raises(DltoolError) as error:
        require_serve_extra()
    assert str(error.value) == f"dltool serve needs uvicorn, not installed: pip install {pinned.format('serve')}"
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(DltoolError) as error:
        import_optuna()
    assert str(error.value).endswith(f"not installed: pip install {pinned.format('sweep')} (or: pip install optuna)")
    _installed_as(monkeypatch, None, "0.3.0")
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(DltoolError) as error:
        require("tf2onnx", "tf2onnx", "ONNX export")
    assert str(error.value) == (
        'ONNX export needs the package tf2onnx, which is not installed; pip install "keras-dltool[export]==0.3.0"'
    )


def test_the_sweep_template_names_the_sweep_extra_of_this_install(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _installed_as(monkeypatch, None, "0.3.0")
    assert runner.invoke(app, ["init", "mnist-mlp", "exp.yaml"]).exit_code == 0
    assert runner.invoke(app, ["init", "sweep", "--experiment", "exp.yaml"]).exit_code == 0
    assert '(needs Optuna: pip install "keras-dltool[sweep]==0.3.0")' in (tmp_path / "sweep.yaml").read_text()


def _install_step(workflow: Path) -> str:
    steps = yaml.safe_load(workflow.read_text())["jobs"]["smoke"]["steps"]
    return next(step["run"] for step in steps if step.get("name") == "Install dltool")


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("vcs", f"pip install keras-dltool @ git+https://github.com/acme/dltool.git@{COMMIT}"),
        ("index", "pip install keras-dltool==0.1.0"),
        ("url", "pip install keras-dltool @ https://example.org/keras_dltool-0.1.0-py3-none-any.whl"),
    ],
)
def test_init_ci_installs_exactly_this_dltool_where_a_runner_can_reach_it(kind, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _installed_as(monkeypatch, RECORDS[kind])
    result = runner.invoke(app, ["init", "ci"])
    assert result.exit_code == 0, result.output
    assert _install_step(tmp_path / ".github/workflows/dltool-smoke.yml").replace('"', "") == expected


@pytest.mark.parametrize("kind", ["editable", "local", "unknown"])
def test_init_ci_refuses_to_guess_what_a_runner_cannot_reach_and_asks_for_install(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    installed = Installation("unknown", "0.1.0") if kind == "unknown" else from_direct_url(RECORDS[kind], "0.1.0")
    monkeypatch.setattr(installation, "current", lambda: installed)
    result = runner.invoke(app, ["init", "ci"])
    assert result.exit_code == 2
    assert (
        f"the workflow must install this dltool, but it is {installed.describe()}, which a CI runner cannot reach"
        in (result.output)
    )
    assert 'dltool init ci --install "keras-dltool @ git+https://github.com/OWNER/REPO@COMMIT"' in result.output
    assert not (tmp_path / ".github").exists()  # a refusal leaves no folder behind
    spec = f"keras-dltool[jax] @ git+https://github.com/acme/dltool@{COMMIT}"
    assert runner.invoke(app, ["init", "ci", "--install", spec]).exit_code == 0
    assert _install_step(tmp_path / ".github/workflows/dltool-smoke.yml") == f'pip install "{spec}"'


def test_a_git_install_from_a_local_clone_is_not_reachable_from_a_runner(tmp_path, monkeypatch):
    _installed_as(monkeypatch, {**GIT, "url": "file:///home/ann/src/dltool"})
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "ci"]).exit_code == 2


def test_init_ci_keys_the_pip_cache_on_the_workflow_itself(tmp_path, monkeypatch):
    # setup-python's default cache key needs a requirements*.txt or pyproject.toml: a configs-only repository
    # has neither (actions/setup-python#807). The workflow always exists and names what is installed.
    monkeypatch.chdir(tmp_path)
    _installed_as(monkeypatch, None)
    (tmp_path / "ci").mkdir()
    assert runner.invoke(app, ["init", "ci", "ci/smoke.yml"]).exit_code == 0
    steps = yaml.safe_load((tmp_path / "ci/smoke.yml").read_text())["jobs"]["smoke"]["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"] == {"python-version": "3.12", "cache": "pip", "cache-dependency-path": "ci/smoke.yml"}


def test_install_goes_with_init_ci_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "mnist-mlp", "--install", "keras-dltool"])
    assert (
        result.exit_code == 2
        and "--install goes with `dltool init ci`, not with the mnist-mlp template" in result.output
    )
    assert not (tmp_path / "mnist_mlp.yaml").exists()


def test_info_names_the_install_and_one_command_for_the_missing_extras(monkeypatch):
    from dltool.system_info import OPTIONAL_PACKAGES, installation_report

    _installed_as(monkeypatch, GIT)
    optional = dict.fromkeys(OPTIONAL_PACKAGES, "1.0") | {"jax": None, "uvicorn": None, "psycopg2": None}
    report = installation_report(optional)
    assert report["from"] == f"installed from git+https://github.com/acme/dltool.git at commit {COMMIT}"
    assert report["missing_extras"] == ["jax", "serve"]  # psycopg2 is in no extra
    assert report["install_missing"] == (
        f'pip install "keras-dltool[jax,serve] @ git+https://github.com/acme/dltool.git@{COMMIT}"'
    )
    assert installation_report(dict.fromkeys(OPTIONAL_PACKAGES, "1.0"))["install_missing"] is None


@pytest.mark.slow  # imports TensorFlow
def test_dltool_info_shows_how_dltool_was_installed(monkeypatch):
    import importlib.util

    _installed_as(monkeypatch, None, "0.3.0")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    shown = runner.invoke(app, ["info"])
    assert shown.exit_code == 0, shown.output
    assert "installed: keras-dltool 0.3.0 from the package index\n" in shown.output
    assert 'missing extras (sweep): pip install "keras-dltool[sweep]==0.3.0"\n' in shown.output
