"""Every command that writes a file the user names refuses an unusable path in one line, exit 2, before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dltool.cli.app import app

runner = CliRunner()


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: then a read-only system folder)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for candidate in (Path("/sys"), Path("/proc/sys")):
        try:
            tempfile.NamedTemporaryFile(dir=candidate).close()
        except OSError:
            return candidate
    pytest.skip("no folder here refuses writes to this (root) process")


@pytest.fixture(params=["missing folder", "unwritable folder", "folder in place of the file"])
def bad_path(request, tmp_path):
    if request.param == "missing folder":
        return tmp_path / "no" / "such" / "dir" / "out.file", "does not exist; create it first (mkdir -p"
    if request.param == "unwritable folder":
        return _unwritable_folder(tmp_path) / "out.file", "cannot write in"
    folder = tmp_path / "taken"
    folder.mkdir()
    return folder, "is a folder; give a file name"


def _refused(args, expected):
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, OSError))
    assert expected in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_init(bad_path):
    path, expected = bad_path
    _refused(["init", "forecaster", str(path.with_suffix(".yaml") if path.suffix else path)], expected)


def test_plot(bad_path, tmp_path):
    # The path is checked before the runs are even looked up: no run folder is needed to be refused.
    path, expected = bad_path
    _refused(
        [
            "plot",
            "latest",
            "-o",
            str(path.with_suffix(".png") if path.suffix else path),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        expected,
    )


@pytest.mark.slow
def test_predict(bad_path, iris_run, tmp_path):
    path, expected = bad_path
    rows = tmp_path / "rows.npy"
    import numpy as np

    np.save(rows, np.zeros((2, 4)))
    _refused(
        ["predict", str(iris_run.path), str(rows), "-o", str(path.with_suffix(".csv") if path.suffix else path)],
        expected,
    )
