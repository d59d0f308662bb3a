"""The best hand-written Keras script for each shipped config that has data on this machine.

    KERAS_BACKEND=jax python benchmarks/plain_keras_configs.py NAME [--epochs N] [--seed S] [--mnist PATH]

NAME is a config of ``configs/`` (digits_mlp, mnist_mlp, mnist_cnn, lstm_forecaster, linear_regression,
linear_sgd, regression_mlp, smoke). Each is the experiment of that config written as a skilled Keras user
writes it: the same data, split fractions and split seed, the same preprocessing fitted on the training
split, the same layers, optimizer, loss, metrics, epochs, batch size and early stopping, and tuned: float32
inputs prepared once, ``steps_per_execution=32`` (1 on torch, which runs one batch per call). The backend is
KERAS_BACKEND's. Prints one JSON line: {"fit_seconds", "test_metric", "test_value", "backend", "epochs_run"}.

Data, as dltool prepares it (dltool/data/splits.py): the test split is
``train_test_split(test_size=fraction, random_state=seed)``, then the validation split the same way from
what is left; a time series splits in time order (``shuffle=False``); scaling and standardizing are fitted on
the training split after the validation split is taken out. MNIST comes from ``--mnist`` (default
``../shared/data/mnist.npz`` from the repository root); the seasonal series from
``configs/data/seasonal_series.csv``; the synthetic configs' data are drawn with numpy exactly as
dltool/data/synthetic.py draws them (legacy ``RandomState(seed)``: inputs, then noise).

What cannot match exactly:
- Weights: dltool seeds Keras with the config's seed; this script is unseeded unless ``--seed S`` is given
  (then ``keras.utils.set_random_seed(S)``, which imports TensorFlow even on JAX when it is installed: slower
  start and more memory, so speed comparisons leave it out). The data splits always use the config's seed.
- Standardizing: dltool takes the mean and std in float64 of the float32 inputs; so does this script, but a
  different order of float operations can move the last bit of a float32 input.
- lstm_forecaster's ``standardize_targets``: dltool appends ``Rescaling(std, mean)`` of the training targets to
  the model; so does this script (losses and metrics stay in target units).
- dltool's own bookkeeping (history, checkpoints, TensorBoard logs, plots, the run folder) has no counterpart.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
SEASONAL_SERIES = REPO / "configs" / "data" / "seasonal_series.csv"
STEPS_PER_EXECUTION = 32


@dataclass
class Splits:
    """float32 model inputs and targets of each split; no validation split: x_val and y_val are None."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray


def hold_out(x, y, fraction: float, seed: int | None, in_time_order: bool = False):
    """(x_kept, x_held_out, y_kept, y_held_out): ``fraction`` held out at random with ``seed``, or the last
    ``fraction`` of a series in time order."""
    from sklearn.model_selection import train_test_split

    if in_time_order:
        return train_test_split(x, y, test_size=fraction, shuffle=False)
    return train_test_split(x, y, test_size=fraction, random_state=seed)


