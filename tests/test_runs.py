"""Run folders without TensorFlow: ids, lookup, atomic JSON, status lifecycle, listing."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime

import pytest

import dltool.runs as runs_module
from dltool.errors import RunNotFoundError
from dltool.runs import DIED, RUN_ID_PATTERN, Run, atomic_write_json, effective_status, list_runs

ID_SHAPE = re.compile(r"^(\d{8})-(\d{6})-(?P<name>.+)-(?P<hex>[0-9a-f]{4})$")


class _FrozenDatetime(datetime):
    """datetime whose now() is always the same second, so every run is created 'in the same second'."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(runs_module, "datetime", _FrozenDatetime)


def _make_run(root, run_id: str, **info) -> Run:
    path = root / run_id
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"id": run_id, "status": "COMPLETED", **info}))
    return Run(path)


# --------------------------------------------------------------------------- creation
def test_fifty_runs_created_in_the_same_second_get_unique_ids(tmp_path, frozen_clock):
    created = [Run.create(tmp_path, "same-second") for _ in range(50)]
    ids = [run.id for run in created]
    assert len(set(ids)) == 50
    for run_id in ids:
        match = ID_SHAPE.match(run_id)
        assert match, run_id
        assert run_id.startswith("20260102-030405-same-second-")
        assert match["name"] == "same-second"
        assert RUN_ID_PATTERN.match(run_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ids)
    assert all(run.path.is_dir() and not any(run.path.iterdir()) for run in created)


def test_create_uses_the_real_clock_in_the_id(tmp_path):
    run = Run.create(tmp_path, "clock")
    stamp = datetime.strptime(run.id[:15], "%Y%m%d-%H%M%S")
    assert abs((datetime.now() - stamp).total_seconds()) < 5
    assert RUN_ID_PATTERN.match(run.id)


def test_create_retries_when_the_random_suffix_collides(tmp_path, frozen_clock, monkeypatch):
    tokens = iter(["abcd", "abcd", "abcd", "0123"])
    monkeypatch.setattr(runs_module.secrets, "token_hex", lambda n: next(tokens))
    first = Run.create(tmp_path, "clash")
    second = Run.create(tmp_path, "clash")
    assert first.id == "20260102-030405-clash-abcd"
    assert second.id == "20260102-030405-clash-0123"


def test_create_refuses_an_unwritable_runs_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(
        runs_module.DltoolError,
        match=r"runs folder .*file/runs is not writable \(Not a directory\); choose another with --runs-dir",
    ):
        Run.create(blocker / "runs", "x")


# --------------------------------------------------------------------------- resolve
@pytest.fixture
def three_runs(tmp_path):
    root = tmp_path / "runs"
    ids = ["20260101-000000-alpha-aaaa", "20260101-000001-alpha-bbbb", "20260102-000000-beta-cccc"]
    return root, [_make_run(root, run_id) for run_id in ids]


def test_resolve_by_full_id(three_runs):
    root, made = three_runs
    assert Run.resolve("20260101-000001-alpha-bbbb", root) == made[1]


def test_resolve_by_unique_prefix(three_runs):
    root, made = three_runs
    assert Run.resolve("20260102", root) == made[2]
    assert Run.resolve("20260101-000000", root) == made[0]


def test_resolve_ambiguous_prefix_lists_the_matches(three_runs):
    root, _ = three_runs
    with pytest.raises(RunNotFoundError) as caught:
        Run.resolve("20260101", root)
    message = str(caught.value)
    assert "'20260101' matches 2 runs" in message
    assert "20260101-000000-alpha-aaaa" in message and "20260101-000001-alpha-bbbb" in message
    assert "give more of the id" in message


def test_resolve_ambiguous_prefix_says_how_many_it_did_not_list(tmp_path):
    root = tmp_path / "runs"
    for second in range(11):
        _make_run(root, f"20261124-0000{second:02d}-wine-aaaa")
    with pytest.raises(RunNotFoundError) as caught:
        Run.resolve("2026", root)
    assert "'2026' matches 11 runs (20261124-000000-wine-aaaa, " in str(caught.value)
    assert "20261124-000004-wine-aaaa and 6 more); give more of the id" in str(caught.value)


def test_resolve_by_name_is_the_newest_run_of_that_name(three_runs):
    root, made = three_runs
    for run in made:
        run.update_info(name=run.id.split("-")[2])
    assert Run.resolve("alpha", root) == made[1]
    assert Run.resolve("beta", root) == made[2]


def test_the_config_file_of_a_run_is_its_resolved_config_yaml_found_by_any_reference(three_runs):
    from dltool.runs import config_file_of

    root, made = three_runs
    assert config_file_of("latest", root) == made[2].path / "config.yaml"
    assert config_file_of("20260101-000000", root) == made[0].path / "config.yaml"


