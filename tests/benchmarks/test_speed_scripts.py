"""The speed section's scripts (issue 24): plain_keras_configs.py trains what each config trains, on the same data,
and the harness's helpers compute the section's ratios from canned figures. Only the model test imports Keras."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import plain_keras_configs as plain  # noqa: E402
import run_benchmarks as harness  # noqa: E402

MNIST_CONFIGS = {"mnist_mlp", "mnist_cnn"}


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    """An mnist.npz of 200 training and 50 test images of random pixels (uint8, as the real one)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 200, dtype=np.uint8),
        x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 50, dtype=np.uint8),
    )
    return path


def dltool_config(name: str, mnist: Path):
    from dltool.config import load_config

    return load_config(REPO / "configs" / f"{name}.yaml", [f"data.path={mnist}"] if name in MNIST_CONFIGS else [])


@pytest.mark.parametrize("name", sorted(plain.EXPERIMENTS))
def test_the_script_trains_on_exactly_the_data_dltool_prepares(name, tiny_mnist, monkeypatch):
    from dltool.data import prepare_data

    monkeypatch.chdir(REPO)  # configs name their CSV relative to the repository root
    prepared = prepare_data(dltool_config(name, tiny_mnist))
    splits = plain.EXPERIMENTS[name].data(tiny_mnist)

    for split in ("train", "val", "test"):
        theirs, ours = getattr(prepared, f"x_{split}"), getattr(splits, f"x_{split}")
        assert (theirs is None) == (ours is None), split
        if ours is None:
            continue
        assert ours.dtype == np.float32
        # dltool adds mnist_cnn's channel axis in the model (a Reshape layer); the script adds it to the data.
        np.testing.assert_array_equal(theirs.reshape(ours.shape), ours)
        labels = getattr(prepared, f"y_{split}")
        np.testing.assert_array_equal(
            np.asarray(labels).reshape(getattr(splits, f"y_{split}").shape), getattr(splits, f"y_{split}")
        )


@pytest.mark.parametrize("name", sorted(plain.EXPERIMENTS))
def test_the_script_trains_as_the_config_says(name, tiny_mnist):
    config = dltool_config(name, tiny_mnist)
    experiment = plain.EXPERIMENTS[name]
    early = config.train.callbacks.early_stopping

    assert (experiment.epochs, experiment.batch_size) == (config.train.epochs, config.train.batch_size)
    assert (experiment.loss, experiment.metrics) == (config.train.loss, list(config.train.metrics))
    assert experiment.optimizer[0].lower() == config.train.optimizer.name
    assert experiment.optimizer[1] == (config.train.optimizer.model_extra or {}).get("learning_rate", 0.001)
    if early is None:
        assert experiment.early_stopping is None
    else:
        assert experiment.early_stopping == {
            "monitor": early.monitor,
            "patience": early.patience,
            "restore_best_weights": early.restore_best_weights,
        }


def test_every_shipped_config_is_measured_or_says_why_not(tiny_mnist):
    shipped = {path.stem for path in (REPO / "configs").glob("*.yaml")}

    assert shipped == set(plain.EXPERIMENTS) | set(harness.NO_LOCAL_DATA)
    assert set(plain.EXPERIMENTS) == set(harness.QUICK_EPOCHS)
    assert harness.not_measured_reason("cifar10_cnn", tiny_mnist).startswith("not measured: no local data")
    assert harness.not_measured_reason("mnist_cnn", tiny_mnist.with_name("absent.npz")).startswith(
        "not measured: MNIST not found"
    )
    assert harness.not_measured_reason("smoke", tiny_mnist) is None