def standardized(x_train: np.ndarray, *others: np.ndarray, axis=0) -> list[np.ndarray]:
    """Every array minus the training split's mean, over its std (std 0 becomes 1), fitted on ``x_train``."""
    mean = x_train.mean(axis=axis, dtype=np.float64)
    std = x_train.std(axis=axis, dtype=np.float64)
    std[std == 0] = 1.0
    return [((x - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32) for x in (x_train, *others)]


# ----------------------------------------------------------------------------- data, one function per config


def digits_data(mnist: Path) -> Splits:
    """scikit-learn's 8x8 digits / 16; test 0.2 and validation 0.1, seed 42."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32) / np.float32(16), digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = hold_out(x, y, 0.2, seed=42)
    x_train, x_val, y_train, y_val = hold_out(x_train, y_train, 0.1, seed=42)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def mnist_arrays(mnist: Path) -> tuple[np.ndarray, ...]:
    """MNIST's own splits, pixels / 255 as float32, labels int32."""
    with np.load(mnist) as data:
        x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    to_unit = np.float32(255)
    return (
        x_train.astype(np.float32) / to_unit,
        y_train.astype(np.int32),
        x_test.astype(np.float32) / to_unit,
        y_test.astype(np.int32),
    )


def mnist_mlp_data(mnist: Path) -> Splits:
    """MNIST / 255, validated on its test split (as the classic script's validation_data=(x_test, y_test))."""
    x_train, y_train, x_test, y_test = mnist_arrays(mnist)
    return Splits(x_train, y_train, x_test, y_test, x_test, y_test)


def mnist_cnn_data(mnist: Path) -> Splits:
    """MNIST / 255 with a channel axis; 10% of the training images held out for validation, seed 42."""
    x_train, y_train, x_test, y_test = mnist_arrays(mnist)
    x_train, x_val, y_train, y_val = hold_out(x_train[..., None], y_train, 0.1, seed=42)
    return Splits(x_train, y_train, x_val, y_val, x_test[..., None], y_test)


def seasonal_data(mnist: Path) -> Splits:
    """Windows of 60 days of the seasonal series, each with the next day's value; the last 20% of the windows
    test, the last 10% of the rest validation, in time order; inputs standardized on the training windows."""
    window = 60
    values = np.loadtxt(SEASONAL_SERIES, delimiter=",", skiprows=1, usecols=1, dtype=np.float64)
    count = len(values) - window  # the last window's target is the series' last day
    x = np.lib.stride_tricks.sliding_window_view(values, window)[:count, :, None]
    y = values[window:].reshape(-1, 1).astype(np.float32)
    x_train, x_test, y_train, y_test = hold_out(x.astype(np.float32), y, 0.2, None, in_time_order=True)
    x_train, x_val, y_train, y_val = hold_out(x_train, y_train, 0.1, None, in_time_order=True)
    # One mean and std for the whole series feature (per channel), as dltool standardizes a time series.
    x_train, x_val, x_test = standardized(x_train, x_val, x_test, axis=(0, 1))
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def linear_data(n_samples, n_features, weights, bias, noise: Callable, seed: int, validation) -> Splits:
    """y = x·w + b + noise, x ~ U(0, 1), drawn as dltool's synthetic source draws it; test 0.2 with ``seed``."""
    rng = np.random.RandomState(seed)
    x = rng.rand(n_samples, n_features)
    y = x @ np.broadcast_to(np.asarray(weights, dtype=np.float64), (n_features,)).reshape(-1, 1)
    y = y + bias + noise(rng, n_samples)
    x, y = x.astype(np.float32), y.astype(np.float32)
    x_train, x_test, y_train, y_test = hold_out(x, y, 0.2, seed)
    x_val = y_val = None
    if validation:
        x_train, x_val, y_train, y_val = hold_out(x_train, y_train, validation, seed)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def linear_regression_data(mnist: Path) -> Splits:
    """100 samples of y = 3x + U(0, 1), seed 0, no validation."""
    return linear_data(100, 1, 3, 0, lambda rng, n: rng.rand(n, 1), seed=0, validation=None)


def linear_sgd_data(mnist: Path) -> Splits:
    """100 samples of y = 2x + 1 + N(0, 1), seed 0, no validation."""
    return linear_data(100, 1, 2, 1, lambda rng, n: rng.randn(n, 1), seed=0, validation=None)


def regression_mlp_data(mnist: Path) -> Splits:
    """1,000 samples of y = 1.5 x0 - 2 x1 + 3 x2 + 0.5 x3 + 1 + N(0, 0.1), seed 42, validation 0.1."""
    weights = [1.5, -2.0, 3.0, 0.5]
    return linear_data(1000, 4, weights, 1, lambda rng, n: 0.1 * rng.randn(n, 1), seed=42, validation=0.1)


def iris_data(mnist: Path) -> Splits:
    """scikit-learn's iris, test 0.2 and validation 0.2 (seed 0), standardized on the training split."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target.astype(np.int32)
    x_train, x_test, y_train, y_test = hold_out(x, y, 0.2, seed=0)
    x_train, x_val, y_train, y_val = hold_out(x_train, y_train, 0.2, seed=0)
    x_train, x_val, x_test = standardized(x_train, x_val, x_test)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


# ----------------------------------------------------------------------------- models


def dense_stack(keras, input_shape, *layers):
    """keras.Sequential(Input(input_shape), *layers)."""
    return keras.Sequential([keras.Input(input_shape), *layers])


def digits_model(keras, data: Splits):
    """Dense(64, relu) -> Dropout(0.1) -> Dense(10, softmax)."""
    layers = keras.layers
    return dense_stack(
        keras, (64,), layers.Dense(64, activation="relu"), layers.Dropout(0.1), layers.Dense(10, activation="softmax")
    )


def mnist_mlp_model(keras, data: Splits):
    """Flatten -> Dense(128, relu) -> Dense(10, softmax)."""
    layers = keras.layers
    return dense_stack(
        keras, (28, 28), layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax")
    )


def mnist_cnn_model(keras, data: Splits):
    """Two Conv2D/MaxPooling2D blocks, Flatten, Dropout(0.5), Dense(10, softmax) (keras-io's convnet)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def lstm_model(keras, data: Splits):
    """LSTM(32) -> Dense(1), rescaled by the training targets' std and mean (the config's standardize_targets)."""
    y = data.y_train.astype(np.float64)
    std = y.std(axis=0)
    std[std == 0] = 1.0
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((60, 1)),
            layers.LSTM(32),
            layers.Dense(1),
            layers.Rescaling(scale=std.tolist(), offset=y.mean(axis=0).tolist()),
        ]
    )


def single_dense_model(keras, data: Splits):
    """Dense(1) on one feature: a linear regression."""
    return dense_stack(keras, (1,), keras.layers.Dense(1))


