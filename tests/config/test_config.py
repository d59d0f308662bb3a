"""dltool.config: valid configs, defaults, --set overrides, round trip, schema, and a corpus of bad configs.

Pure YAML and pydantic: no TensorFlow, milliseconds per test (one subprocess test checks that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dltool.config import (
    ExperimentConfig,
    config_from_text,
    config_to_dict,
    config_to_yaml,
    json_schema,
    load_config,
    resolve_paths,
)
from dltool.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

# Line numbers matter: the corpus below names them.
BASE = """\
name: bad
seed: 0
data:
  source: synthetic
  n_samples: 20
  test: 0.2
  validation: 0.1
model:
  input_shape: [1]
  layers:
    - Dense: {units: 4, activation: relu}
    - Dense:
        units: 1
train:
  optimizer: adam
  loss: mse
  metrics: [mae]
  epochs: 5
  batch_size: 8
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(*pairs: str) -> str:
    """BASE with each (old, new) replacement applied once; the old text must be there."""
    text = BASE
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# --------------------------------------------------------------------------- valid configs
def test_base_config_is_valid(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert isinstance(config, ExperimentConfig)
    assert config.model.layers[1] == {"Dense": {"units": 1}}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.name and config.model.layers
    assert config._source == str(path)


def test_shipped_configs_exist():
    assert {p.name for p in SHIPPED_CONFIGS} >= {"smoke.yaml", "linear_regression.yaml", "mnist_mlp.yaml"}


def test_defaults_are_filled_in(tmp_path):
    text = "name: minimal\ndata: {source: sklearn, name: iris}\nmodel: {input_shape: 4, layers: [Flatten, {Dense: {units: 3}}]}\ntrain: {loss: sparse_categorical_crossentropy}\n"
    config = load_config(write(tmp_path, text))
    assert config.seed == 42
    assert config.model.input_shape == [4]  # an int is a shape of one axis
    data = config.data
    assert (data.test, data.validation, data.scale, data.standardize, data.split_seed) == (
        "auto",
        0.1,
        None,
        False,
        None,
    )
    train = config.train
    assert train.optimizer.name == "adam" and train.optimizer.model_extra == {}
    assert (train.epochs, train.batch_size, train.shuffle, train.steps_per_execution, train.jit_compile) == (
        10,
        32,
        True,
        32,
        "auto",
    )
    assert train.metrics == []
    assert (train.callbacks.early_stopping, train.callbacks.reduce_lr_on_plateau, train.callbacks.checkpoint) == (
        None,
        None,
        None,
    )
    assert config.is_classifier


def test_shorthands_are_expanded(tmp_path):
    text = edit(
        "  optimizer: adam\n",
        "  optimizer: ADAM\n",
        "  metrics: [mae]\n",
        "  metrics: mae\n  callbacks: {early_stopping: true, checkpoint: false}\n",
    )
    train = load_config(write(tmp_path, text)).train
    assert train.optimizer.name == "adam"  # case normalised
    assert train.metrics == ["mae"]
    assert train.callbacks.early_stopping.patience == 3 and train.callbacks.early_stopping.monitor == "val_loss"
    assert train.callbacks.checkpoint is None


def test_synthetic_defaults(tmp_path):
    data = load_config(write(tmp_path, BASE)).data
    assert (data.generator, data.n_features, data.weights, data.bias) == ("linear", 1, 1.0, 0.0)
    assert (data.noise.distribution, data.noise.std) == ("normal", 1.0)
    assert data.seed is None


# --------------------------------------------------------------------------- overrides
def test_set_optimizer_mapping(tmp_path):
    config = load_config(write(tmp_path, BASE), ["train.optimizer={name: sgd, learning_rate: 0.1}"])
    assert config.train.optimizer.name == "sgd"
    assert config.train.optimizer.model_extra == {"learning_rate": 0.1}


def test_set_layer_argument(tmp_path):
    config = load_config(write(tmp_path, BASE), ["model.layers[1].Dense.units=64"])
    assert config.model.layers == [{"Dense": {"units": 4, "activation": "relu"}}, {"Dense": {"units": 64}}]


def test_set_values_are_yaml_and_apply_in_order(tmp_path):
    config = load_config(
        write(tmp_path, BASE),
        [
            "train.epochs=3",
            "train.epochs=7",
            "data.validation=null",
            "train.metrics=[mae, mse]",
            "data.noise.std=0.5",
            "name=from-set",
            "model.layers[0].Dense.activation=tanh",
        ],
    )
    assert config.train.epochs == 7
    assert config.data.validation is None
    assert config.train.metrics == ["mae", "mse"]
    assert config.data.noise.std == 0.5
    assert config.name == "from-set"
    assert config.model.layers[0] == {"Dense": {"units": 4, "activation": "tanh"}}


def test_set_creates_missing_mappings(tmp_path):
    config = load_config(write(tmp_path, BASE), ["train.callbacks.early_stopping.patience=9"])
    assert config.train.callbacks.early_stopping.patience == 9


def test_set_on_a_mnist_config_gives_a_local_path(tmp_path):
    config = load_config(REPO / "configs" / "mnist_mlp.yaml", [f"data.path={tmp_path / 'mnist.npz'}"])
    assert config.data.path == str(tmp_path / "mnist.npz")


def test_set_learning_rate_on_a_digits_config():
    config = load_config(REPO / "configs" / "digits_mlp.yaml", ["train.optimizer.learning_rate=0.1"])
    assert config.train.optimizer.name == "adam"
    assert config.train.optimizer.model_extra == {"learning_rate": 0.1}


def test_set_learning_rate_on_optimizer_shorthand():
    config = load_config(REPO / "configs" / "linear_regression.yaml", ["train.optimizer.learning_rate=0.1"])
    assert config.train.optimizer.name == "adam"
    assert config.train.optimizer.model_extra == {"learning_rate": 0.1}


def test_set_below_a_scalar_is_blamed_on_the_set(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE), ["name.x=1"])
    assert str(info.value).startswith("--set name.x=1: ")


