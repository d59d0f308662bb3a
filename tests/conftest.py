"""Fixtures shared across test modules: tiny trained runs, made once per session; and the quick loop's guard."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from e2e_support import (  # noqa: E402
    IRIS_CONFIG,
    LINEAR_CONFIG,
    backbone_config,
    save_backbone_weights,
    train_in,
    write_photos,
)

# Fixtures that train a model: a test using one is slow (`pytest -m "not slow"` is the quick loop).
TRAINED_RUN_FIXTURES = {
    "iris_run",
    "linear_run",
    "csv_run",
    "image_run",
    "cnn_run",
    "shapes_run",
    "text_run",
    "forecast_run",
    "two_runs",
    "backbone_run",
}


def pytest_collection_modifyitems(items):
    """Mark every test that uses a trained-run fixture as slow, so the marker cannot be forgotten."""
    for item in items:
        if TRAINED_RUN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _train(tmp_path_factory, name: str, text: str, overrides=()):
    from dltool.commands.train import train
    from dltool.config import config_from_text

    root = tmp_path_factory.mktemp(name)
    config = config_from_text(text, source=f"{name}.yaml", overrides=list(overrides))
    return train(config, runs_root=root / "runs")


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory):
    """A COMPLETED 5-epoch iris classifier run (sklearn data, standardized)."""
    return _train(tmp_path_factory, "iris", IRIS_CONFIG)


@pytest.fixture(scope="session")
def linear_run(tmp_path_factory):
    """A COMPLETED 5-epoch linear regression run on synthetic data."""
    return _train(tmp_path_factory, "linear", LINEAR_CONFIG)


@pytest.fixture(scope="session")
def backbone_run(tmp_path_factory):
    """A COMPLETED run with a MobileNetV3Small backbone from a weights file (weights: PATH) on 18 32x32 photos of
    3 classes: 1 epoch frozen, 1 with its top 10 layers fine-tuned (e2e_support.BACKBONE_CONFIG)."""
    root = tmp_path_factory.mktemp("backbone")
    weights = save_backbone_weights(root / "mobilenet_v3_small.weights.h5")
    return train_in(root, backbone_config(write_photos(root / "photos"), weights))


# The quick loop (`pytest -m "not slow"`) stays under 30 s only while none of its tests imports Keras: importing
# TensorFlow alone takes 5-8 s. The first quick test after which Keras is loaded fails the session, named.
_first_keras_test: list[str] = []


def _quick_loop(config) -> bool:
    return (config.getoption("markexpr") or "").replace(" ", "") == "notslow"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    if not _first_keras_test and "keras" in sys.modules and _quick_loop(item.config):
        _first_keras_test.append(item.nodeid)


def pytest_sessionfinish(session):
    if _first_keras_test and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _first_keras_test:
        terminalreporter.write_line(
            f"FAILED the quick loop: Keras was imported by {_first_keras_test[0]} (or, were it the first test, at "
            "collection); mark that test @pytest.mark.slow  # imports Keras and TensorFlow (seconds)",
            red=True,
        )
