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


@pytest.mark.slow
def test_fetch_downloads_into_keras_s_cache_and_says_where(tmp_path, monkeypatch):
    """The download itself stubbed (no internet here): Keras's get_file is given a file as if from its URL."""
    import shutil

    import h5py
    import keras
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    donor = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(224, 224, 3))
    served = tmp_path / "served.h5"
    with h5py.File(served, "w") as handle:
        save_weights_to_hdf5_group(handle, donor)
    urls = []

    def download(url, target, *args, **kwargs):
        urls.append(url)
        shutil.copy(served, target)

    monkeypatch.setattr(file_utils, "urlretrieve", download)
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)  # a stand-in: not Google's file
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))
    (tmp_path / "keras").mkdir()
    result = runner.invoke(app, ["weights", "fetch", "MobileNetV3Small"])
    assert result.exit_code == 0, result.output
    name = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert urls == [f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/{name}"]
    assert f"MobileNetV3Small: {tmp_path / 'keras' / 'models' / name} (" in result.output
    assert (tmp_path / "keras" / "models" / name).read_bytes() == served.read_bytes()