def test_config_overrides_from_text_have_no_file():
    config = config_from_text(BASE, overrides=["seed=5"])
    assert config.seed == 5 and config._source == "<config>"


# --------------------------------------------------------------------------- round trip, schema, paths
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_resolved_config_round_trips(path):
    config = load_config(path)
    text = config_to_yaml(config)
    again = config_from_text(text, source="resolved.yaml")
    assert config_to_dict(again) == config_to_dict(config)
    assert again.model_dump() == config.model_dump()
    assert config_to_yaml(again) == text


def test_resolved_config_has_every_default(tmp_path):
    resolved = config_to_dict(load_config(write(tmp_path, BASE)))
    assert resolved["train"]["steps_per_execution"] == 32
    assert resolved["train"]["optimizer"] == {"name": "adam"}
    assert resolved["data"]["noise"] == {"distribution": "normal", "std": 1.0, "low": 0.0, "high": 1.0}
    assert "seed" in resolved["data"] and "split_seed" in resolved["data"]


def test_resolve_paths_makes_data_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_from_text(edit("  source: synthetic\n  n_samples: 20\n", "  source: npz\n  path: d/x.npz\n"))
    resolved = resolve_paths(config)
    assert resolved.data.path == str(tmp_path / "d" / "x.npz")
    assert config.data.path == "d/x.npz"


def test_json_schema():
    schema = json_schema()
    assert isinstance(schema, dict)
    assert {"name", "seed", "data", "model", "train"} <= set(schema["properties"])
    assert set(schema["required"]) >= {"name", "data", "model", "train"}
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "dltool experiment"
    json.dumps(schema)  # plain data


# --------------------------------------------------------------------------- the source registry
def test_every_registered_source_is_a_data_config_with_a_loader():
    import importlib
    import typing

    from dltool.config import DATA_SOURCES, DataConfig, source_entry

    union = typing.get_args(typing.get_args(DataConfig)[0])
    assert DATA_SOURCES == [
        "keras",
        "npz",
        "npy",
        "csv",
        "parquet",
        "sklearn",
        "synthetic",
        "images",
        "text",
        "timeseries",
    ]
    assert [source_entry(name).config for name in DATA_SOURCES] == list(union)
    for name in DATA_SOURCES:
        entry = source_entry(name)
        for reference in filter(None, (entry.loader, entry.preprocessing, entry.streamer, entry.stream_auto)):
            module, _, function = reference.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), reference
        # A streamed source says so in its config: data.stream (auto, true, false) chooses.
        assert (entry.streamer is not None) == ("stream" in entry.config.model_fields), name
        assert (entry.streamer is None) == (entry.stream_auto is None), name


def test_a_source_is_registered_once():
    from dltool.config import register_source
    from dltool.config.data import CsvData

    with pytest.raises(ValueError, match="data source 'csv' is registered twice"):
        register_source(loader="elsewhere:load")(CsvData)


