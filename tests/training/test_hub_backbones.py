"""A keras-hub preset folder as the Backbone: tiny presets written offline with save_to_preset, trained one epoch
on a tiny image folder, loaded back, predicted, exported; every refusal by its message."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import zipfile

import numpy as np
import pytest
from e2e_support import stop_after

from dltool.errors import ConfigError

needs_hub = pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None, reason="keras-hub is not installed")

SIZE = 32
RESNET_SCALE = [1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)]  # ImageNet's mean and std, per channel
RESNET_OFFSET = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]


# --------------------------------------------------------------------------- the folder (no Keras)
def _preset_folder(preset):
    from dltool.training.hub_backbones import preset_folder

    return preset_folder(str(preset), "model.layers[0].Backbone.preset")


def test_a_preset_that_is_no_folder_on_disk_is_refused(tmp_path):
    with pytest.raises(ConfigError) as error:
        _preset_folder(tmp_path / "resnet_18_imagenet")
    assert str(error.value).startswith(
        f"model.layers[0].Backbone.preset: preset folder {tmp_path / 'resnet_18_imagenet'} does not exist; "
        "expected a keras-hub preset folder on disk (config.json, metadata.json, model.weights.h5, "
        "image_converter.json); on a machine with internet, save one with keras-hub: "
    )
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"preset .*weights\.h5 is a file; expected a keras-hub preset folder"):
        _preset_folder(tmp_path / "weights.h5")
    with pytest.raises(ConfigError) as error:
        _preset_folder("kaggle://keras/resnetv2/keras/resnet_50_v2_imagenet")
    assert "is a download handle, and dltool loads presets from a folder on disk only" in str(error.value)


def test_a_folder_that_is_no_keras_hub_preset_says_what_it_holds(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as error:
        _preset_folder(tmp_path)
    assert str(error.value) == (
        f"model.layers[0].Backbone.preset: {tmp_path} is not a keras-hub preset: it has no metadata.json (found: "
        "config.json, photo.png); expected the folder Backbone.save_to_preset(DIR) writes (config.json, "
        "metadata.json, model.weights.h5, image_converter.json)"
    )
    (tmp_path / "metadata.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 768}))
    with pytest.raises(ConfigError) as error:
        _preset_folder(tmp_path)
    assert (
        f"{tmp_path / 'config.json'} is a Hugging Face Transformers config, not a keras-hub preset's "
        "(it names no registered_name)"
    ) in str(error.value)


def test_a_missing_keras_hub_names_the_hub_extra(monkeypatch):
    from dltool.training.hub_backbones import import_keras_hub

    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ConfigError) as error:
        import_keras_hub("model.layers[0].Backbone.preset")
    message = str(error.value)
    assert message.startswith(
        "model.layers[0].Backbone.preset: a preset backbone needs keras-hub, which is not installed: pip install "
    )
    assert "[hub]" in message and message.endswith("(or: pip install keras-hub)")
    assert ConfigError.exit_code == 2


# --------------------------------------------------------------------------- tiny presets, written offline
def _save(folder, backbone, converter):
    backbone.save_to_preset(str(folder))
    if converter is not None:
        converter.save_to_preset(str(folder))
    return folder


def _resnet(folder, converter=True):
    """A ResNet of Keras's own layers only (a 64-filter stem is keras-hub's rule), ImageNet's normalization."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    image_converter = keras_hub.layers.ResNetImageConverter(
        image_size=(SIZE, SIZE), scale=RESNET_SCALE, offset=RESNET_OFFSET
    )
    return _save(folder, backbone, image_converter if converter else None)


