"""Several processes training one run (dltool.distributed): where a process stands (command line, Keras's and
Slurm's variables), each process's share of a batch, one process alone as the null group, the backends refused,
and how `dltool launch` reports workers (issues 14, 21). The loopback runs themselves are in tests/distributed/test_launch.py."""

from __future__ import annotations

import re
import time
from pathlib import Path

import grimp
import pytest

from dltool.distributed import LOCAL, GroupSettings, JaxProcessGroup, current_group, group
from dltool.distributed.launcher import LaunchResult, _mark_failed, describe_exit
from dltool.distributed.settings import group_settings, refuse_backend
from dltool.errors import ConfigError, UsageError
from dltool.runs import FAILED, Run

PACKAGE = Path(__file__).resolve().parents[2] / "dltool"


def test_the_command_line_needs_all_three_options_and_checks_them():
    assert group_settings("127.0.0.1:1234", 2, 1, environ={}) == GroupSettings(
        "127.0.0.1:1234", 2, 1, "the command line"
    )
    with pytest.raises(UsageError, match="need all three of --coordinator HOST:PORT, --num-processes N"):
        group_settings("127.0.0.1:1234", 2, None, environ={})
    with pytest.raises(UsageError, match="process id 2 is out of range for 2 processes; expected 0 to 1"):
        group_settings("127.0.0.1:1234", 2, 2, environ={})
    with pytest.raises(UsageError, match="coordinator 'localhost' is not HOST:PORT"):
        group_settings("localhost", 2, 0, environ={})


