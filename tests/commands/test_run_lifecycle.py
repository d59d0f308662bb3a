"""The lifecycle train and resume share (dltool.commands.run_lifecycle): process 0 opens the run and tells the
others, or tells them it failed; the others join it; process 0 fits and records, the others follow. With a
stand-in process group, so no test here starts a process or trains a model (the real ones are in
tests/test_launch.py and the resume tests)."""

from __future__ import annotations

import ast
import inspect

import pytest

from dltool.commands import resume, run_lifecycle, train
from dltool.commands.run_lifecycle import open_or_join, train_or_follow
from dltool.distributed import LOCAL, ProcessGroup
from dltool.distributed.launcher import RUN_FILE_ENV
from dltool.errors import TrainingError
from dltool.runs import FAILED, Run

RUN_ID = "20260101-000000-digits-abcd"


class _Group(ProcessGroup):
    """Process ``rank`` of ``size``; process 0 sends RUN_ID (or a failure) to the others, who get it back."""

    def __init__(self, size: int, rank: int):
        self.size, self.rank, self.shared = size, rank, []

    def share_run(self, run_id=None, *, failure=None):
        self.shared.append(("failure", failure) if failure is not None else ("run", run_id))
        return run_id or RUN_ID


def _refuse(*args):
    pytest.fail("process 0's step ran in another process")


def test_a_follower_joins_the_run_process_zero_shared_and_opens_nothing(tmp_path):
    group = _Group(2, 1)
    run = open_or_join(group, open_run=_refuse, join_run=lambda run_id: Run(tmp_path / run_id), start_run=_refuse)
    assert run == Run(tmp_path / RUN_ID) and group.shared == [("run", None)]


def test_process_zero_of_several_opens_and_starts_the_run_then_tells_the_others(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_FILE_ENV, raising=False)  # no launcher to tell
    group, started = _Group(2, 0), []
    run = open_or_join(
        group, open_run=lambda: Run(tmp_path / RUN_ID), join_run=_refuse, start_run=lambda run: started.append(run)
    )
    assert started == [run] and group.shared == [("run", RUN_ID)]


def test_one_process_alone_tells_nobody(tmp_path):
    group = _Group(1, 0)
    assert open_or_join(group, open_run=lambda: Run(tmp_path / RUN_ID), join_run=_refuse) == Run(tmp_path / RUN_ID)
    assert group.shared == []


def test_a_run_that_cannot_be_opened_reaches_the_others_before_its_error_is_raised():
    group = _Group(2, 0)

    def cannot_open():
        raise OSError("runs: read-only file system")

    with pytest.raises(OSError, match="read-only"):
        open_or_join(group, open_run=cannot_open, join_run=_refuse)
    assert group.shared == [("failure", "runs: read-only file system")]


def test_a_run_that_cannot_be_started_is_marked_failed_and_its_reason_reaches_the_others(tmp_path):
    group, run = _Group(2, 0), Run.create(tmp_path, "digits")
    run.start(name="digits")

    def cannot_start(run):
        raise OSError("disk full")

    with pytest.raises(TrainingError, match=f"run {run.id} could not be started: OSError: disk full"):
        open_or_join(group, open_run=lambda: run, join_run=_refuse, start_run=cannot_start)
    assert run.info["status"] == FAILED and run.info["error"] == "OSError: disk full"
    assert group.shared == [("failure", "OSError: disk full")]


def test_process_zero_fits_and_records_after_its_last_step_and_a_follower_follows(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run_lifecycle, "share_out", lambda run, config, data, group: calls.append(("share", run)))
    monkeypatch.setattr(run_lifecycle, "follow", lambda run, *args, **kwargs: calls.append(("follow", kwargs)) or run)
    monkeypatch.setattr(run_lifecycle, "fit_and_record", lambda run, *a, **kwargs: calls.append(("fit", kwargs)) or run)
    run = Run(tmp_path / RUN_ID)
    resumed = {"initial_epoch": 3, "restore": {"early_stopping": {"wait": 1}}, "fine_tune_from": 2}

    assert train_or_follow(run, None, None, None, observer=None, group=_Group(2, 1), **resumed) == run
    assert calls == [("share", None), ("follow", {"group": calls[1][1]["group"], **resumed})]

    calls.clear()
    train_or_follow(
        run, None, None, None, observer=None, group=_Group(2, 0), before_fit=lambda: calls.append("restart")
    )
    assert [call if isinstance(call, str) else call[0] for call in calls] == ["share", "restart", "fit"]

    calls.clear()
    train_or_follow(run, None, None, None, observer=None, group=LOCAL, history=[{"epoch": 1}])
    assert calls == [
        (
            "fit",
            {
                "observer": None,
                "history": [{"epoch": 1}],
                "initial_epoch": 0,
                "restore": None,
                "fine_tune_from": None,
                "group": LOCAL,
                "clock": None,
            },
        )
    ]


@pytest.mark.parametrize("module", [train, resume], ids=["train", "resume"])
def test_train_and_resume_leave_the_process_zero_or_follower_branch_to_the_lifecycle(module):
    tree = ast.parse(inspect.getsource(module))
    asked = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "is_leader"
        or isinstance(node, ast.Name)
        and node.id in ("follow", "share_out")
    ]
    assert asked == [], f"{module.__name__} branches on the process itself: lines {asked}"
