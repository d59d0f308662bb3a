"""The observer contract (dltool.observer) and the callbacks' monitor direction, taken from the metric as Keras does."""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path

import numpy as np
import pytest

from dltool.observer import Observer

PACKAGE = Path(__file__).resolve().parents[1] / "dltool"


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
    assert missing == {}, f"add these hooks to dltool.observer.Observer (a documented no-op each): {missing}"


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
    from dltool.cli_launch import WorkerLog, observer_for
    from dltool.commands.smoke import _Keeper
    from dltool.commands.sweep import _TrialObserver
    from dltool.display import TrainingDisplay

    for cls in (TrainingDisplay, WorkerLog, _TrialObserver, _Keeper):
        assert issubclass(cls, Observer), cls
    assert isinstance(observer_for(None, Observer()), Observer)


def test_a_worker_log_is_silent_until_its_run_is_known(capsys):
    from dltool.cli_launch import WorkerLog

    worker = WorkerLog(1)
    worker.on_train_begin(2, 3)
    worker.on_epoch_begin(1)
    worker.on_batch_end(1, {"loss": 0.5})
    worker.on_epoch_end({"epoch": 1, "loss": 0.5, "epoch_seconds": 0.1})
    worker.on_train_end()
    assert capsys.readouterr() == ("", "")
    with pytest.raises(AttributeError):  # no __getattr__ swallowing a misspelt hook any more
        worker.on_epoch_ends  # noqa: B018


# --------------------------------------------------------------------------- the monitor's direction
def custom_mean(y_true, y_pred):
    import keras

    return keras.ops.mean(y_pred)


@pytest.fixture(scope="module")
def compiled_model():
    """A tiny binary classifier, trained one epoch so that Keras has built its compiled metrics."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy", "mae", "mse", "auc", "precision", custom_mean])
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 3)), (rng.random((16, 1)) > 0.5).astype("float32")
    model.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    return model


@pytest.mark.parametrize(
    "monitor, expected",
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("accuracy", "max"),
        ("val_mae", "min"),
        ("auc", "max"),
        ("val_precision", "max"),  # the name has neither 'acc' nor 'auc': the old guess said min
        ("mse", "min"),
        ("custom_mean", None),  # a function of ours: no direction, Keras's own callbacks refuse it too
        ("learning_rate", None),  # not a metric: nobody knows
    ],
)
def test_the_direction_comes_from_the_metric(compiled_model, monitor, expected):
    from dltool.callbacks import monitor_direction

    assert monitor_direction(compiled_model, monitor) == expected


def test_an_explicit_mode_wins(compiled_model):
    from dltool.callbacks import monitor_direction

    assert monitor_direction(compiled_model, "val_accuracy", "min") == "min"
    assert monitor_direction(compiled_model, "learning_rate", "max") == "max"


def test_the_best_checkpoint_keeps_the_highest_precision(compiled_model, tmp_path):
    from dltool.callbacks import BestCheckpoint

    path = tmp_path / "best.keras"
    checkpoint = BestCheckpoint("val_precision", "auto", path)
    checkpoint.set_model(compiled_model)
    checkpoint.on_epoch_end(0, {"val_precision": 0.5})
    assert path.is_file() and checkpoint.best == -0.5
    path.unlink()
    checkpoint.on_epoch_end(1, {"val_precision": 0.4})  # worse: not saved
    assert not path.exists()
    checkpoint.on_epoch_end(2, {"val_precision": 0.75})
    assert path.is_file() and checkpoint.best == -0.75


def test_a_checkpoint_on_a_value_without_a_direction_asks_for_a_mode(compiled_model, tmp_path):
    from dltool.callbacks import BestCheckpoint
    from dltool.errors import ConfigError

    checkpoint = BestCheckpoint("learning_rate", "auto", tmp_path / "best.keras")
    checkpoint.set_model(compiled_model)
    with pytest.raises(ConfigError) as caught:
        checkpoint.on_epoch_end(0, {"learning_rate": 0.001})
    assert str(caught.value) == (
        "train.callbacks.checkpoint.mode: cannot tell whether 'learning_rate' improves going up or down; "
        "set mode: max or mode: min"
    )
    assert math.isinf(checkpoint.best)