def test_resolve_unknown_prefix_says_how_to_list_runs(three_runs):
    root, _ = three_runs
    with pytest.raises(RunNotFoundError, match=r"no run matches '2027' in .*runs.*`dltool runs`"):
        Run.resolve("2027", root)


def test_resolve_latest_is_the_newest_run(three_runs):
    root, made = three_runs
    assert Run.resolve("latest", root) == made[2]
    assert Run.resolve("  latest ", root) == made[2]


def test_resolve_latest_in_an_empty_runs_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(RunNotFoundError) as caught:
        Run.resolve("latest", tmp_path / "runs")
    assert str(caught.value) == f"no runs in {tmp_path / 'runs'}; train one with `dltool train CONFIG`"


def test_resolve_latest_when_the_runs_folder_does_not_exist(tmp_path):
    with pytest.raises(RunNotFoundError, match="no runs in .*missing; train one"):
        Run.resolve("latest", tmp_path / "missing")


def test_resolve_by_path_to_a_run_folder(three_runs):
    root, made = three_runs
    assert Run.resolve(str(made[0].path), root / "elsewhere") == made[0]


def test_resolve_refuses_a_path_without_run_json(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    with pytest.raises(RunNotFoundError) as caught:
        Run.resolve(str(folder), tmp_path)
    assert str(caught.value) == f"{folder}: not a run folder (it has no run.json)"


def test_resolve_refuses_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(RunNotFoundError, match="no such run folder"):
        Run.resolve(str(tmp_path / "nope"), tmp_path)


@pytest.mark.parametrize("ref", ["..", "../x", "a b", "*", ""])
def test_resolve_refuses_refs_that_are_neither_ids_nor_run_folders(three_runs, ref):
    root, _ = three_runs
    with pytest.raises(RunNotFoundError):
        Run.resolve(ref, root)


def test_resolve_does_not_follow_a_symlinked_run_out_of_the_runs_folder(tmp_path):
    outside = _make_run(tmp_path / "outside", "20260101-000000-evil-eeee")
    root = tmp_path / "runs"
    root.mkdir()
    (root / outside.id).symlink_to(outside.path, target_is_directory=True)
    with pytest.raises(RunNotFoundError, match="no run matches"):
        Run.resolve("20260101", root)


def test_latest_is_the_newest_of_two_runs_created_in_the_same_second(tmp_path, frozen_clock, monkeypatch):
    tokens = iter(["ffff", "0000"])
    monkeypatch.setattr(runs_module.secrets, "token_hex", lambda n: next(tokens))
    older = Run.create(tmp_path, "same")
    older.start()
    newer = Run.create(tmp_path, "same")
    newer.start()
    assert Run.resolve("latest", tmp_path) == newer


# --------------------------------------------------------------------------- atomic writes
def test_atomic_write_json_leaves_no_temp_files_and_writes_null_for_nan(tmp_path):
    target = tmp_path / "data.json"
    atomic_write_json(target, {"loss": float("nan"), "nested": [1.5, float("inf"), {"x": float("-inf")}], "ok": 2})
    atomic_write_json(target, {"loss": float("nan"), "nested": [1.5, float("inf"), {"x": float("-inf")}], "ok": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "nested": [1.5, None, {"x": None}], "ok": 2}


def test_atomic_write_json_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "data.json"
    atomic_write_json(target, {"version": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"version": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
    assert json.loads(target.read_text()) == {"version": 1}


def test_write_json_through_a_run_leaves_no_temp_files(tmp_path):
    run = Run.create(tmp_path, "files")
    run.write_json("metrics.json", {"a": float("nan")})
    run.append_log("one")
    run.append_log("two\n")
    assert sorted(p.name for p in run.path.iterdir()) == ["metrics.json", "train.log"]
    assert run.file("train.log").read_text() == "one\ntwo\n"
    assert run.read_json("metrics.json") == {"a": None}


def test_read_json_names_a_missing_or_corrupt_file(tmp_path):
    run = Run.create(tmp_path, "broken")
    with pytest.raises(RunNotFoundError, match="run.json is missing"):
        run.read_json("run.json")
    run.file("run.json").write_text("{not json")
    with pytest.raises(RunNotFoundError, match="run.json cannot be read"):
        run.read_json("run.json")


# --------------------------------------------------------------------------- status
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_running_run_with_a_dead_pid_on_this_host_is_died():
    info = {"status": "RUNNING", "host": socket.gethostname(), "pid": _dead_pid(), "pid_start": None}
    assert effective_status(info) == DIED == "DIED"


def test_running_run_with_our_own_pid_is_running():
    info = {
        "status": "RUNNING",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": runs_module.process_start(os.getpid()),
    }
    assert effective_status(info) == "RUNNING"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_running_run_whose_pid_was_reused_by_another_process_is_died():
    info = {"status": "RUNNING", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": "1"}
    assert effective_status(info) == "DIED"


def test_running_run_on_another_host_stays_running():
    info = {"status": "RUNNING", "host": socket.gethostname() + "-elsewhere", "pid": _dead_pid()}
    assert effective_status(info) == "RUNNING"


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "INTERRUPTED"])
def test_final_statuses_are_shown_as_written_even_with_a_dead_pid(status):
    info = {"status": status, "host": socket.gethostname(), "pid": _dead_pid()}
    assert effective_status(info) == status


def test_missing_status_is_unknown():
    assert effective_status({}) == "UNKNOWN"


def test_start_then_finish_records_status_times_and_duration(tmp_path):
    run = Run.create(tmp_path, "life")
    info = run.start(seed=7)
    assert info["status"] == "RUNNING" and run.status == "RUNNING"
    assert info["id"] == run.id and info["seed"] == 7
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert info["ended"] is None and info["error"] is None
    assert info["started"] == info["created"]
    assert isinstance(info["heartbeat"], float)

    done = run.finish("COMPLETED", epochs_done=3)
    assert done["status"] == "COMPLETED" and run.status == "COMPLETED"
    assert done["ended"] and datetime.fromisoformat(done["ended"]) >= datetime.fromisoformat(done["started"])
    assert isinstance(done["duration_s"], float) and 0 <= done["duration_s"] < 60
    assert done["error"] is None and done["epochs_done"] == 3
    assert done["seed"] == 7, "finish keeps the fields written at start"
    assert json.loads(run.file("run.json").read_text()) == done
    assert [p.name for p in run.path.iterdir()] == ["run.json"]


def test_finish_failed_records_the_error(tmp_path):
    run = Run.create(tmp_path, "fails")
    run.start()
    info = run.finish("FAILED", error="loss became NaN at epoch 2")
    assert info["status"] == "FAILED" and info["error"] == "loss became NaN at epoch 2"
    assert run.status == "FAILED"


def test_finish_without_a_start_time_has_no_duration(tmp_path):
    run = _make_run(tmp_path, "20260101-000000-old-aaaa", status="RUNNING")
    info = run.finish("INTERRUPTED")
    assert info["status"] == "INTERRUPTED" and info["duration_s"] is None and info["ended"]


def test_restart_marks_running_again_and_keeps_the_start_time(tmp_path):
    run = Run.create(tmp_path, "resume")
    first = run.start()
    run.finish("INTERRUPTED")
    again = run.restart(resumed=True)
    assert again["status"] == "RUNNING" and again["ended"] is None and again["resumed"] is True
    assert again["started"] == first["started"] and again["started_ts"] == first["started_ts"]


# --------------------------------------------------------------------------- listing
def test_list_runs_skips_folders_without_run_json_files_and_symlinks(tmp_path):
    root = tmp_path / "runs"
    b = _make_run(root, "20260101-000002-b-bbbb")
    a = _make_run(root, "20260101-000001-a-aaaa")
    (root / "20260101-000003-empty-eeee").mkdir()
    (root / "notes.txt").write_text("a file, not a run")
    (root / "run.json").write_text("{}")
    elsewhere = _make_run(tmp_path / "other", "20260101-000004-linked-ffff")
    (root / "20260101-000004-linked-ffff").symlink_to(elsewhere.path, target_is_directory=True)
    assert list_runs(root) == [a, b]


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert list_runs(tmp_path / "nothing-here") == []


def test_runs_rm_by_status_deletes_only_those_runs(tmp_path):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    root = tmp_path / "runs"
    kept = _make_run(root, "20260101-000000-alpha-aaaa")
    failed = [_make_run(root, f"20260101-00000{i}-beta-bbb{i}", status="FAILED") for i in (1, 2)]
    result = CliRunner().invoke(app, ["runs", "rm", "--status", "failed", "--runs-dir", str(root), "--yes"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 run(s)" in result.output
    assert kept.path.is_dir() and not any(run.path.exists() for run in failed)
    again = CliRunner().invoke(app, ["runs", "rm", "--status", "FAILED", "--runs-dir", str(root), "--yes"])
    assert again.exit_code == 0 and "no FAILED runs to delete" in again.output
    nothing = CliRunner().invoke(app, ["runs", "rm", "--runs-dir", str(root)])
    assert nothing.exit_code == 2 and "give the runs to delete, or --status" in nothing.output