def _vit(folder):
    """A ViT of keras-hub's layers, giving tokens (batch, 17, 16): 16 patches and the class token."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=(8, 8), num_layers=1, hidden_dim=16, num_heads=2, mlp_dim=32
    )
    return _save(
        folder, backbone, keras_hub.layers.ViTImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    )


def _dinov2(folder):
    """A DINOv2, whose input is a dict {"images": ...} and whose MLP computes exact GELU."""
    import keras_hub

    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=14,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(28, 28, 3),
        position_embedding_shape=(28, 28, 3),
    )
    return _save(folder, backbone, keras_hub.layers.DINOV2ImageConverter(image_size=(28, 28), scale=1 / 255))


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Tiny presets written offline: resnet, vit, dinov2, and broken ones."""
    import keras_hub

    root = tmp_path_factory.mktemp("presets")
    folders = {"resnet": _resnet(root / "resnet"), "vit": _vit(root / "vit"), "dinov2": _dinov2(root / "dinov2")}
    folders["no_converter"] = _resnet(root / "no_converter", converter=False)
    folders["no_weights"] = _resnet(root / "no_weights")
    (folders["no_weights"] / "model.weights.h5").unlink()
    text = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8, max_sequence_length=8
    )
    folders["text"] = _save(root / "text", text, None)
    return folders


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two classes of 12 random RGB photos of 40x30 pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _config(photos, preset, size=SIZE, color_mode="rgb", epochs=1, extra=""):
    from dltool.config import config_from_text

    channels = 3 if color_mode == "rgb" else 1
    text = f"""
name: hub-test
seed: 0
data: {{source: images, path: {json.dumps(str(photos))}, image_size: [{size}, {size}], color_mode: {color_mode},
        scale: 255, test: 0.25, validation: null}}
model:
  input_shape: [{size}, {size}, {channels}]
  layers:
    - Backbone: {{preset: {json.dumps(str(preset))}}}
    - Dense: {{units: 2, activation: softmax}}
train: {{loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: {epochs}, batch_size: 8, tensorboard: false
        {extra}}}
"""
    return config_from_text(text, source="hub.yaml")


def _train(tmp_path_factory, photos, preset, **kwargs):
    from dltool.commands.train import train

    return train(_config(photos, preset, **kwargs), runs_root=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, photos, presets):
    return _train(tmp_path_factory, photos, presets["resnet"])


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, photos, presets):
    """A ViT preset frozen for one epoch, then fine-tuned (its encoder unfrozen) for one more."""
    extra = ", fine_tune: {unfreeze: 1, epochs: 1, learning_rate: 0.0001}"
    return _train(tmp_path_factory, photos, presets["vit"], extra=extra)


def _model_config(run) -> str:
    with zipfile.ZipFile(run.file("model.keras")) as archive:
        return archive.read("config.json").decode()


# --------------------------------------------------------------------------- building, training, loading
@pytest.mark.parametrize("preset", ["resnet", "vit", "dinov2"])
@pytest.mark.slow
@needs_hub
def test_the_backbone_is_the_presets_converter_then_its_backbone_pooled(presets, preset):
    """The model's backbone on 0..1 inputs (data.scale 255) computes what keras-hub's converter and backbone do
    on the 0..255 pixels, averaged over the feature map or the tokens."""
    import keras
    import keras_hub

    from dltool.training.backbones import build_backbone

    size = 28 if preset == "dinov2" else SIZE
    built = build_backbone(_config("unused", presets[preset], size=size))
    pixels = np.random.default_rng(1).integers(0, 256, (3, size, size, 3)).astype("float32")
    hub_backbone = keras_hub.models.Backbone.from_preset(str(presets[preset]))
    converter = keras_hub.layers.ImageConverter.from_preset(str(presets[preset]))
    features = keras.ops.convert_to_numpy(hub_backbone(converter(pixels)))
    expected = features.mean(axis=tuple(range(1, features.ndim - 1)))
    got = keras.ops.convert_to_numpy(built.model(pixels / 255.0))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    record = built.record
    weights = presets[preset] / "model.weights.h5"
    assert record["preset"] == str(presets[preset]) and record["weights_file"] == str(weights)
    assert record["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (
        record["backbone_class"]
        == {"resnet": "ResNetBackbone", "vit": "ViTBackbone", "dinov2": "DINOV2Backbone"}[preset]
    )
    assert record["kind"] == "preset" and record["trainable"] is False
    assert "input_scale" not in record and "core_input" not in record  # build_backbone's, not run.json's
    assert built.model.get_layer("preset_preprocessing").dtype == "float32"


