"""`dltool export` of a run whose first layer is a Backbone (issue 23): every format verified on raw pixels.

The run (conftest's ``backbone_run``) is MobileNetV3Small from a weights file, frozen one epoch and fine-tuned
one more; its preprocessing (the application's own Rescaling) is inside the model, so the exported model takes
the pixels as the image files hold them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every test converts a trained model

SUFFIX = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}


def _photos(run) -> np.ndarray:
    """Every photo of the run's data folder (32x32 PNGs, as the files hold them), as float32 pixels 0-255."""
    from PIL import Image

    from dltool.config import load_config

    files = sorted(Path(load_config(run.file("config.yaml")).data.path).rglob("*.png"))
    return np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) for path in files])


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "litert"])
def test_a_run_with_a_backbone_exports_in_every_format_verified_on_raw_pixels(backbone_run, tmp_path, fmt):
    from dltool.commands.export import export
    from dltool.exporting import format_module
    from dltool.keras_io import load_model_safely

    record = export(backbone_run, fmt, output=tmp_path / f"backbone{SUFFIX[fmt]}")
    assert record["data"] == "test split" and record["samples"] == backbone_run.info["data"]["test"]
    # A backbone's hundred-odd layers sum in another order in each runtime: held to 1e-4, as recurrent layers are.
    assert (record["rtol"], record["atol"]) == (1e-4, 1e-4) and 0 <= record["tolerance_used"] <= 1
    assert record["input"] == {"shape": [None, 32, 32, 3], "dtype": "float32"}
    # The exported model, given the files' pixels, answers what model.keras answers; and the answers differ from
    # image to image (a backbone whose features had vanished would pass any comparison).
    pixels = _photos(backbone_run)
    path = Path(record["path"])
    exported = format_module(fmt).Runner(path).run(pixels)
    expected = load_model_safely(backbone_run.file("model.keras")).predict(pixels, verbose=0)
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-4)
    assert np.ptp(expected, axis=0).max() > 0.1
    sidecar = path / "dltool-export.json" if fmt == "saved_model" else path.with_suffix(".json")
    assert json.loads(sidecar.read_text())["class_names"] == ["blue", "green", "red"]


def test_a_weights_file_backbone_records_its_sha256_and_its_absolute_path(backbone_run):
    from dltool.training.backbones import file_sha256

    backbone = backbone_run.info["backbone"]
    weights = Path(backbone["weights_file"])
    assert weights.is_absolute() and weights.name == "mobilenet_v3_small.weights.h5"
    assert backbone["weights"] == str(weights) and backbone["weights_sha256"] == file_sha256(weights)
    assert backbone["application"] == "MobileNetV3Small" and backbone["kind"] == "application"
    assert f"weights: {weights}" in backbone_run.file("config.yaml").read_text()  # the resolved config names it
    phases = [(entry["phase"], entry["trainable"] > 0, entry["frozen"] > 0) for entry in backbone_run.info["phases"]]
    assert phases == [(1, True, True), (2, True, True)]
