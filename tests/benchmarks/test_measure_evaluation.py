"""benchmarks/measure_evaluation.py: the imbalanced data it draws and the configs it writes (no Keras)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import measure_evaluation as me  # noqa: E402

from dltool.config import load_config  # noqa: E402


def test_the_test_split_is_fixed_stratified_and_the_pool_keeps_every_other_row():
    pool, test = me.breast_cancer_split()
    again_pool, again_test = me.breast_cancer_split()

    assert len(pool["y"]) + len(test["y"]) == 569
    assert np.bincount(test["y"]).tolist() == [107, 64]  # 30 % of 357 benign and 212 malignant
    assert (test["x"] == again_test["x"]).all() and (pool["x"] == again_pool["x"]).all()
    rows = {row.tobytes() for row in pool["x"]}
    assert not any(row.tobytes() in rows for row in test["x"])  # no test row is in the pool


def test_each_seed_keeps_every_benign_row_and_five_percent_malignant_and_the_same_test(tmp_path):
    pool, test = me.breast_cancer_split()
    counts = me.imbalanced_npz(pool, test, 0, tmp_path / "a.npz")
    me.imbalanced_npz(pool, test, 1, tmp_path / "b.npz")
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")

    assert counts == {"benign": 250, "malignant": 12, "test_benign": 107, "test_malignant": 64}
    assert np.bincount(a["y_train"]).tolist() == [250, 12]
    assert (a["x_test"] == b["x_test"]).all() and (a["y_test"] == test["y"]).all()
    malignant_a = {row.tobytes() for row in a["x_train"][a["y_train"] == 1]}
    malignant_b = {row.tobytes() for row in b["x_train"][b["y_train"] == 1]}
    assert malignant_a != malignant_b  # the minority rows are drawn per seed


@pytest.mark.parametrize("write", ["imbalance", "wine", "mnist"])
def test_the_configs_it_writes_validate(tmp_path, write):
    if write == "imbalance":
        config = me.imbalance_config(tmp_path / "c.yaml", tmp_path / "d.npz", 3)
    elif write == "wine":
        config = me.wine_config(tmp_path / "c.yaml", me.wine_csv(tmp_path / "wine.csv"), 3)
    else:
        config = me.mnist_config(tmp_path / "c.yaml", tmp_path / "mnist.npz", 3, None)
    assert load_config(config).train.epochs == 3


def test_sections_and_ways_name_the_config_keys_dltool_accepts(tmp_path):
    config = me.imbalance_config(tmp_path / "c.yaml", tmp_path / "d.npz", 3)
    for sets in [*me.IMBALANCE_WAYS.values(), *me.THRESHOLD_WAYS.values()]:
        load_config(config, sets)  # raises ConfigError on a key or value dltool does not know