def test_keras_distribution_variables_and_slurm_are_honoured_and_one_process_is_none():
    keras_vars = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "1",
    }
    group = group_settings(environ=keras_vars)
    assert (group.coordinator, group.count, group.index) == ("10.0.0.1:1234", 2, 1)
    assert group_settings(environ={**keras_vars, "KERAS_DISTRIBUTION_NUM_PROCESSES": "1"}) is None
    with pytest.raises(UsageError, match="must be whole numbers, received 'two'"):
        group_settings(environ={**keras_vars, "KERAS_DISTRIBUTION_NUM_PROCESSES": "two"})
    slurm = {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_PROCID": "3"}
    assert group_settings(environ=slurm) == GroupSettings(None, 4, 3, "Slurm")  # JAX finds the coordinator
    assert group_settings(environ={**slurm, "SLURM_NTASKS": "1"}) is None
    assert group_settings(environ={"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}) is None  # sbatch script, not an srun step
    assert group_settings(environ={}) is None


def test_backends_other_than_jax_are_refused_naming_the_upstream_issue():
    with pytest.raises(ConfigError) as caught:
        refuse_backend("tensorflow")
    assert "keras-team/keras/issues/20585" in str(caught.value) and "set backend: jax" in str(caught.value)
    with pytest.raises(ConfigError, match="Keras distributes across processes on JAX only"):
        refuse_backend("torch")
    refuse_backend("jax")


def test_the_launch_exit_code_is_worker_zeros_else_one_if_any_failed():
    assert LaunchResult([0, 0]).exit_code == 0
    assert LaunchResult([2, 2]).exit_code == 2
    assert LaunchResult([130, -6]).exit_code == 130
    assert LaunchResult([0, -9]).exit_code == 1
    assert LaunchResult([-9, -6]).exit_code == 1
    assert describe_exit(-9) == "was killed by SIGKILL" and describe_exit(1) == "exited with code 1"


def test_a_run_left_running_by_a_dead_worker_zero_is_marked_failed_naming_it(tmp_path):
    run = Run.create(tmp_path, "digits")
    run.start(name="digits")
    _mark_failed(run, 0, -9, 2)
    assert run.info["status"] == FAILED and run.info["error"] == "worker 0 was killed by SIGKILL"
    assert "dltool launch -n 2 --resume" in run.file("train.log").read_text()
    finished = Run.create(tmp_path, "digits")
    finished.start(name="digits")
    finished.finish(FAILED, error="worker 1 of 2 stopped")
    _mark_failed(finished, 1, -9, 2)  # worker 0 recorded it first: its reason stays
    assert finished.info["error"] == "worker 1 of 2 stopped"


class _FakeClient:
    """The key-value half of JAX's distributed client: what signs of life go through."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def key_value_set(self, key, value, allow_overwrite=False):
        self.values[key] = value

    def key_value_try_get(self, key):
        if key not in self.values:
            raise KeyError(key)
        return self.values[key]


def _as_processes(monkeypatch, client, count: int, index: int) -> JaxProcessGroup:
    monkeypatch.setattr(group, "HEARTBEAT_SECONDS", 0.6)
    monkeypatch.setattr(group, "SIGN_OF_LIFE_SECONDS", 0.05)
    return JaxProcessGroup(client, count, index)


def test_process_zero_notices_a_worker_that_stops_giving_signs_of_life(monkeypatch):
    client, silent = _FakeClient(), []
    done = _as_processes(monkeypatch, client, 3, 1).give_signs_of_life()  # worker 1 beats, then finishes well
    stop = _as_processes(monkeypatch, client, 3, 0).watch_the_others(silent.append)
    deadline = time.monotonic() + 5
    while not silent and time.monotonic() < deadline:  # worker 2 never gives a sign
        time.sleep(0.05)
    done()
    stop()
    assert silent == [[2]]  # worker 1 was alive all along; worker 2 is named once
    assert client.values["dltool/alive/1"] == "done"


def test_a_worker_that_finished_is_not_expected_to_beat_and_stop_ends_the_watch(monkeypatch):
    client, silent = _FakeClient(), []
    client.values["dltool/alive/1"] = "done"
    stop = _as_processes(monkeypatch, client, 2, 0).watch_the_others(silent.append)
    time.sleep(1.0)
    stop()
    assert silent == []
    stop = _as_processes(monkeypatch, _FakeClient(), 2, 0).watch_the_others(silent.append)
    stop()  # stopped before the heartbeat timeout: never called
    time.sleep(1.0)
    assert silent == []


def test_one_process_alone_is_the_null_group_whose_share_is_all_the_data():
    assert current_group() is LOCAL  # no JAX runtime joined in this process
    assert (LOCAL.size, LOCAL.rank, LOCAL.is_leader) == (1, 0, True)
    assert LOCAL.batch_share(32) == 32
    assert LOCAL.share_run("20260101-000000-digits-abcd") == "20260101-000000-digits-abcd"
    assert LOCAL.missing_processes() is None and not LOCAL.looks_like_lost_peer(RuntimeError("Gloo"))
    LOCAL.give_signs_of_life()()  # nobody to tell, nobody to watch: nothing happens
    LOCAL.watch_the_others(lambda silent: pytest.fail(f"alone, nobody falls silent: {silent}"))()
    LOCAL.barrier()


def test_a_process_of_several_passes_its_share_of_every_batch():
    assert JaxProcessGroup(_FakeClient(), 4, 0).batch_share(32) == 8


def test_only_the_distributed_package_asks_how_many_processes_there_are():
    calls = re.compile(r"processes\.(count|index)\(\)|jax\.process_(count|index)\(\)")
    outside = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "distributed" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if calls.search(line)
    ]
    assert outside == [], f"ask the ProcessGroup passed in instead: {outside}"


def test_launch_and_the_sweep_workers_share_one_supervisor_and_the_package_imports_no_command():
    graph = grimp.build_graph("dltool")
    for module in ("dltool.distributed.launcher", "dltool.sweep.workers"):
        assert "dltool.distributed.supervisor" in graph.find_modules_directly_imported_by(module)
    for module in graph.find_descendants("dltool.distributed"):
        imported = graph.find_modules_directly_imported_by(module)
        assert not [name for name in imported if name.startswith("dltool.commands")], module
