"""benchmarks/measure_transfer.py: the data it draws and the configs it writes (numpy and YAML only, no Keras)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import measure_transfer as mt  # noqa: E402


def tiny_mnist() -> dict:
    """60 training and 30 test images: each digit 6 times in train, 3 times in test; pixel (0, 0) = its index."""
    y_train, y_test = np.tile(np.arange(10), 6), np.tile(np.arange(10), 3)
    x_train = np.zeros((60, 28, 28), dtype=np.uint8)
    x_train[:, 0, 0] = np.arange(60)
    x_test = np.zeros((30, 28, 28), dtype=np.uint8)
    x_test[:, 0, 0] = np.arange(30)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def test_the_task_draws_n_images_of_each_task_digit_relabelled_and_keeps_every_test_image():
    mnist = tiny_mnist()
    chosen = mt.task_indices(mnist["y_train"], mt.TASK_DIGITS, 2, seed=0)
    task = mt.digits_split(mnist, mt.TASK_DIGITS, chosen)

    assert np.bincount(task["y_train"]).tolist() == [2, 2, 2, 2, 2]
    assert (mnist["y_train"][task["x_train"][:, 0, 0]] - 5 == task["y_train"]).all()
    assert sorted(task["x_test"][:, 0, 0]) == [i for i in range(30) if i % 10 >= 5]
    assert (mnist["y_test"][task["x_test"][:, 0, 0]] - 5 == task["y_test"]).all()


def test_a_seed_draws_the_same_images_and_a_smaller_draw_is_part_of_a_larger_one():
    labels = tiny_mnist()["y_train"]
    two = mt.task_indices(labels, mt.TASK_DIGITS, 2, seed=3)
    four = mt.task_indices(labels, mt.TASK_DIGITS, 4, seed=3)

    assert two.tolist() == mt.task_indices(labels, mt.TASK_DIGITS, 2, seed=3).tolist()
    assert set(two) <= set(four)
    draws = {tuple(mt.task_indices(labels, mt.TASK_DIGITS, 2, seed=s)) for s in range(5)}
    assert len(draws) > 1


def test_the_pretraining_split_holds_only_digits_0_to_4():
    pretrain = mt.digits_split(tiny_mnist(), mt.PRETRAIN_DIGITS)

    assert len(pretrain["x_train"]) == 30 and len(pretrain["x_test"]) == 15
    assert set(pretrain["y_train"]) == set(pretrain["y_test"]) == {0, 1, 2, 3, 4}


def test_asking_for_more_images_than_a_digit_has_says_which_digit():
    try:
        mt.task_indices(tiny_mnist()["y_train"], mt.TASK_DIGITS, 7, seed=0)
    except ValueError as exc:
        assert str(exc) == "digit 5: 6 images, fewer than the 7 asked for"
    else:
        raise AssertionError("expected a ValueError")


def test_the_configs_cut_by_name_or_index_and_fine_tune_at_a_tenth_of_the_rate():
    args = Namespace(learning_rate=1e-3, fine_tune_epochs=10)
    run = Path("/tmp/runs/pretrain")

    def config(way: str) -> dict:
        text = mt.dltool_config(
            "t", way, data=Path("/tmp/t.npz"), epochs=30, batch_size=16, args=args, pretrained_run=run
        )
        return yaml.safe_load(text)

    frozen, tuned, wrong = config("frozen"), config("fine_tuned"), config("wrong_cut")
    assert frozen["model"]["layers"][0] == {"Backbone": {"run": str(run), "up_to": "flatten", "trainable": False}}
    assert wrong["model"]["layers"][0]["Backbone"]["up_to"] == -2
    assert "fine_tune" not in frozen["train"]
    assert tuned["train"]["fine_tune"] == {"unfreeze": "all", "epochs": 10, "learning_rate": 1e-4}
    assert tuned["train"]["optimizer"] == {"name": "adam", "learning_rate": 1e-3}
    assert frozen["data"] == {"source": "npz", "path": "/tmp/t.npz", "scale": 255, "validation": None}
    assert len(config("scratch")["model"]["layers"]) == 7


def test_history_is_split_into_phases_by_its_phase_column(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,epoch_seconds,phase\n1,0.5,0.2,1\n2,0.4,0.1,1\n3,0.3,0.3,2\n")

    assert mt.read_phases(history) == [[0.2, 0.1], [0.3]]
    history.write_text("epoch,loss,epoch_seconds\n1,0.5,0.2\n")
    assert mt.read_phases(history) == [[0.2]]
