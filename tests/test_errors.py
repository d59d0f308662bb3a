"""dltool.errors: the exception tree, ConfigError's one-line format, and did-you-mean."""

from __future__ import annotations

import pytest

from dltool.errors import (
    ConfigError,
    DataError,
    DltoolError,
    InputError,
    RunNotFoundError,
    RunStateError,
    TrainingError,
    closest,
    did_you_mean,
)

OPTIMIZERS = ["adadelta", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "nadam", "rmsprop", "sgd"]
LAYERS = ["Dense", "Dropout", "Flatten", "Conv2D", "LSTM", "BatchNormalization"]


# --------------------------------------------------------------------------- closest / did_you_mean
@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("adma", OPTIMIZERS, "adam"),  # transposition of neighbours counts as one edit
        ("sdg", OPTIMIZERS, "sgd"),
        ("adan", OPTIMIZERS, "adam"),  # substitution
        ("adamm", OPTIMIZERS, "adam"),  # insertion
        ("rmsprp", OPTIMIZERS, "rmsprop"),  # deletion
        ("dense", LAYERS, "Dense"),  # case only
        ("DENSE", LAYERS, "Dense"),
        ("Dens", LAYERS, "Dense"),
        ("Dropuot", LAYERS, "Dropout"),
        ("BatchNormalisation", LAYERS, "BatchNormalization"),
        ("unit", ["units", "activation", "use_bias"], "units"),
        ("learnin_rate", ["learning_rate", "momentum", "nesterov"], "learning_rate"),
        ("rleu", ["relu", "sigmoid", "softmax", "tanh"], "relu"),
        ("synthetc", ["keras", "npz", "npy", "csv", "sklearn", "synthetic"], "synthetic"),
        ("traim", ["name", "seed", "data", "model", "train"], "train"),
    ],
)
def test_closest_finds_the_intended_word(word, choices, expected):
    assert closest(word, choices) == expected


@pytest.mark.parametrize(
    ("word", "choices"),
    [
        ("xyz", OPTIMIZERS),
        ("banana", LAYERS),
        ("epoch", ["name", "seed", "data", "model", "train"]),
        ("q", ["adam", "sgd"]),
        ("anything", []),
    ],
)
def test_closest_returns_none_when_nothing_is_close(word, choices):
    assert closest(word, choices) is None


def test_closest_accepts_any_iterable():
    assert closest("adma", iter(OPTIMIZERS)) == "adam"
    assert closest("adma", {"adam": 1, "sgd": 2}) == "adam"


def test_did_you_mean_formats_the_hint():
    assert did_you_mean("adma", OPTIMIZERS) == "; did you mean 'adam'?"
    assert did_you_mean("unit", ["units"]) == "; did you mean 'units'?"


def test_did_you_mean_fixes_case():
    assert did_you_mean("dense", LAYERS) == "; did you mean 'Dense'?"


@pytest.mark.parametrize(
    ("word", "choices"),
    [("xyz", OPTIMIZERS), ("adam", OPTIMIZERS), ("anything", []), ("Dense", LAYERS)],
)
def test_did_you_mean_is_empty_when_nothing_close_or_exact(word, choices):
    assert did_you_mean(word, choices) == ""


# --------------------------------------------------------------------------- ConfigError
def test_config_error_full_format():
    err = ConfigError(
        "unknown argument 'unit' for Dense; did you mean 'units'?",
        source="configs/bad.yaml",
        path="model.layers[1].Dense.unit",
        line=14,
    )
    assert str(err) == (
        "configs/bad.yaml:14: model.layers[1].Dense.unit: unknown argument 'unit' for Dense; did you mean 'units'?"
    )
    assert err.detail == "unknown argument 'unit' for Dense; did you mean 'units'?"
    assert (err.source, err.path, err.line) == ("configs/bad.yaml", "model.layers[1].Dense.unit", 14)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "boom"),
        ({"source": "a.yaml"}, "a.yaml: boom"),
        ({"source": "a.yaml", "line": 3}, "a.yaml:3: boom"),
        ({"path": "train.epochs"}, "train.epochs: boom"),
        ({"source": "a.yaml", "path": "train.epochs"}, "a.yaml: train.epochs: boom"),
        ({"line": 3, "path": "train.epochs"}, "train.epochs: boom"),  # a line without a file is not shown
    ],
)
def test_config_error_partial_locations(kwargs, expected):
    assert str(ConfigError("boom", **kwargs)) == expected


def test_config_error_located_fills_source_and_line():
    err = ConfigError("expected an integer >= 1, received 0", path="train.epochs")
    located = err.located("c.yaml", lambda path: {"train.epochs": 7}.get(path))
    assert str(located) == "c.yaml:7: train.epochs: expected an integer >= 1, received 0"
    assert located is not err and err.line is None


def test_config_error_located_keeps_a_known_line_and_source():
    err = ConfigError("x", source="orig.yaml", path="a", line=2)
    assert str(err.located(None, lambda path: 99)) == "orig.yaml:2: a: x"


def test_exception_tree_and_exit_codes():
    for cls in (ConfigError, DataError, InputError, RunNotFoundError, RunStateError, TrainingError):
        assert issubclass(cls, DltoolError)
    assert issubclass(ConfigError, ValueError)
    assert ConfigError("x").exit_code == 2
    assert DataError("x").exit_code == 2
    assert TrainingError("x").exit_code == 1
    assert str(DataError("f.csv:3: bad")) == "f.csv:3: bad"
