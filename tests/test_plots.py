"""Plots are written in the format their file name's suffix names (matplotlib only, no TensorFlow)."""

import pytest
from typer.testing import CliRunner

from dltool.cli.app import app
from dltool.commands.runs_report import plot_runs
from dltool.errors import UsageError
from dltool.plots import curves, overlay

HISTORY = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e, "epoch_seconds": 0.1} for e in (1, 2, 3)]

MAGIC = {  # the first bytes of each format
    "png": b"\x89PNG",
    "PNG": b"\x89PNG",
    "pdf": b"%PDF",
    "jpg": b"\xff\xd8",
    "jpeg": b"\xff\xd8",
}


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_overlay_writes_the_format_the_suffix_names(tmp_path, suffix):
    target = tmp_path / f"both.{suffix}"
    assert overlay({"a": HISTORY, "b": HISTORY}, target) == ["loss"]
    assert target.read_bytes().startswith(MAGIC[suffix])


def test_an_svg_plot_is_svg(tmp_path):
    target = tmp_path / "curves.svg"
    curves(HISTORY, target, "title")
    start = target.read_bytes()[:200]
    assert start.startswith(b"<?xml") and b"<svg" in target.read_bytes()


@pytest.mark.parametrize("name", ["both.gif", "both"])
def test_an_unknown_suffix_is_refused_before_drawing(tmp_path, name):
    target = tmp_path / name
    with pytest.raises(UsageError) as caught:
        overlay({"a": HISTORY}, target)
    received = "'.gif'" if name.endswith(".gif") else "no suffix"
    assert str(caught.value) == (
        f"{target}: a plot is written in the format its file name's suffix names; expected one of "
        f".png, .pdf, .svg, .jpg, .jpeg, received {received}. Name the file e.g. both.png"
    )
    assert not target.exists()


def test_plot_refuses_an_unknown_suffix_before_reading_any_run(tmp_path):
    with pytest.raises(UsageError, match="received '.bmp'"):
        plot_runs(["no-such-run"], tmp_path / "runs", tmp_path / "x.bmp")
    result = CliRunner().invoke(
        app, ["plot", "no-such-run", "-o", str(tmp_path / "x.bmp"), "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2
    assert "expected one of .png, .pdf, .svg, .jpg, .jpeg, received '.bmp'" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def _evaluation_plots(tmp_path, labels, outputs, names):
    import numpy as np

    from dltool.plots import write_evaluation_plots
    from dltool.probabilities import calibration_report

    labels, outputs = np.asarray(labels), np.asarray(outputs, dtype=np.float32)
    calibration = calibration_report(labels, outputs, names)
    return write_evaluation_plots(tmp_path, "holdout", labels, outputs, names, calibration, "title")


def test_evaluation_plots_are_pngs_named_after_the_evaluation(tmp_path):
    written = _evaluation_plots(tmp_path, [0, 1, 1, 0, 1], [[0.1], [0.8], [0.4], [0.6], [0.9]], ["no", "yes"])
    assert written == ["holdout-roc.png", "holdout-pr.png", "holdout-reliability.png"]
    assert all((tmp_path / name).read_bytes().startswith(MAGIC["png"]) for name in written)


def test_no_ranking_plots_without_both_classes_and_no_reliability_without_probabilities(tmp_path):
    assert _evaluation_plots(tmp_path, [1, 1, 1], [[0.8], [0.7], [0.9]], ["no", "yes"]) == ["holdout-reliability.png"]
    logits = [[2.0, -1.0, 0.5], [-0.3, 1.5, 0.2], [0.1, 0.0, 3.0]]
    (tmp_path / "logits").mkdir()
    assert _evaluation_plots(tmp_path / "logits", [0, 1, 2], logits, ["a", "b", "c"]) == [
        "holdout-roc.png",
        "holdout-pr.png",
    ]