# --------------------------------------------------------------------------- the exact design example
def test_design_example_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    text = "# a comment\n" + BASE.replace("        units: 1\n", "        unit: 1\n")
    assert text.splitlines()[13] == "        unit: 1"
    write(tmp_path / "configs", text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_config("configs/bad.yaml")
    assert str(info.value) == (
        "configs/bad.yaml:14: model.layers[1].Dense.unit: unknown argument 'unit' for Dense; did you mean 'units'?"
    )
    assert (info.value.line, info.value.path, info.value.source) == (
        14,
        "model.layers[1].Dense.unit",
        "configs/bad.yaml",
    )


# --------------------------------------------------------------------------- corpus of malformed configs
# (id, text, line, key path, phrase); line None means "FILE: " without a line; path None means none shown.
CORPUS = [
    (
        "layer-arg-typo",
        edit("        units: 1\n", "        unit: 1\n"),
        13,
        "model.layers[1].Dense.unit",
        "unknown argument 'unit' for Dense; did you mean 'units'?",
    ),
    ("epochs-word", edit("epochs: 5", "epochs: five"), 18, "train.epochs", "expected an integer >= 1, received 'five'"),
    ("epochs-zero", edit("epochs: 5", "epochs: 0"), 18, "train.epochs", "expected an integer >= 1, received 0"),
    ("epochs-fraction", edit("epochs: 5", "epochs: 2.5"), 18, "train.epochs", "expected an integer >= 1, received 2.5"),
    ("epochs-bool", edit("epochs: 5", "epochs: true"), 18, "train.epochs", "expected an integer >= 1, received True"),
    (
        "batch-negative",
        edit("batch_size: 8", "batch_size: -1"),
        19,
        "train.batch_size",
        "expected an integer >= 1, received -1",
    ),
    (
        "validation-1.5",
        edit("validation: 0.1", "validation: 1.5"),
        7,
        "data.validation",
        "expected a fraction between 0 and 1 (exclusive) or 'test' or null, received 1.5",
    ),
    (
        "test-zero",
        edit("test: 0.2", "test: 0"),
        6,
        "data.test",
        "expected a fraction between 0 and 1 (exclusive) or 'auto' or 'builtin', received 0",
    ),
    ("test-word", edit("test: 0.2", "test: half"), 6, "data.test", "received 'half'"),
    ("top-level-typo", BASE + "trian: {}\n", 20, "trian", "unknown key 'trian'; did you mean 'train'?"),
    (
        "top-level-unknown",
        BASE + "epochs: 3\n",
        20,
        "epochs",
        "unknown key 'epochs'; expected one of: name, seed, backend, data, model, train",
    ),
    (
        "data-key-typo",
        edit("  n_samples: 20\n", "  n_sample: 20\n"),
        5,
        "data.n_sample",
        "unknown key 'n_sample'; did you mean 'n_samples'?",
    ),
    (
        "train-key-typo",
        edit("  epochs: 5\n", "  epoch: 5\n"),
        18,
        "train.epoch",
        "unknown key 'epoch'; did you mean 'epochs'?",
    ),
    (
        "callback-typo",
        edit("  batch_size: 8\n", "  callbacks: {early_stoping: true}\n"),
        19,
        "train.callbacks.early_stoping",
        "unknown key 'early_stoping'; did you mean 'early_stopping'?",
    ),
    (
        "callback-arg-typo",
        edit("  batch_size: 8\n", "  callbacks: {early_stopping: {patince: 1}}\n"),
        19,
        "train.callbacks.early_stopping.patince",
        "unknown key 'patince'; did you mean 'patience'?",
    ),
    (
        "unknown-source",
        edit("source: synthetic", "source: synthetc"),
        4,
        "data.source",
        "unknown data source 'synthetc'; expected one of keras, npz, npy, csv, parquet, sklearn, synthetic, images, text, timeseries; did you mean 'synthetic'?",
    ),
    (
        "missing-source",
        edit("  source: synthetic\n", "  generator: linear\n"),
        3,
        "data",
        "missing key 'source'; expected one of keras, npz, npy, csv, parquet, sklearn, synthetic",
    ),
    (
        "keras-dataset-typo",
        edit("source: synthetic\n  n_samples: 20", "source: keras\n  name: mnsit"),
        5,
        "data.name",
        "expected one of 'mnist', 'fashion_mnist', 'cifar10', 'cifar100' or 'boston_housing', received 'mnsit'; did you mean 'mnist'?",
    ),
    (
        "sklearn-dataset-typo",
        edit("source: synthetic\n  n_samples: 20", "source: sklearn\n  name: irs"),
        5,
        "data.name",
        "received 'irs'; did you mean 'iris'?",
    ),
    (
        "npz-missing-path",
        edit("source: synthetic\n  n_samples: 20", "source: npz\n  scale: 2"),
        3,
        "data.path",
        "missing required key 'path'",
    ),
    (
        "csv-missing-target",
        edit("source: synthetic\n  n_samples: 20", "source: csv\n  path: a.csv"),
        3,
        "data.target",
        "missing required key 'target'",
    ),
    (
        "csv-delimiter",
        edit(
            "source: synthetic\n  n_samples: 20", "source: csv\n  path: a.csv\n  target: y\n  delimiter: ';;'"
        ).replace("  test: 0.2\n  validation: 0.1\n", ""),
        7,
        "data.delimiter",
        "received ';;'",
    ),
    (
        "layer-class-typo",
        edit("    - Dense: {units: 4", "    - Dens: {units: 4"),
        11,
        "model.layers[0]",
        "unknown layer class 'Dens'; did you mean 'Dense'? (any class of keras.layers)",
    ),
    (
        "layer-class-case",
        edit("    - Dense: {units: 4, activation: relu}\n", "    - dense\n"),
        11,
        "model.layers[0]",
        "unknown layer class 'dense'; did you mean 'Dense'?",
    ),
    (
        "activation-typo",
        edit("activation: relu", "activation: rleu"),
        11,
        "model.layers[0].Dense.activation",
        "unknown activation 'rleu'; did you mean 'relu'?",
    ),
    (
        "layer-missing-required",
        edit("{units: 4, activation: relu}", "{activation: relu}"),
        11,
        "model.layers[0].Dense",
        "Dense needs argument 'units', as in {Dense: {units: ...}}",
    ),
    (
        "layer-input-shape",
        edit("{units: 4, activation: relu}", "{units: 4, input_shape: [1]}"),
        11,
        "model.layers[0].Dense.input_shape",
        "'input_shape' does not belong to a layer here; set model.input_shape instead",
    ),
    (
        "nested-layer-typo",
        edit("    - Dense: {units: 4, activation: relu}\n", "    - Bidirectional: {layer: {LSTM: {unit: 3}}}\n"),
        11,
        "model.layers[0].Bidirectional.layer.LSTM.unit",
        "unknown argument 'unit' for LSTM; did you mean 'units'?",
    ),
    (
        "layer-two-keys",
        edit("    - Dense: {units: 4, activation: relu}\n", "    - {Dense: {units: 4}, Dropout: {rate: 0.1}}\n"),
        11,
        "model.layers[0]",
        "expected one layer class per list item such as {Dense: {units: 10}}, received keys ['Dense', 'Dropout']",
    ),
    (
        "layers-empty",
        edit(
            "  layers:\n    - Dense: {units: 4, activation: relu}\n    - Dense:\n        units: 1\n", "  layers: []\n"
        ),
        10,
        "model.layers",
        "expected at least one item",
    ),
    (
        "input-shape-zero",
        edit("input_shape: [1]", "input_shape: [0]"),
        9,
        "model.input_shape[0]",
        "expected an integer >= 1, received 0",
    ),
    (
        "optimizer-typo",
        edit("optimizer: adam", "optimizer: adma"),
        15,
        "train.optimizer.name",
        "unknown optimizer 'adma'; expected one of ",
    ),
    (
        "optimizer-unknown",
        edit("optimizer: adam", "optimizer: {name: newton}"),
        15,
        "train.optimizer.name",
        "unknown optimizer 'newton'; expected one of adadelta, ",
    ),
    (
        "optimizer-arg-typo",
        edit("optimizer: adam", "optimizer: {name: sgd, learnin_rate: 0.1}"),
        15,
        "train.optimizer.learnin_rate",
        "unknown argument 'learnin_rate' for optimizer sgd; did you mean 'learning_rate'?",
    ),
    (
        "optimizer-no-name",
        edit("optimizer: adam", "optimizer: {learning_rate: 0.1}"),
        15,
        "train.optimizer.name",
        "missing required key 'name'",
    ),
    ("loss-unknown", edit("loss: mse", "loss: mse2x"), 16, "train.loss", "unknown loss 'mse2x'; did you mean 'mse'?"),
    ("loss-missing", edit("  loss: mse\n", ""), 14, "train.loss", "missing required key 'loss'"),  # the parent's line
    (
        "metric-unknown",
        edit("metrics: [mae]", "metrics: [mae, accuracyy]"),
        17,
        "train.metrics[1]",
        "unknown metric 'accuracyy'; did you mean 'accuracy'?",
    ),
    (
        "shuffle-word",
        edit("  batch_size: 8\n", "  shuffle: maybe\n"),
        19,
        "train.shuffle",
        "expected true or false, received 'maybe'",
    ),
    (
        "reduce-lr-factor",
        edit("  batch_size: 8\n", "  callbacks: {reduce_lr_on_plateau: {factor: 2}}\n"),
        19,
        "train.callbacks.reduce_lr_on_plateau.factor",
        "expected a fraction between 0 and 1 (exclusive), received 2",
    ),
    (
        "name-with-spaces",
        edit("name: bad", "name: my run"),
        1,
        "name",
        "expected letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit), received 'my run'",
    ),
    ("name-missing", edit("name: bad\n", ""), None, "name", "missing required key 'name'"),
    ("seed-negative", edit("seed: 0", "seed: -1"), 2, "seed", "expected an integer >= 0, received -1"),
    ("scale-zero", edit("  n_samples: 20\n", "  scale: 0\n"), 5, "data.scale", "expected a number > 0, received 0"),
    (
        "weights-nan",
        edit("  n_samples: 20\n", "  weights: .nan\n"),
        5,
        "data.weights",
        "expected a finite number, received nan",
    ),
    (
        "uniform-low-high",
        edit("  n_samples: 20\n", "  noise: {distribution: uniform, low: 1, high: 1}\n"),
        5,
        "data.noise",
        "expected low < high, received low=1, high=1",
    ),
    (
        "uniform-low-above-high",
        edit("  n_samples: 20\n", "  noise: {distribution: uniform, low: 2, high: 1}\n"),
        5,
        "data.noise",
        "expected low < high, received low=2, high=1",
    ),
    (
        "train-null",
        edit("train:\n  optimizer: adam\n  loss: mse\n  metrics: [mae]\n  epochs: 5\n  batch_size: 8\n", "train:\n"),
        14,
        "train",
        "expected a mapping, received null",
    ),
    (
        "top-level-list",
        "- name: a\n- name: b\n",
        1,
        None,
        "expected a mapping at the top level (keys name, data, model, train), received a list",
    ),
    ("top-level-string", "just a string\n", 1, None, "received a string"),
    ("empty-file", "", None, None, "the config is empty; expected a mapping with keys name, data, model, train"),
    ("comment-only", "# nothing\n", None, None, "the config is empty"),
    (
        "python-tag",
        edit("seed: 0", "seed: !!python/object/apply:os.system ['true']"),
        2,
        None,
        "YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    (
        "duplicate-key",
        BASE + "train: {}\n",
        20,
        None,
        "duplicate key 'train' (first at line 14); each key may appear once",
    ),
    ("syntax-error", edit("metrics: [mae]", "metrics: [mae"), 18, None, "YAML syntax error: "),
]

BUGGY = {
    "weights-count": pytest.param(
        "weights-count",
        edit("  n_samples: 20\n", "  n_features: 2\n  weights: [1, 2, 3]\n"),
        6,
        "data.weights",
        "expected one weight per feature (2), received 3 weights",
        id="weights-count",
    ),
    "nested-data-key-typo": pytest.param(
        "nested-data-key-typo",
        edit("  n_samples: 20\n", "  noise: {distribution: uniform, lo: 0}\n"),
        5,
        "data.noise.lo",
        "unknown key 'lo'; did you mean 'low'?",
        id="nested-data-key-typo",
    ),
    "jit-compile-word": pytest.param(
        "jit-compile-word",
        edit("  batch_size: 8\n", "  jit_compile: sometimes\n"),
        19,
        "train.jit_compile",
        "true or false",
        id="jit-compile-word",
    ),
}

assert len(CORPUS) >= 30


@pytest.mark.parametrize(
    ("case", "text", "line", "key_path", "phrase"),
    [pytest.param(*c, id=c[0]) for c in CORPUS] + list(BUGGY.values()),
)
def test_malformed_config(tmp_path, case, text, line, key_path, phrase):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    prefix = f"{path}:{line}: " if line else f"{path}: "
    if key_path:
        prefix += f"{key_path}: "
    message = str(err)
    assert message.startswith(prefix), message
    assert phrase in message, message
    assert (err.source, err.line, err.path) == (str(path), line, key_path)
    assert "\n" not in message
    assert err.exit_code == 2


# --------------------------------------------------------------------------- bad --set overrides
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs", "--set: expected KEY=VALUE such as train.epochs=3, received 'train.epochs'"),
        ("=3", "--set: expected KEY=VALUE such as train.epochs=3, received '=3'"),
        ("model.layers[5].Dense.units=3", "--set model.layers[5].Dense.units=3: no list item [5] at model.layers[5]"),
        ("model.layers[2]=Dense", "--set model.layers[2]=Dense: no list item [2] at model.layers[2]"),
        ("model.layers.0=1", "--set model.layers.0=1: model.layers is not a mapping"),
        (
            "model.layers[x].Dense=1",
            "--set: expected a key path such as 'train.epochs' or 'model.layers[1].Dense.units', "
            "received 'model.layers[x].Dense'",
        ),
        ("train.epochs=zero", "--set train.epochs=zero: train.epochs: expected an integer >= 1, received 'zero'"),
        ("data=5", "--set data=5: data: expected a mapping, received 5"),
        (
            "model.layers[1].Dense.unit=64",
            "--set model.layers[1].Dense.unit=64: model.layers[1].Dense.unit: unknown argument 'unit' for Dense; did you mean 'units'?",
        ),
        (
            "train.metrics=accuracyy",
            "--set train.metrics=accuracyy: train.metrics[0]: unknown metric 'accuracyy'; did you mean 'accuracy'?",
        ),
        (
            "train.optimizer=adma",
            "--set train.optimizer=adma: train.optimizer.name: unknown optimizer 'adma'; expected one of ",
        ),
        ("train.extra=1", "--set train.extra=1: train.extra: unknown key 'extra'"),
        ("seed=!!python/object/apply:os.system ['true']", "YAML tag '!!python/object/apply:os.system' is not allowed"),
        ("train.epochs=[1", "YAML syntax error"),
    ],
)
def test_bad_override(tmp_path, override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE), [override])
    message = str(info.value)
    if expected.startswith("--set"):
        assert message.startswith(expected), message
    else:
        assert message.startswith(f"--set {override}"), message
        assert expected in message, message
    assert str(tmp_path) not in message  # the file is fine; the --set is to blame