@pytest.mark.slow
@pytest.mark.subprocess
@needs_hub
def test_a_resnet_preset_trains_and_its_model_loads_without_keras_hub(resnet_run, photos):
    import subprocess

    from e2e_support import REPO

    assert resnet_run.status == "COMPLETED"
    info = json.loads(resnet_run.file("run.json").read_text())
    assert info["backbone"]["backbone_class"] == "ResNetBackbone"
    assert info["parameters"]["trainable"] == 16 * 2 + 2  # the head only: the backbone is frozen
    assert "keras_hub" not in _model_config(resnet_run)  # Keras's own layers and a Rescaling
    script = (
        "import sys; sys.modules['keras_hub'] = None\n"
        "from dltool.commands.predict import predict\n"
        f"print(predict({str(resnet_run.path)!r}, [{str(photos / 'cats' / '0.png')!r}]).output)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "label,prob_cats,prob_dogs" in result.stdout


@pytest.mark.slow
@needs_hub
def test_a_vit_preset_trains_both_phases_and_loads_frozen_as_it_was_saved(vit_run, photos):
    import h5py
    import keras

    from dltool.commands.evaluate import evaluate
    from dltool.commands.predict import predict
    from dltool.keras_io import load_model_safely
    from dltool.training.backbones import unfreeze

    assert vit_run.status == "COMPLETED"
    info = json.loads(vit_run.file("run.json").read_text())
    first, second = info["phases"]
    assert first["trainable"] == 16 * 2 + 2 and second["trainable"] > first["trainable"]
    assert '"module": "keras_hub.' in _model_config(vit_run)  # the ViT's own layers
    # Loaded for training on, with its second phase's layers unfrozen as resume does, the ViT has its optimizer's
    # state back: the optimizer is built for the layers that trained, not for the model keras-hub rebuilds.
    model = load_model_safely(vit_run.file("model.keras"), lambda model: unfreeze(model, 1))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == second["trainable"]
    with zipfile.ZipFile(vit_run.file("model.keras")) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as saved:
            optimizer = saved["optimizer"]["vars"]
            assert len(optimizer) == len(model.optimizer.variables) > 2
            for index, variable in enumerate(model.optimizer.variables):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), np.asarray(optimizer[str(index)]))
    assert evaluate(vit_run)["samples"] == 6
    rows = predict(vit_run, [photos / "dogs" / "1.png"]).output.splitlines()
    assert rows[0] == "input,row,label,prob_cats,prob_dogs" and len(rows) == 2


@pytest.mark.slow
@needs_hub
@pytest.mark.parametrize("stop_at", [1, 3], ids=["in-the-first-phase", "in-the-second-phase"])
def test_a_vit_preset_run_resumes_with_its_frozen_layers_frozen(tmp_path, photos, presets, stop_at):
    """Two frozen epochs, then two with the encoder unfrozen; stopped, then resumed: the ViT's patching layer
    never trains (keras-hub's file does not keep which of its layers were frozen; dltool sets them again)."""
    import keras
    import keras_hub

    from dltool.commands.resume import resume
    from dltool.commands.train import train
    from dltool.errors import TrainingInterrupted
    from dltool.keras_io import load_model_safely

    extra = ", fine_tune: {unfreeze: 1, epochs: 2, learning_rate: 0.001}"
    config = _config(photos, presets["vit"], epochs=2, extra=extra)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, runs_root=tmp_path / "runs", observer=stop_after(stop_at))
    run = resume(stopped.value.run)
    assert run.status == "COMPLETED" and run.info["resumes"][0]["from_epoch"] == stop_at
    trained = load_model_safely(run.file("model.keras")).get_layer("backbone").get_layer("pretrained")
    pretrained = keras_hub.models.Backbone.from_preset(str(presets["vit"]))
    for name in ("vit_patching_and_embedding", "vit_encoder"):
        before = [keras.ops.convert_to_numpy(w) for w in pretrained.get_layer(name).weights]
        after = [keras.ops.convert_to_numpy(w) for w in trained.get_layer(name).weights]
        same = all(np.array_equal(b, a) for b, a in zip(before, after))
        assert same == (name == "vit_patching_and_embedding"), name  # the encoder trained in the second phase


@pytest.mark.slow
def test_a_model_with_keras_hub_layers_names_the_hub_extra_where_keras_hub_is_missing(tmp_path, monkeypatch):
    from dltool.errors import RunStateError
    from dltool.keras_io import load_model_safely

    config = {"module": "keras_hub.src.models.vit.vit_layers", "class_name": "ViTEncoder", "config": {}}
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"layers": [config]}))
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(RunStateError) as error:
        load_model_safely(tmp_path / "model.keras")
    message = str(error.value)
    assert message.startswith(
        f"{tmp_path / 'model.keras'}: the model has keras-hub layers (ViTEncoder), and keras_hub is not installed: "
        "pip install "
    )
    assert "[hub]" in message


