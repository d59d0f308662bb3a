"""`dltool weights fetch` and `list`: what they refuse before any download, and the cache they show."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dltool.cli.app import app

runner = CliRunner()

CONFIG = """\
name: plain
data: {{source: sklearn, name: digits}}
model:
  input_shape: [64]
  layers:
    - {layer}
    - {{Dense: {{units: 10, activation: softmax}}}}
train: {{loss: sparse_categorical_crossentropy}}
"""


def test_fetch_refuses_an_unknown_application_with_did_you_mean_before_importing_keras():
    result = runner.invoke(app, ["weights", "fetch", "EfficientNetB9"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: unknown application 'EfficientNetB9'; did you mean 'EfficientNetB0'?"


@pytest.mark.parametrize(
    ("layer", "found"),
    [
        ("Flatten", "model.layers has no Backbone"),
        ("{Backbone: {application: MobileNetV3Small, weights: none}}", "its Backbone has weights: none"),
        ("{Backbone: {run: latest, up_to: flatten}}", "its Backbone is a run"),
    ],
)
def test_fetch_refuses_a_config_with_nothing_to_fetch(tmp_path, layer, found):
    path = tmp_path / "plain.yaml"
    path.write_text(CONFIG.format(layer=layer), encoding="utf-8")
    result = runner.invoke(app, ["weights", "fetch", str(path)])
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"error: {path} has no application Backbone with weights: imagenet to fetch ({found})"
    )


@pytest.mark.slow
def test_list_shows_the_files_in_keras_s_cache(tmp_path, monkeypatch):
    import keras.src.backend.config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0 and f"no weights in {tmp_path / 'models'}" in result.output
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5").write_bytes(b"x" * 2_500_000)
    result = runner.invoke(app, ["weights", "list"])
    assert f"weights in {tmp_path / 'models'}:" in result.output
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5       2.5 MB" in result.output
