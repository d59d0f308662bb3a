"""The observer contract (dltool.training.observer): every hook a no-op in the base, every observer a subclass."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from dltool.training.observer import Observer

PACKAGE = Path(__file__).resolve().parents[2] / "dltool"


def _receiver_name(node: ast.expr) -> str:
    """'observer' for observer.x, self.observer.x and self.display.x (WorkerLog's inner observer)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _hooks_called() -> dict[str, list[str]]:
    """{hook: [where]} for every `<...observer>.on_x(...)` call in dltool/ (and WorkerLog's `self.display.on_x`)."""
    called: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = _receiver_name(node.func.value)
            if node.func.attr.startswith("on_") and (receiver.endswith("observer") or receiver == "display"):
                called.setdefault(node.func.attr, []).append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return called


def test_every_hook_the_code_calls_is_an_observer_method():
    called = _hooks_called()
    assert {"on_run_created", "on_epoch_end", "on_train_end"} <= set(called)  # the walk finds the calls
    missing = {hook: where for hook, where in called.items() if not callable(getattr(Observer, hook, None))}
    assert missing == {}, f"add these hooks to dltool.training.observer.Observer (a documented no-op each): {missing}"


def test_the_base_hooks_do_nothing_and_are_documented():
    hooks = [name for name in vars(Observer) if name.startswith("on_")]
    assert set(_hooks_called()) <= set(hooks)
    observer = Observer()
    for name in hooks:
        method = getattr(Observer, name)
        assert method.__doc__, f"Observer.{name} has no docstring"
        body = ast.parse(inspect.getsource(method).strip()).body[0].body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), f"Observer.{name} must do nothing but document"
        arguments = [None] * (len(inspect.signature(method).parameters) - 1)
        assert getattr(observer, name)(*arguments) is None


def test_no_code_asks_whether_an_observer_is_there_or_has_a_hook():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "hasattr(observer" in line or "observer is not None" in line or "def __getattr__(self" in line
    ]
    assert offenders == []


def test_every_observer_subclasses_the_base():
    from dltool.cli.display.training import TrainingDisplay
    from dltool.cli.launch import WorkerLog, observer_for
    from dltool.commands.smoke import _Keeper
    from dltool.sweep.run import _TrialObserver
    from dltool.tracking.tracker import MlflowTracker
    from dltool.training.observer import Observers

    for cls in (TrainingDisplay, WorkerLog, _TrialObserver, _Keeper, MlflowTracker, Observers):
        assert issubclass(cls, Observer), cls
    assert isinstance(observer_for(None, Observer()), Observer)


def test_a_worker_log_is_silent_until_its_run_is_known(capsys):
    from dltool.cli.launch import WorkerLog

    worker = WorkerLog(1)
    worker.on_train_begin(2, 3)
    worker.on_epoch_begin(1)
    worker.on_batch_end(1, {"loss": 0.5})
    worker.on_epoch_end({"epoch": 1, "loss": 0.5, "epoch_seconds": 0.1})
    worker.on_train_end()
    assert capsys.readouterr() == ("", "")
    with pytest.raises(AttributeError):  # no __getattr__ swallowing a misspelt hook any more
        worker.on_epoch_ends  # noqa: B018
