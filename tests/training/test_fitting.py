"""Testing a trained model (dltool.training.fitting): one pass over the test split gives evaluate's figures."""

from __future__ import annotations

import numpy as np
import pytest

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.training.fitting import evaluate_data, evaluate_with_outputs

CONFIG = """
name: one-pass
seed: 4
data: {{source: sklearn, name: {dataset}, test: 0.3, validation: null, standardize: true}}
model:
  input_shape: [{features}]
  layers:
    - Dense: {{units: 8, activation: relu, kernel_regularizer: {{class_name: L2, config: {{l2: 0.01}}}}}}
    - Dense: {{units: {units}{activation}}}
train: {{loss: {loss}, metrics: {metrics}, epochs: 1, batch_size: 16, tensorboard: false}}
"""

CASES = {
    "sparse labels": dict(dataset="iris", features=4, units=3, activation=", activation: softmax",
                          loss="sparse_categorical_crossentropy", metrics="[accuracy]"),
    "one-hot labels": dict(dataset="iris", features=4, units=3, activation=", activation: softmax",
                           loss="categorical_crossentropy", metrics="[accuracy, auc]"),
    "regression": dict(dataset="diabetes", features=10, units=1, activation="", loss="mse", metrics="[mae]"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_pass_gives_evaluates_loss_and_metrics_and_the_first_outputs(case):
    from dltool.training.model import build_model, compile_model

    config = config_from_text(CONFIG.format(**CASES[case]))
    data = prepare_data(config)
    model = build_model(config)
    compile_model(model, config)
    expected = evaluate_data(model, config, data)
    whole = list(data.test_chunks())
    pieces = [(x[i : i + 10], y[i : i + 10]) for x, y in whole for i in range(0, len(x), 10)]
    data.test_chunks = lambda limit=None: iter(pieces)  # several chunks of unequal figures, as a stream gives
    metrics, y, outputs = evaluate_with_outputs(model, config, data, keep=7)
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert len(y) == len(outputs) == 7
    np.testing.assert_allclose(outputs, model.predict(data.x_test[:7], verbose=0), rtol=1e-5, atol=1e-6)
