"""Fused JAX steps (dltool.training.fused_steps): the same training as Keras's own, step for step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

FIT_BOTH_WAYS = r"""
import json, sys
import numpy as np
import keras
from dltool.training.fused_steps import fuse_steps

rng = np.random.default_rng(0)
x, y = rng.normal(size=(70, 5)).astype("float32"), rng.integers(0, 3, 70)
x_val, y_val = rng.normal(size=(13, 5)).astype("float32"), rng.integers(0, 3, 13)


def fit(fused, steps_per_execution=4):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)
    did = fuse_steps(model) if fused else False
    # 70 rows of 8: two groups of 4 batches, then one batch of 6 rows; class weights reach the step as weights
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x_val, y_val), verbose=0,
                        class_weight={0: 1.0, 1: 2.0, 2: 0.5})
    test = model.evaluate(x_val, y_val, batch_size=4, verbose=0, return_dict=True)
    weights = [w.tolist() for w in model.get_weights()]
    return {"fused": did, "history": history.history, "test": test, "weights": weights}


print(json.dumps({"keras": fit(False), "fused": fit(True), "one_step": fit(True, steps_per_execution=1)["fused"]}))
"""


@pytest.mark.jax
@pytest.mark.subprocess
@pytest.mark.slow
def test_fused_steps_train_exactly_as_keras_s_own_loop():
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", FIT_BOTH_WAYS],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "DLTOOL_JAX_CACHE": "off"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    keras_own, fused = found["keras"], found["fused"]
    assert (keras_own["fused"], fused["fused"], found["one_step"]) == (False, True, False)
    assert set(fused["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in keras_own["history"].items():
        assert fused["history"][key] == pytest.approx(values, rel=1e-5, abs=1e-6), key
    assert fused["test"] == pytest.approx(keras_own["test"], rel=1e-5, abs=1e-6)
    for mine, theirs in zip(fused["weights"], keras_own["weights"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_only_a_jax_model_with_several_steps_per_execution_is_fused():
    import keras

    from dltool.training.fused_steps import fuse_steps

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=8)
    assert keras.backend.backend() != "jax" and fuse_steps(model) is False and model.train_function is None