def test_override_does_not_hide_file_errors(tmp_path):
    path = write(tmp_path, edit("loss: mse", "loss: msee"))
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.epochs=2"])
    assert str(info.value) == f"{path}:16: train.loss: unknown loss 'msee'; did you mean 'mse'?"


def test_override_can_fix_a_file_error(tmp_path):
    path = write(tmp_path, edit("loss: mse", "loss: msee"))
    assert load_config(path, ["train.loss=mae"]).train.loss == "mae"


# --------------------------------------------------------------------------- no TensorFlow
@pytest.mark.subprocess
@pytest.mark.slow
def test_cli_import_and_validation_do_not_import_tensorflow_or_keras():
    code = (
        "import sys, dltool.cli.app\n"
        "from dltool.config import load_config, config_to_yaml, json_schema\n"
        "import glob\n"
        "for p in sorted(glob.glob('configs/*.yaml')):\n"
        "    config_to_yaml(load_config(p, ['train.epochs=2']))\n"
        "json_schema()\n"
        "try:\n"
        "    load_config('configs/smoke.yaml', ['model.layers[0].Dense.unit=3'])\n"
        "except Exception as exc:\n"
        "    assert 'did you mean' in str(exc)\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- callback monitors
@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        (
            "{early_stopping: {monitor: val_los}}",
            "train.callbacks.early_stopping.monitor: unknown monitor 'val_los' (this run logs loss, mae, val_loss, "
            "val_mae, learning_rate); did you mean 'val_loss'?",
        ),
        ("{early_stopping: {monitor: val_los, mode: min}}", "unknown monitor 'val_los' (this run logs"),
        (
            "{reduce_lr_on_plateau: {monitor: accuracy}}",
            "train.callbacks.reduce_lr_on_plateau.monitor: unknown monitor 'accuracy'",
        ),
        ("{checkpoint: {monitor: val_mea}}", "train.callbacks.checkpoint.monitor: unknown monitor 'val_mea' (this run"),
    ],
)
def test_callback_monitor_must_be_logged(tmp_path, callbacks, expected):
    path = write(tmp_path, BASE + f"  callbacks: {callbacks}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"{path}:20: ")


def test_val_monitor_without_validation_says_why(tmp_path):
    path = write(
        tmp_path, edit("  validation: 0.1\n", "  validation: null\n") + "  callbacks: {early_stopping: true}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"unknown monitor 'val_loss' \(this run logs loss, mae, learning_rate\); data.validation is null, so no val_",
    ):
        load_config(path)


@pytest.mark.parametrize("monitor", ["loss", "val_mae", "learning_rate, mode: min"])
def test_logged_values_are_accepted_monitors(tmp_path, monitor):
    config = load_config(write(tmp_path, BASE + f"  callbacks: {{early_stopping: {{monitor: {monitor}}}}}\n"))
    assert config.train.callbacks.early_stopping.monitor == monitor.split(",")[0]


def test_a_learning_rate_monitor_needs_a_mode(tmp_path):
    """Keras cannot tell which way the learning rate should go: it would stop the run after its first epoch."""
    path = write(tmp_path, BASE + "  callbacks: {checkpoint: {monitor: learning_rate}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:20: train.callbacks.checkpoint.mode: cannot tell whether 'learning_rate' improves going up or "
        "down; set mode: max or mode: min"
    )


# --------------------------------------------------------------------------- train.class_weight (issue 25)
CLASSIFIER = """\
name: weighted
data: {source: sklearn, name: breast_cancer}
model: {input_shape: [30], layers: [{Dense: {units: 2, activation: softmax}}]}
train:
  loss: sparse_categorical_crossentropy
  class_weight: %s
"""


def test_class_weight_defaults_to_none_and_takes_balanced_or_a_mapping():
    assert config_from_text(CLASSIFIER.replace("  class_weight: %s\n", "")).train.class_weight is None
    assert config_from_text(CLASSIFIER % "balanced").train.class_weight == "balanced"
    # Labels as the run names its classes: 3 and 3.0 are "3".
    weights = config_from_text(CLASSIFIER % "{malignant: 3, 3: 0.5, 4.0: 2}").train.class_weight
    assert weights == {"malignant": 3.0, "3": 0.5, "4": 2.0}


@pytest.mark.parametrize(
    "value, message",
    [
        ("balance", "c.yaml:6: train.class_weight: expected balanced or a mapping {label: weight}, received 'balance'"),
        ("{malignant: 0}", "c.yaml:6: train.class_weight: label 'malignant': expected a weight > 0, received 0"),
        ("{malignant: -1.5}", "label 'malignant': expected a weight > 0, received -1.5"),
        ("{malignant: heavy}", "label 'malignant': expected a weight > 0, received 'heavy'"),
        ("{malignant: .inf}", "label 'malignant': expected a weight > 0, received inf"),
        ("{}", "expected balanced or a mapping {label: weight} such as {malignant: 3.0}"),
        ("[1, 2]", "expected balanced or a mapping {label: weight} such as {malignant: 3.0}"),
    ],
)
def test_a_bad_class_weight_is_named(value, message):
    with pytest.raises(ConfigError) as caught:
        config_from_text(CLASSIFIER % value, source="c.yaml")
    assert message in str(caught.value)


def test_class_weight_on_a_regression_loss_is_a_config_error_naming_the_key():
    text = (CLASSIFIER % "balanced").replace("sparse_categorical_crossentropy", "mse")
    with pytest.raises(ConfigError) as caught:
        config_from_text(text, source="c.yaml")
    assert str(caught.value) == (
        "c.yaml:6: train.class_weight: class weights apply to classification losses only, received loss 'mse' "
        "(regression); remove train.class_weight, or use a classification loss such as sparse_categorical_crossentropy"
    )


def test_class_weight_in_the_json_schema():
    prop = json_schema()["$defs"]["TrainConfig"]["properties"]["class_weight"]
    kinds = prop["anyOf"]
    assert {"const": "balanced", "type": "string"} in kinds or {"enum": ["balanced"], "type": "string"} in kinds
    mapping = next(kind for kind in kinds if kind.get("type") == "object")
    assert mapping["additionalProperties"]["exclusiveMinimum"] == 0
    assert prop["default"] is None


# --------------------------------------------------------------------------- train.threshold (issue 25)
BINARY = """\
name: binary
data: {source: sklearn, name: breast_cancer, validation: %s}
model: {input_shape: [30], layers: [{Dense: {units: %d, activation: sigmoid}}]}
train:
  loss: %s
  threshold: %s
"""


def _binary(threshold: str, *, validation: str = "0.2", units: int = 1, loss: str = "binary_crossentropy") -> str:
    return BINARY % (validation, units, loss, threshold)


def test_threshold_takes_a_rule_a_targeted_rule_or_a_number():
    assert config_from_text(_binary("null")).train.threshold is None
    assert config_from_text(_binary("{optimize: f1}")).train.threshold.optimize == "f1"
    rule = config_from_text(_binary("{optimize: precision_at_recall, at: 0.9}")).train.threshold
    assert (rule.optimize, rule.at) == ("precision_at_recall", 0.9)
    # A fixed threshold is not chosen on validation: no validation split needed.
    assert config_from_text(_binary("0.3", validation="null")).train.threshold == 0.3


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "f1",
            "t.yaml:6: train.threshold: expected {optimize: f1 | youden | precision_at_recall | recall_at_precision} "
            "or a number between 0 and 1, received 'f1'; write {optimize: f1}",
        ),
        ("1.5", "t.yaml:6: train.threshold: expected a number between 0 and 1 (exclusive), received 1.5"),
        (
            "{optimize: recall_at_precision}",
            "t.yaml:6: train.threshold: optimize: recall_at_precision needs the precision to reach as at, received "
            "no at; write {optimize: recall_at_precision, at: 0.9}",
        ),
        (
            "{optimize: youden, at: 0.9}",
            "t.yaml:6: train.threshold: at is the target of precision_at_recall or recall_at_precision, received "
            "at: 0.9 with optimize: youden, which has none; remove at",
        ),
        (
            "{optimize: precision_at_recall, at: 1.2}",
            "t.yaml:6: train.threshold.at: expected a fraction between 0 and 1 (exclusive), received 1.2",
        ),
        ("{optimize: accuracy}", "train.threshold.optimize: expected one of 'f1', 'youden',"),
    ],
)
def test_a_bad_threshold_is_named(value, message):
    with pytest.raises(ConfigError) as caught:
        config_from_text(_binary(value), source="t.yaml")
    assert message in str(caught.value)


