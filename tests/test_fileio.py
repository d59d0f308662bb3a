"""Atomic writes give files the modes a plain open() and mkdir would, whatever writes them (issue 20)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from dltool.fileio import (
    apply_default_modes,
    atomic_target,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    file_mode,
    folder_mode,
)

REPO = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextmanager
def umask(value: int):
    """The process's umask set to ``value`` for the block (restored after: it is process-wide)."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def wrong_modes(root: Path) -> dict[str, str]:
    """{path: mode} of every file and folder under ``root`` whose mode is not what open() or mkdir would give."""
    wrong = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder, name)
            expected = folder_mode() if path.is_dir() else file_mode()
            if mode(path) != expected:
                wrong[str(path.relative_to(root))] = f"{mode(path):o} (expected {expected:o})"
    return wrong


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_an_atomic_write_gives_the_mode_a_plain_open_gives(tmp_path, mask):
    with umask(mask):
        assert current_umask() == mask
        (tmp_path / "plain.txt").write_text("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
        atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    assert mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "atomic.bin") == 0o666 & ~mask


def test_without_proc_the_umask_is_read_once_by_setting_it_back(tmp_path, monkeypatch):
    import dltool.fileio as fileio

    monkeypatch.setattr(fileio, "PROC_STATUS", str(tmp_path / "no-proc"))
    monkeypatch.setattr(fileio, "_umask_read_by_setting", None)
    with umask(0o027):
        assert current_umask() == 0o027 and os.umask(0o027) == 0o027  # read, and left as it was
        atomic_write_text(tmp_path / "a.txt", "x")
    assert mode(tmp_path / "a.txt") == 0o640


def test_replacing_a_file_keeps_its_mode_as_open_does(tmp_path):
    target = tmp_path / "shared.json"
    target.write_text("{}")
    target.chmod(0o604)
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}' and mode(target) == 0o604


def test_whatever_writes_the_temporary_path_the_file_gets_the_umask_mode_and_a_failure_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    with umask(0o027), atomic_target(target) as tmp:
        tmp.write_bytes(b"a,b\n")
        tmp.chmod(0o600)  # as a library writing with modes of its own would
    assert target.read_bytes() == b"a,b\n" and mode(target) == 0o640
    with pytest.raises(RuntimeError), atomic_target(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"a,b\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_tree_written_in_a_private_folder_gets_the_modes_of_open_and_mkdir(tmp_path):
    tree = tmp_path / "artifact"
    (tree / "variables").mkdir(parents=True, mode=0o700)
    tree.chmod(0o700)
    (tree / "saved_model.pb").write_bytes(b"x")
    (tree / "variables" / "variables.index").write_bytes(b"x")
    for path in (tree / "saved_model.pb", tree / "variables" / "variables.index"):
        path.chmod(0o600)
    with umask(0o002):
        apply_default_modes(tree)
        assert wrong_modes(tmp_path) == {}
    assert mode(tree) == mode(tree / "variables") == 0o775 and mode(tree / "saved_model.pb") == 0o664


def test_every_file_of_a_trained_run_is_readable_as_the_umask_allows(iris_run):
    """Run folder files, plots, the model and TensorBoard's folders, under the umask the tests run with."""
    assert wrong_modes(iris_run.path) == {}
    assert {"model.keras", "curves.png", "confusion_matrix.png", "run.json", "train.log"} <= {
        p.name for p in iris_run.path.iterdir()
    }


# Trains, evaluates, predicts and exports under umask 002 (a folder shared by a group): files must be 0664 and
# folders 0775. 002 rather than 022 or 027 because it also catches folders a library makes 0755 whatever the
# umask (TensorFlow's), which 022 and 027 would hide.
UMASK_SCRIPT = """
import json, os, sys
from pathlib import Path
os.umask(0o002)
root = Path(sys.argv[1])
from e2e_support import IRIS_CONFIG
from dltool.commands.evaluate import evaluate
from dltool.commands.export import export
from dltool.commands.predict import predict
from dltool.commands.train import train
from dltool.config import config_from_text

config = config_from_text(IRIS_CONFIG, source="iris.yaml", overrides=["train.callbacks.checkpoint=true"])
run = train(config, runs_root=root / "runs")
evaluate(run)
rows = root / "in" / "rows.csv"
rows.parent.mkdir()
rows.write_text("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\\n5.1,3.5,1.4,0.2\\n")
(root / "out").mkdir()
predict(run, [rows], output=root / "out" / "predictions.csv", fmt="csv")
export(run, "onnx", output=root / "out")
export(run, "saved_model", output=root / "models")
print(json.dumps(sorted(str(p.relative_to(root)) for p in root.rglob("*"))))
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_runs_predictions_and_exports_follow_the_umask_of_the_process_that_writes_them(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", UMASK_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(done.stdout.strip().splitlines()[-1])
    for expected in ("runs", "out/predictions.csv", "out/iris-test.onnx", "out/iris-test.json", "models/iris-test/1"):
        assert any(p == expected or p.endswith(expected) for p in written), expected
    assert any(p.endswith("checkpoints/best.keras") for p in written)
    assert any(p.endswith("saved_model.pb") for p in written)
    with umask(0o002):
        assert wrong_modes(tmp_path) == {}
