"""benchmarks/measure_precision.py: the image folder it writes, its run order, verdicts and tables (no Keras)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import measure_precision as mp  # noqa: E402


def canned_result(metric: str, float32: list[float], auto: list[float], seeds=(42, 43)) -> dict:
    """A measure() result whose runs have the given test figures (one per seed), 2 epochs of 10 s or 5 s."""
    runs = []
    for precision, figures, seconds in (("float32", float32, 10.0), ("auto", auto, 5.0)):
        for seed, figure in zip(seeds, figures):
            test = {"accuracy": figure, "loss": 0.1} if metric == "accuracy" else {"loss": figure, "mae": 0.7}
            policy = "float32" if precision == "float32" else "mixed_bfloat16"
            runs.append(
                {
                    "seed": seed,
                    "precision": precision,
                    "test": test,
                    "figure": figure,
                    "epochs": 2,
                    "stopped_early": False,
                    "fit_seconds": seconds,
                    "wall_seconds": seconds + 8,
                    "policy": policy,
                    "reason": "the CPU has AVX512-BF16",
                    "load_at_start": 1.5,
                }
            )
    return {"case": "a case", "metric": metric, "note": "", "overrides": [], "runs": runs}


def test_the_first_images_of_each_class_are_chosen_in_ascending_order():
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1])

    assert mp.first_indices_per_class(labels, 2).tolist() == [0, 1, 2, 3, 4, 6]


def test_a_class_with_too_few_images_is_named():
    with pytest.raises(ValueError, match="class 2: 1 samples, fewer than the 2 asked for"):
        mp.first_indices_per_class(np.array([0, 0, 1, 1, 2]), 2)


def test_the_digits_are_written_as_rgb_pngs_one_folder_per_class(tmp_path):
    from PIL import Image

    images = np.zeros((3, 28, 28), dtype=np.uint8)
    images[1, 5, 7] = 200
    written = mp.write_digit_pngs(images, np.array([3, 3, 7]), tmp_path)

    assert written == 3
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "3/00000.png",
        "3/00001.png",
        "7/00002.png",
    ]
    with Image.open(tmp_path / "3" / "00001.png") as png:
        assert png.mode == "RGB" and png.size == (28, 28)
        assert png.getpixel((7, 5)) == (200, 200, 200)


def test_last_stands_for_the_index_of_the_last_layer():
    overrides = ["data.path=x", "model.layers[LAST].Dense.units=10"]

    assert mp.resolve_last_layer(overrides, 11) == ["data.path=x", "model.layers[10].Dense.units=10"]


def test_the_precisions_alternate_and_each_seed_runs_both():
    assert mp.run_order([42, 43, 44]) == [
        (42, "float32"),
        (42, "auto"),
        (43, "auto"),
        (43, "float32"),
        (44, "float32"),
        (44, "auto"),
    ]


@pytest.mark.parametrize(
    ("float32", "auto", "kept", "change"),
    [
        ([0.990, 0.992], [0.986, 0.987], True, "-0.45 points"),
        ([0.990, 0.992], [0.984, 0.987], False, "-0.55 points"),
        ([0.950, 0.960], [0.970, 0.980], True, "+2.00 points"),
    ],
)
def test_accuracy_is_kept_within_half_a_point_of_the_mean(float32, auto, kept, change):
    assert mp.verdict("accuracy", float32, auto) == (kept, change)


@pytest.mark.parametrize(
    ("auto", "kept", "change"),
    [([0.52, 0.52], True, "MSE +4.0 %"), ([0.53, 0.53], False, "MSE +6.0 %"), ([0.40, 0.40], True, "MSE -20.0 %")],
)
def test_mse_is_kept_within_five_percent_of_the_mean(auto, kept, change):
    assert mp.verdict("mse", [0.49, 0.51], auto) == (kept, change)


def test_the_test_figure_is_accuracy_or_the_mse_loss():
    assert mp.test_figure("accuracy", {"accuracy": 0.98, "loss": 0.05}) == 0.98
    assert mp.test_figure("mse", {"loss": 0.49, "mae": 0.7}) == 0.49


def test_a_verdict_row_gives_each_seed_the_mean_the_seconds_and_the_verdict():
    summary = mp.summarize(canned_result("accuracy", [0.99, 0.98], [0.985, 0.98]))

    assert mp.verdict_row(summary) == (
        "| a case | accuracy | 0.9850 (0.9900, 0.9800) | 10 (2 ep.) | 0.9825 (0.9850, 0.9800) | 5 (2 ep.) "
        "| 0.50x | mixed_bfloat16 | -0.25 points | **keeps accuracy** |"
    )


def test_a_failed_run_leaves_the_verdict_undecided():
    result = canned_result("mse", [0.5, 0.5], [0.5, 0.5])
    failed = result["runs"][3]
    result["runs"][3] = {k: failed[k] for k in ("seed", "precision", "wall_seconds", "load_at_start")}
    result["runs"][3]["failed"] = "Traceback ..."
    summary = mp.summarize(result)

    assert (summary["kept"], summary["change"]) == (None, "a run failed")
    assert mp.verdict_row(summary).endswith("| a run failed | not decided: a run failed |")


def test_the_report_lists_every_case_without_local_data_and_every_run():
    text = mp.report([canned_result("mse", [0.5, 0.5], [0.6, 0.6])], "python x.py", [42, 43], started=0)
    verdict_table = text.split("Notes per case")[0]

    assert "| a case | MSE |" in verdict_table and "**loses accuracy**" in verdict_table
    for name in ("cifar10_cnn", "imdb_lstm", "cats_vs_dogs_xception", "template text-classifier"):
        assert f"| {name} |" in verdict_table
    runs_table = text.split("Every run, in the order it ran:")[1]
    assert runs_table.count("| a case |") == 4
    assert "Seconds are indicative only" in text


def test_the_report_names_paths_in_the_checkout_relatively_and_the_temporary_folder_as_tmp():
    assert mp.shorten_path(f"data.path=/tmp/{mp.TEMP_PREFIX}ab12_x/digits") == "data.path=TMP/digits"
    assert mp.shorten_path(f"data.path={mp.SERIES}") == "data.path=configs/data/seasonal_series.csv"