def test_threshold_on_a_regression_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        config_from_text(_binary("{optimize: f1}", loss="mse"), source="t.yaml")
    assert str(caught.value) == (
        "t.yaml:6: train.threshold: a decision threshold applies to binary classifiers only, received loss 'mse' "
        "(regression); remove train.threshold"
    )


def test_threshold_on_a_multi_class_model_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        config_from_text(_binary("{optimize: f1}", units=3, loss="sparse_categorical_crossentropy"), source="t.yaml")
    assert str(caught.value) == (
        "t.yaml:6: train.threshold: a decision threshold applies to binary classifiers only (one sigmoid output or "
        "a 2-class softmax), received a last layer of 3 units (model.layers[0]); remove train.threshold (a "
        "multi-class run decides by argmax)"
    )


@pytest.mark.parametrize(
    "validation, received",
    [
        ("null", "null (no validation split)"),
        ("test", "test (a threshold chosen on the test split would make its test figures optimistic)"),
    ],
)
def test_a_chosen_threshold_needs_its_own_validation_split(validation, received):
    with pytest.raises(ConfigError) as caught:
        config_from_text(_binary("{optimize: youden}", validation=validation), source="t.yaml")
    assert str(caught.value) == (
        f"t.yaml:6: train.threshold: youden chooses the threshold on the validation split, but data.validation is "
        f"{received}; set data.validation to a fraction such as 0.2, or give a fixed threshold (train.threshold: 0.5)"
    )