# --------------------------------------------------------------------------- refusals
def _refusal(photos, preset, **kwargs) -> str:
    from dltool.training.backbones import build_backbone

    with pytest.raises(ConfigError) as error:
        build_backbone(_config(photos, preset, **kwargs))
    return str(error.value)


@pytest.mark.slow
@needs_hub
def test_images_of_another_size_than_the_presets_are_refused_with_the_fix(presets, photos):
    folder = presets["resnet"]
    assert _refusal(photos, folder, size=24) == (
        f"model.input_shape: preset {folder} takes images of 32x32 with 3 channels (its ImageConverter's "
        "image_size), and model.input_shape is [24, 24, 3]; set model.input_shape: [32, 32, 3] and, for an image "
        "folder, data.image_size: [32, 32] (each image is resized once, from its file)"
    )
    assert _refusal(photos, folder, color_mode="grayscale") == (
        f"model.input_shape: preset {folder} takes images of 32x32 with 3 channels (its ImageConverter's "
        "image_size), and model.input_shape is [32, 32, 1]; set model.input_shape: [32, 32, 3] and "
        "data.color_mode: rgb"
    )


@pytest.mark.slow
@needs_hub
def test_a_preset_without_converter_or_weights_or_images_is_refused(presets, photos):
    folder = presets["no_converter"]
    assert _refusal(photos, folder) == (
        f"model.layers[0].Backbone.preset: preset {folder} has no image_converter.json, so how its ResNetBackbone "
        "expects its pixels is unknown; save the converter the backbone was pretrained with into the folder, e.g. "
        "keras_hub.layers.ImageConverter(image_size=(224, 224), scale=1/255).save_to_preset(DIR)"
    )
    folder = presets["no_weights"]
    assert _refusal(photos, folder) == (
        f"model.layers[0].Backbone.preset: preset {folder} has no weights: expected model.weights.h5 (or "
        "model.weights.json and its shards) beside its config.json, as Backbone.save_to_preset(DIR) writes them"
    )
    folder = presets["text"]
    assert _refusal(photos, folder) == (
        f"model.layers[0].Backbone.preset: preset {folder} is a BertBackbone, which takes token_ids (batch, None), "
        "segment_ids (batch, None), padding_mask (batch, None); expected an image backbone, which takes one batch "
        "of images (batch, height, width, channels): e.g. ResNetBackbone, EfficientNetBackbone, MobileNetBackbone, "
        "ViTBackbone, DINOV2Backbone"
    )


# --------------------------------------------------------------------------- export
@pytest.mark.slow
@needs_hub
@pytest.mark.parametrize("fmt", ["saved_model", "onnx"])
def test_a_resnet_preset_run_exports_verified(resnet_run, tmp_path, fmt):
    from dltool.commands.export import export

    record = export(resnet_run, fmt, output=tmp_path)
    assert record["max_abs_diff"] <= 1e-4 and record["samples"] == 6


@pytest.mark.slow
@needs_hub
def test_a_vit_preset_run_exports_to_saved_model_and_litert_and_onnx_refuses_it_in_words(vit_run, tmp_path):
    from dltool.commands.export import export
    from dltool.errors import ExportError

    for fmt in ("saved_model", "litert"):
        assert export(vit_run, fmt, output=tmp_path)["samples"] == 6
    with pytest.raises(ExportError) as error:
        export(vit_run, "onnx", output=tmp_path)
    message = str(error.value)
    assert message.startswith("onnx: tf2onnx left a tensor of layer ") and "position_embedding" in message
    assert message.endswith("the layer keeps it outside its weights; export this run as saved_model or litert")
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.slow
@needs_hub
def test_a_dinov2_preset_with_exact_gelu_trains_and_exports_to_onnx(tmp_path_factory, photos, presets, tmp_path):
    from dltool.commands.export import export

    run = _train(tmp_path_factory, photos, presets["dinov2"], size=28)
    assert run.status == "COMPLETED"
    assert export(run, "onnx", output=tmp_path)["max_abs_diff"] <= 1e-4
