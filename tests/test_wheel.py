"""The wheel a user installs: built from the checkout, installed in a fresh virtualenv outside it, and used there."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from e2e_support import REPO

PACKAGE_DATA = ["resources/keras_catalog.json", "resources/schema.json", "resources/sweep.schema.json"]
PACKAGE_DATA += ["resources/templates/github-ci.yml"]
PACKAGE_DATA += [
    "resources/templates/sweep.yml",
    "resources/templates/csv-classifier.yaml",
    "resources/templates/mnist-mlp.yaml",
]


def _build_wheel(tmp_path: Path) -> Path:
    """The checkout's wheel, built from a copy (setuptools leaves build/ and *.egg-info where it builds)."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "dltool", source / "dltool", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # No build isolation: the setuptools of this environment, no download (CI and this machine are offline).
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source)]
    subprocess.run([*command, "-w", str(tmp_path / "dist")], check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    return wheel


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A virtualenv at ``path`` with the wheel installed and this environment's packages as its dependencies.

    TensorFlow is ~600 MB: rather than download it again, a .pth file adds this environment's site-packages.
    A plain path line in a .pth does not run the .pth files of that folder, so an editable dltool installed
    there stays invisible (the test checks that dltool is imported from the new virtualenv).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, text=True)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shared = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    Path(purelib, "dependencies.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(shared)))
    return path / "bin"


@pytest.mark.subprocess
@pytest.mark.slow
def test_the_wheel_installed_outside_the_checkout_inits_validates_trains_smokes_and_writes_ci(tmp_path):
    wheel = _build_wheel(tmp_path)
    assert wheel.name == "keras_dltool-0.1.0-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"dltool/{name}" for name in PACKAGE_DATA} <= names
    assert "keras_dltool-0.1.0.dist-info/entry_points.txt" in names
    bin_dir = _fresh_venv(tmp_path / "venv", wheel)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND", "DLTOOL_RUNS_DIR")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    where = run(str(bin_dir / "python"), "-c", "import dltool; print(dltool.__file__)")
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr
    init = run(str(bin_dir / "dltool"), "init", "csv-classifier", "exp.yaml")
    assert init.returncode == 0 and "wrote exp.yaml; check it with: dltool validate exp.yaml" in init.stdout
    rows = [f"{i % 7},{(i * 3) % 11},{i % 5},{i % 3},{'abc'[i % 3]}" for i in range(90)]
    (work / "data.csv").write_text("x1,x2,x3,x4,label\n" + "\n".join(rows) + "\n")
    validate = run("dltool", "validate", "exp.yaml")
    assert validate.returncode == 0 and "exp.yaml: config, data and model are valid" in validate.stdout
    train = run("dltool", "train", "exp.yaml", "--set", "train.epochs=1", "-q")
    assert train.returncode == 0 and "COMPLETED" in train.stdout, train.stdout + train.stderr
    smoke = run("dltool", "smoke", "exp.yaml", "--fake-data")
    assert smoke.returncode == 0 and ", 1 passed in " in smoke.stdout, smoke.stdout + smoke.stderr
    schema = run("dltool", "schema")
    assert schema.returncode == 0 and '"properties"' in schema.stdout
    # A local wheel: the runner cannot reach it, so init ci refuses to guess and asks for --install.
    ci = run("dltool", "init", "ci")
    assert ci.returncode == 2 and f"it is installed from {wheel}, which a CI runner cannot reach" in ci.stderr
    assert not (work / ".github").exists()
    ci = run("dltool", "init", "ci", "--install", "keras-dltool==0.1.0")
    assert ci.returncode == 0, ci.stderr
    assert "        run: pip install keras-dltool==0.1.0\n" in (work / ".github/workflows/dltool-smoke.yml").read_text()
    # The hints name this install: the sweep template's comment installs the sweep extra from the same wheel.
    sweep = run("dltool", "init", "sweep", "--experiment", "exp.yaml")
    assert sweep.returncode == 0, sweep.stderr
    assert f'(needs Optuna: pip install "{wheel}[sweep]")' in (work / "sweep.yaml").read_text()