def test_threshold_in_the_json_schema():
    prop = json_schema()["$defs"]["TrainConfig"]["properties"]["threshold"]
    kinds = prop["anyOf"]
    assert {"$ref": "#/$defs/ThresholdRule"} in kinds
    assert {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1} in kinds


# --------------------------------------------------------------------------- train.calibrate (issue 25)
CALIBRATED = """\
name: calibrated
data: {source: sklearn, name: iris, validation: 0.2}
model: {input_shape: [4], layers: [{Dense: {units: 8, activation: relu}}, {Dense: {units: 3, activation: softmax}}]}
train:
  loss: sparse_categorical_crossentropy
  calibrate: temperature
"""


def test_calibrate_defaults_to_none_and_takes_temperature_with_any_last_layer_of_probabilities():
    assert config_from_text(CALIBRATED.replace("  calibrate: temperature\n", "")).train.calibrate is None
    assert config_from_text(CALIBRATED).train.calibrate == "temperature"
    for last in ("{Activation: {activation: softmax}}", "Softmax", "{Dense: {units: 1, activation: sigmoid}}"):
        text = CALIBRATED.replace("{Dense: {units: 3, activation: softmax}}", last)
        assert config_from_text(text).train.calibrate == "temperature"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("sparse_categorical_crossentropy", "mse"),
            "c.yaml:6: train.calibrate: calibration applies to classification losses only, received loss 'mse' "
            "(regression); remove train.calibrate",
        ),
        (
            ("validation: 0.2", "validation: null"),
            "c.yaml:6: train.calibrate: temperature scaling fits on the validation split, and data.validation is "
            "null (no validation split); set data.validation to a fraction such as 0.1, or remove train.calibrate",
        ),
        (
            ("validation: 0.2", "validation: test"),
            "c.yaml:6: train.calibrate: temperature scaling fits on the validation split, and data.validation is "
            "test: fitted on the test split, the test figures would not be a held-out measure; set data.validation "
            "to a fraction such as 0.1, or remove train.calibrate",
        ),
        (
            ("activation: softmax", "activation: relu"),
            "c.yaml:6: train.calibrate: temperature scaling needs a model that ends in probabilities, and its last "
            "layer (model.layers[1], Dense) has activation 'relu'; end it in activation: softmax (sigmoid for one "
            "output), or remove train.calibrate",
        ),
        (
            ("units: 3, activation: softmax", "units: 3"),
            "c.yaml:6: train.calibrate: temperature scaling needs a model that ends in probabilities, and its last "
            "layer (model.layers[1], Dense) has activation 'linear'",
        ),
        (
            ("{Dense: {units: 3, activation: softmax}}", "{LSTM: {units: 3, activation: softmax}}"),
            "c.yaml:6: train.calibrate: temperature scaling divides the logits before the last activation, and LSTM "
            "applies its activation inside each step; end model.layers in {Dense: {units: N, activation: softmax}} "
            "after the LSTM (its activation: tanh), or remove train.calibrate",
        ),
    ],
    ids=["regression", "no validation", "validation is test", "relu last", "no activation", "recurrent"],
)
def test_calibrate_is_refused_before_any_run_where_it_cannot_fit(change, message):
    with pytest.raises(ConfigError) as caught:
        config_from_text(CALIBRATED.replace(*change), source="c.yaml")
    assert str(caught.value).startswith(message)
