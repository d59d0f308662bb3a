"""Building models from layer entries, and the shipped Keras catalog."""

from __future__ import annotations

import json

import pytest

from dltool.config import config_from_text
from dltool.errors import ConfigError
from dltool.keras_catalog import CATALOG_PATH, build_catalog
from dltool.training.model import build_layer, build_model, summary_text

# Every test here builds Keras objects: importing Keras and TensorFlow takes seconds, so none is in the fast loop.
pytestmark = pytest.mark.slow


def test_catalog_matches_the_installed_keras():
    import keras

    shipped = json.loads(CATALOG_PATH.read_text())
    if shipped["keras_version"] != keras.__version__:
        pytest.fail(
            f"keras_catalog.json is for Keras {shipped['keras_version']} but {keras.__version__} is "
            "installed: run `python -m dltool.keras_catalog` and commit the result"
        )
    assert build_catalog() == shipped


def test_sequential_starts_with_the_configured_input():
    config = config_from_text("""
name: m
data: {source: sklearn, name: iris}
model: {input_shape: [28, 28], layers: [Flatten, {Dense: {units: 10, activation: softmax}}]}
train: {loss: sparse_categorical_crossentropy}
""")
    model = build_model(config)
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 784 * 10 + 10
    text = summary_text(model)
    assert "Flatten" in text and "7,850" in text


def test_nested_layers_for_wrappers():
    import keras

    layer = build_layer({"Bidirectional": {"layer": {"LSTM": {"units": 4}}}}, "model.layers[0]")
    assert isinstance(layer, keras.layers.Bidirectional)
    assert isinstance(layer.forward_layer, keras.layers.LSTM)


def test_a_layer_that_does_not_fit_names_its_index():
    config = config_from_text("""
name: m
data: {source: sklearn, name: iris}
model: {input_shape: [4], layers: [{Conv2D: {filters: 2, kernel_size: 3}}]}
train: {loss: mse}
""")
    with pytest.raises(ConfigError) as caught:
        build_model(config)
    assert caught.value.path == "model.layers[0]"
    assert "Conv2D does not fit" in caught.value.detail


def test_a_leading_normalization_layer_is_adapted_on_the_training_split_only():
    import numpy as np
    from e2e_support import IRIS_CONFIG

    from dltool.commands.train import prepare
    from dltool.config import config_from_text

    config = config_from_text(
        IRIS_CONFIG,
        overrides=["data.standardize=false", "model.layers=[Normalization, {Dense: {units: 3, activation: softmax}}]"],
    )
    data, model = prepare(config)
    assert data.adapted == ["Normalization"]
    np.testing.assert_allclose(np.asarray(model.layers[0].mean).ravel(), data.x_train.mean(axis=0), rtol=1e-5)
    assert not np.allclose(np.asarray(model.layers[0].mean).ravel(), data.x_test.mean(axis=0), rtol=1e-3)