def regression_mlp_model(keras, data: Splits):
    """Dense(10, relu) -> Dense(1) on four features."""
    return dense_stack(keras, (4,), keras.layers.Dense(10, activation="relu"), keras.layers.Dense(1))


def iris_model(keras, data: Splits):
    """Dense(8, relu) -> Dense(3, softmax) on four features."""
    layers = keras.layers
    return dense_stack(keras, (4,), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax"))


# ----------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """One config's experiment: data, model and how it trains. ``test_metric``: the key of evaluate's result
    (and of dltool's metrics.json ``test``) this script reports."""

    data: Callable[[Path], Splits]
    model: Callable
    optimizer: tuple[str, float]  # (class in keras.optimizers, learning rate)
    loss: str
    metrics: list[str]
    epochs: int
    batch_size: int
    early_stopping: dict | None
    test_metric: str


SPARSE_CE = "sparse_categorical_crossentropy"
EXPERIMENTS = {
    "digits_mlp": Experiment(
        digits_data,
        digits_model,
        ("Adam", 0.001),
        SPARSE_CE,
        ["accuracy"],
        30,
        32,
        {"monitor": "val_loss", "patience": 5, "restore_best_weights": True},
        "accuracy",
    ),
    "mnist_mlp": Experiment(
        mnist_mlp_data, mnist_mlp_model, ("Adam", 0.001), SPARSE_CE, ["accuracy"], 10, 32, None, "accuracy"
    ),
    "mnist_cnn": Experiment(
        mnist_cnn_data, mnist_cnn_model, ("Adam", 0.001), SPARSE_CE, ["accuracy"], 6, 128, None, "accuracy"
    ),
    "lstm_forecaster": Experiment(
        seasonal_data,
        lstm_model,
        ("Adam", 0.003),
        "mse",
        ["mae"],
        100,
        32,
        {"monitor": "val_loss", "patience": 10, "restore_best_weights": True},
        "mae",
    ),
    "linear_regression": Experiment(
        linear_regression_data, single_dense_model, ("Adam", 0.001), "mse", [], 1000, 32, None, "loss"
    ),
    "linear_sgd": Experiment(linear_sgd_data, single_dense_model, ("SGD", 0.01), "mse", [], 100, 10, None, "loss"),
    "regression_mlp": Experiment(
        regression_mlp_data, regression_mlp_model, ("Adam", 0.001), "mse", ["mae"], 100, 32, None, "mae"
    ),
    "smoke": Experiment(iris_data, iris_model, ("Adam", 0.02), SPARSE_CE, ["accuracy"], 10, 16, None, "accuracy"),
}


def train_and_test(experiment: Experiment, data: Splits, epochs: int, seed: int | None = None) -> dict:
    """Compile, fit (timed) and evaluate; {"fit_seconds", "test_metric", "test_value", "backend", "epochs_run"}."""
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    model = experiment.model(keras, data)
    name, learning_rate = experiment.optimizer
    model.compile(
        optimizer=getattr(keras.optimizers, name)(learning_rate=learning_rate),
        loss=experiment.loss,
        metrics=experiment.metrics,
        steps_per_execution=1 if backend == "torch" else STEPS_PER_EXECUTION,
    )
    callbacks = [keras.callbacks.EarlyStopping(**experiment.early_stopping)] if experiment.early_stopping else []
    validation = (data.x_val, data.y_val) if data.x_val is not None else None
    start = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=experiment.batch_size,
        epochs=epochs,
        validation_data=validation,
        callbacks=callbacks,
        verbose=0,
    )
    fit_seconds = time.perf_counter() - start
    # Evaluation keeps no gradients: a larger batch is faster and gives the same means (dltool uses at least 256).
    scores = model.evaluate(
        data.x_test, data.y_test, batch_size=max(experiment.batch_size, 256), verbose=0, return_dict=True
    )
    return {
        "fit_seconds": round(fit_seconds, 3),
        "test_metric": experiment.test_metric,
        "test_value": round(float(scores[experiment.test_metric]), 6),
        "backend": backend,
        "epochs_run": len(history.history.get("loss", [])),
    }


def main(argv: list[str] | None = None) -> None:
    """Run one config's experiment and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(EXPERIMENTS), help="the config's name in configs/ (without .yaml)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of training (default: the config's)")
    parser.add_argument("--seed", type=int, default=None, help="keras.utils.set_random_seed (default: unseeded)")
    parser.add_argument("--mnist", default=str(DEFAULT_MNIST), help=f"MNIST .npz (default {DEFAULT_MNIST})")
    args = parser.parse_args(argv)
    experiment = EXPERIMENTS[args.name]
    data = experiment.data(Path(args.mnist))
    epochs = experiment.epochs if args.epochs is None else args.epochs
    print(json.dumps(train_and_test(experiment, data, epochs, args.seed)))


if __name__ == "__main__":
    main()