@pytest.mark.slow
def test_the_scripts_models_have_dltools_parameter_counts(tiny_mnist):
    import keras

    sys.path.insert(0, str(REPO / "benchmarks"))
    from plain_keras_convnet import convnet

    from dltool.training.model import build_model

    for name, experiment in plain.EXPERIMENTS.items():
        config = dltool_config(name, tiny_mnist)
        theirs = build_model(config)  # lstm_forecaster's target Rescaling, appended by dltool, has no weights
        ours = experiment.model(keras, experiment.data(tiny_mnist))
        assert ours.count_params() == theirs.count_params(), name
        assert ours.output_shape == theirs.output_shape, name
    assert convnet(keras).count_params() == build_model(dltool_config("mnist_cnn", tiny_mnist)).count_params() == 34826


def run(wall, fit=None, rc=0, **extra) -> dict:
    return {"wall": wall, "fit_seconds": fit, "rc": rc, **extra}


def test_the_quickstart_ratio_is_the_whole_wall_over_fit_plus_import():
    whole = [run(6.0, fit=2.0), run(5.0, fit=1.0), run(9.0, fit=3.0, rc=1)]
    imports = [run(3.0), run(4.0), run(3.0)]

    ratio, text = harness.overhead_ratio(whole, imports)

    assert ratio == pytest.approx(5.5 / (1.5 + 3.0))  # medians of the finished runs
    assert text == "1.22× [1.00–1.20]"  # per repeat: 6 / (2 + 3) and 5 / (1 + 4)
    assert harness.overhead_ratio([run(5.0, rc=1)], imports) == (None, "n/a")


def test_the_faster_backend_is_the_finished_one_with_the_smaller_wall():
    assert harness.fastest_backend({"tensorflow": run(9.0), "jax": run(4.0)}) == "jax"
    assert harness.fastest_backend({"tensorflow": run(9.0), "jax": run(4.0, rc=1)}) == "tensorflow"
    assert harness.fastest_backend({}) is None


def test_phases_tests_and_points_read_canned_figures():
    runs = [
        run(10.0, phase_seconds={"start_up": 2.0, "fit": 5.0}),
        run(12.0, phase_seconds={"start_up": 4.0, "fit": 6.0, "plots": 0.5}),
        run(11.0, rc=1, phase_seconds={"start_up": 99.0}),
    ]

    assert harness.phase_rows(runs) == [
        ["start_up", "3.00 s [2.00–4.00]"],
        ["fit", "5.50 s [5.00–6.00]"],
        ["plots", "0.50 s"],
    ]
    assert harness.points_apart(0.981, 0.978) == pytest.approx(0.3)
    assert harness.points_apart(None, 0.978) is None
    assert harness.test_figure(run(1.0, test_metrics={"mae": 0.25, "loss": 0.1}), "mae") == 0.25
    assert harness.test_figure(run(1.0, test_value=0.5, test_metric="mae"), "mae") == 0.5
    assert harness.metric_label("loss", "mse") == "mse" and harness.metric_label("mae", "mse") == "mae"


def test_a_config_file_says_its_backend_and_precision_or_gets_the_defaults(tmp_path):
    bare, chosen = tmp_path / "bare.yaml", tmp_path / "chosen.yaml"
    bare.write_text("name: bare\nseed: 7\ntrain: {loss: mse}\n")
    chosen.write_text("name: chosen\nbackend: jax\ntrain: {loss: mse, precision: auto, epochs: 3}\n")

    assert harness.shipped_settings(bare) == {
        "backend": "tensorflow",
        "precision": "float32",
        "seed": 7,
        "epochs": 10,
        "loss": "mse",
    }
    assert harness.shipped_settings(chosen) == {
        "backend": "jax",
        "precision": "auto",
        "seed": 42,
        "epochs": 3,
        "loss": "mse",
    }


def test_a_quick_pass_trains_every_conv_net_one_epoch():
    assert harness.QUICK_EPOCHS["mnist_cnn"] == 1
    assert all(epochs <= plain.EXPERIMENTS[name].epochs for name, epochs in harness.QUICK_EPOCHS.items())
    assert harness.mnist_path(Namespace(mnist="/abs/mnist.npz")) == Path("/abs/mnist.npz")
    assert harness.mnist_path(Namespace(mnist="data/m.npz")) == (REPO / "data/m.npz").resolve()
