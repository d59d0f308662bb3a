"""Backbones: each kind built on tiny inputs, the applications' preprocessing, missing weights, unfreezing, and a
run's two phases (BatchNormalization in inference mode, resumed across the boundary)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from e2e_support import stop_after

pytestmark = pytest.mark.slow

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of 12 32x32 RGB PNGs each, told apart by brightness."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label in range(3):
        (folder / f"c{label}").mkdir()
        for index in range(12):
            pixels = (rng.random((SIZE, SIZE, 3)) * 80 + label * 80).astype("uint8")
            Image.fromarray(pixels).save(folder / f"c{label}" / f"{index}.png")
    return folder


def experiment(photos, backbone: str, *, head: str = "", fine_tune: str = "", epochs: int = 2, stream: bool = False):
    from dltool.config import config_from_text

    text = f"""\
name: transfer
seed: 3
data: {{source: images, path: {photos}, image_size: [{SIZE}, {SIZE}], scale: 255, stream: {str(stream).lower()}}}
model:
  input_shape: [{SIZE}, {SIZE}, 3]
  layers:
    - Backbone: {backbone}
{head}    - {{Dense: {{units: 3, activation: softmax}}}}
train:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: 8
  deterministic: true
  tensorboard: false
{fine_tune}"""
    return config_from_text(text, source="transfer.yaml")


def small_cnn(photos, tmp_path, batch_norm: bool = True):
    """A trained run whose layers make a backbone: Conv2D, BatchNormalization, MaxPooling2D, Flatten, Dense, Dense."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    norm = "    - BatchNormalization\n    - {Dropout: {rate: 0.3}}\n" if batch_norm else ""
    text = f"""\
name: pretrain
seed: 1
data: {{source: images, path: {photos}, image_size: [{SIZE}, {SIZE}], scale: 255}}
model:
  input_shape: [{SIZE}, {SIZE}, 3]
  layers:
    - {{Conv2D: {{filters: 4, kernel_size: 3, activation: relu}}}}
{norm}    - MaxPooling2D
    - Flatten
    - {{Dense: {{units: 8, activation: relu}}}}
    - {{Dense: {{units: 3, activation: softmax}}}}
train: {{loss: sparse_categorical_crossentropy, epochs: 2, batch_size: 8, tensorboard: false}}
"""
    return train(config_from_text(text, source="pretrain.yaml"), runs_root=tmp_path / "runs")


# --------------------------------------------------------------------------- the applications' preprocessing
def test_every_application_s_preprocessing_is_keras_s_preprocess_input():
    import keras

    from dltool.training import backbones

    pixels = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    for module_name, mode in backbones.APPLICATION_PREPROCESSING.items():
        module = importlib.import_module(f"keras.applications.{module_name}")
        expected = np.asarray(module.preprocess_input(pixels.copy()))
        if mode == "inside":  # the model rescales its 0-255 inputs itself: preprocess_input passes them through
            np.testing.assert_array_equal(expected, pixels, err_msg=module_name)
            continue
        if mode == "caffe":  # BGR: dltool gives RGB minus the mean and reverses the first convolution's channels
            expected = expected[..., ::-1]
            core = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 3)])
            layers = backbones._application_preprocessing(mode, core)
        else:
            layers = backbones._application_preprocessing(mode, None)
        x = pixels
        for layer in layers:
            x = layer(x)
        np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-5, atol=1e-4, err_msg=module_name)


def test_a_caffe_application_sees_what_keras_s_preprocess_input_gives_it():
    import keras

    from dltool.training import backbones

    pixels = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    core = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    core.set_weights(reference.get_weights())
    x = pixels
    for layer in backbones._application_preprocessing("caffe", core):
        x = layer(x)
    expected = reference(keras.applications.vgg16.preprocess_input(pixels.copy()))
    np.testing.assert_allclose(np.asarray(core(x)), np.asarray(expected), rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- each kind, built
def test_an_application_backbone_trains_with_its_weights_file_recorded(photos, tmp_path):
    import keras

    from dltool.commands.train import train

    donor = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), minimalistic=True
    )
    file = tmp_path / "mobilenet.weights.h5"
    donor.save_weights(file)
    config = experiment(photos, f"{{application: MobileNetV3Small, minimalistic: true, weights: {file}}}")
    run = train(config, runs_root=tmp_path / "runs")
    info = json.loads(run.file("run.json").read_text())
    import hashlib

    assert info["backbone"]["weights_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert info["backbone"]["weights_file"] == str(file)
    assert info["parameters"]["trainable"] == 3 * 576 + 3 and info["parameters"]["frozen"] > 400_000
    trained = keras.saving.load_model(run.file("model.keras"))
    core = trained.get_layer("backbone").get_layer("pretrained")
    # frozen: the weights are still the file's
    np.testing.assert_array_equal(core.weights[0].numpy(), donor.weights[0].numpy())


def test_a_weights_file_of_another_architecture_is_refused_before_any_run_exists(photos, tmp_path):
    import keras

    from dltool.commands.train import train
    from dltool.errors import ConfigError

    file = tmp_path / "vgg.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)).save_weights(file)
    config = experiment(photos, f"{{application: MobileNetV3Small, weights: {file}}}")
    with pytest.raises(
        ConfigError,
        match=r"model.layers\[0\].Backbone.weights: weights file .*vgg.weights.h5 does "
        r"not fit MobileNetV3Small",
    ):
        train(config, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_grey_input_is_refused_for_pretrained_weights_with_the_fix(photos, tmp_path):
    from dltool.commands.train import prepare
    from dltool.config import config_from_text
    from dltool.errors import ConfigError

    text = experiment(photos, "{application: MobileNetV3Small}")
    grey = config_from_text(
        __import__("dltool.config", fromlist=["config_to_yaml"])
        .config_to_yaml(text)
        .replace("color_mode: rgb", "color_mode: grayscale")
        .replace(f"input_shape: [{SIZE}, {SIZE}, 3]", f"input_shape: [{SIZE}, {SIZE}, 1]"),
        source="grey.yaml",
    )
    with pytest.raises(ConfigError, match=r"take 3 colour channels.*set data.color_mode: rgb"):
        prepare(grey)


def test_an_earlier_run_is_cut_by_name_or_index_with_its_scaling_and_the_layer_list_on_a_wrong_name(photos, tmp_path):
    from dltool.commands.train import prepare
    from dltool.errors import ConfigError
    from dltool.training.backbones import pin_backbone

    earlier = small_cnn(photos, tmp_path)
    for up_to in ("flatten", 4, -3):
        config = pin_backbone(experiment(photos, f"{{run: {earlier.path}, up_to: {up_to}}}"))
        _, model = prepare(config)
        backbone = model.get_layer("backbone")
        assert backbone.output.shape[1:] == (15 * 15 * 4,), up_to
        assert model.dltool_backbone.record["up_to"] == "flatten"
    with pytest.raises(ConfigError) as caught:
        prepare(pin_backbone(experiment(photos, f"{{run: {earlier.path}, up_to: flaten}}")))
    assert "has no layer 'flaten'; did you mean 'flatten'? (0: conv2d, 1: batch_normalization, 2: dropout, " in str(
        caught.value
    )
    with pytest.raises(ConfigError, match=r"expected an index from -7 to 6, received 9"):
        prepare(pin_backbone(experiment(photos, f"{{run: {earlier.path}, up_to: 9}}")))


def test_an_earlier_run_s_backbone_computes_what_its_layers_computed(photos, tmp_path):
    """Same data scale, other data scale: the backbone's features are the earlier model's, from the same pixels."""
    import keras

    from dltool.commands.train import prepare
    from dltool.data.images import ImageSettings, read_image
    from dltool.training.backbones import pin_backbone

    earlier = small_cnn(photos, tmp_path, batch_norm=False)
    trained = keras.saving.load_model(earlier.file("model.keras"))
    features = keras.Model(trained.inputs, trained.get_layer("flatten").output)
    pixels = np.stack(
        [np.asarray(read_image(p, ImageSettings((SIZE, SIZE))), "float32") for p in sorted(photos.rglob("*.png"))[:4]]
    )
    for scale in (255, None):
        config = pin_backbone(experiment(photos, f"{{run: {earlier.path}, up_to: flatten}}"))
        if scale is None:  # the new run feeds 0-255 pixels: the backbone rescales them as the earlier run did
            data = config.data.model_copy(update={"scale": None})
            config = config.model_copy(update={"data": data})
        _, model = prepare(config)
        given = pixels / (scale or 1)
        np.testing.assert_allclose(
            np.asarray(model.get_layer("backbone")(given)), np.asarray(features(pixels / 255)), rtol=1e-5, atol=1e-5
        )


def test_missing_imagenet_weights_exit_2_with_one_line_and_no_run_folder(photos, tmp_path, monkeypatch):
    import urllib.error

    from typer.testing import CliRunner

    from dltool.cli.app import app

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    import keras.src.backend.config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))  # what $KERAS_HOME sets at import
    (tmp_path / "keras").mkdir()  # (Keras falls back to /tmp/.keras for a folder it cannot write, and so does dltool)
    config = tmp_path / "transfer.yaml"
    from dltool.config import config_to_yaml

    config.write_text(config_to_yaml(experiment(photos, "{application: MobileNetV3Small}")))
    for command in (["validate", str(config)], ["train", str(config), "--runs-dir", str(tmp_path / "runs")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
        target = tmp_path / "keras" / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
        assert line.startswith(f"error: {config}:") and "model.layers[0].Backbone.weights: MobileNetV3Small's " in line
        assert (
            "imagenet weights weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 are not in Keras's cache and "
            "could not be downloaded ([Errno -2] Name or service not known): download https://"
            "storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_"
            "float_no_top_v2.h5 on a machine with internet (or run `dltool weights fetch MobileNetV3Small` there) and "
            f"put the file at {target}; or set weights: none"
        ) in line
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_weights_in_the_cache_are_used_without_a_download_and_recorded(photos, tmp_path, monkeypatch):
    """A file put in Keras's cache by hand (as `dltool weights fetch` leaves it) is found offline."""
    import keras
    import keras.src.utils.file_utils as file_utils

    from dltool.commands.train import prepare

    def offline(url, *args, **kwargs):
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    import keras.src.backend.config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))  # what $KERAS_HOME sets at import
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    name = "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5"
    # Keras checks the file's hash when it has one: a file of the right architecture but other values fails that
    # check and is downloaded again, so the hash check is turned off for this stand-in file.
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    donor = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(224, 224, 3), minimalistic=True
    )
    with h5py.File(cache / name, "w") as handle:  # Keras's own files are legacy .h5 weights, as this one
        save_weights_to_hdf5_group(handle, donor)
    config = experiment(photos, "{application: MobileNetV3Small, minimalistic: true}")
    _, model = prepare(config)
    record = model.dltool_backbone.record
    assert record["weights_file"] == str(cache / name)
    assert len(record["weights_sha256"]) == 64
    core = model.get_layer("backbone").get_layer("pretrained")
    np.testing.assert_array_equal(core.weights[0].numpy(), donor.weights[0].numpy())


# --------------------------------------------------------------------------- unfreezing and the second phase
def test_unfreeze_takes_all_the_top_layers_or_a_regex_and_keeps_batch_norm_frozen(photos, tmp_path):
    from dltool.commands.train import prepare
    from dltool.errors import ConfigError
    from dltool.training.backbones import pin_backbone, unfreeze

    earlier = small_cnn(photos, tmp_path)
    config = pin_backbone(
        experiment(photos, f"{{run: {earlier.path}, up_to: flatten}}", fine_tune="  fine_tune: true\n")
    )
    _, model = prepare(config)
    assert not model.get_layer("backbone").trainable
    assert unfreeze(model, "all") == ["conv2d", "dropout", "max_pooling2d", "flatten"]
    core = model.get_layer("backbone").get_layer("pretrained")
    assert not core.get_layer("batch_normalization").trainable
    assert unfreeze(model, 2) == ["max_pooling2d", "flatten"] and not core.get_layer("conv2d").trainable
    assert unfreeze(model, "^conv") == ["conv2d"]
    with pytest.raises(ConfigError, match=r"train.fine_tune.unfreeze: no layer of the backbone matches '\^dense'"):
        unfreeze(model, "^dense")


def _history(run) -> list[list[float]]:
    header, *rows = run.file("history.csv").read_text().splitlines()
    keep = [i for i, name in enumerate(header.split(",")) if name != "epoch_seconds"]
    return [[float(row.split(",")[i]) for i in keep] for row in rows]


def test_two_phases_keep_batch_norm_in_inference_mode_and_resume_across_the_boundary(photos, tmp_path):
    import keras

    from dltool.commands.resume import resume
    from dltool.commands.train import train
    from dltool.errors import TrainingInterrupted
    from dltool.training.backbones import pin_backbone

    earlier = small_cnn(photos, tmp_path)
    config = pin_backbone(
        experiment(
            photos,
            f"{{run: {earlier.path}, up_to: flatten}}",
            head="    - {Dense: {units: 8, activation: relu}}\n",
            fine_tune="  fine_tune: {epochs: 2, learning_rate: 0.0001}\n",
            stream=True,  # a streamed run's epochs are seeded by their number: a resumed one repeats them exactly
        )
    )
    whole = train(config, runs_root=tmp_path / "whole")
    header = whole.file("history.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "phase"]
    assert [row[1] for row in _history(whole)] == [1, 1, 2, 2]
    info = json.loads(whole.file("run.json").read_text())
    first, second = info["phases"]
    assert first == {"phase": 1, "first_epoch": 1, "trainable": 15 * 15 * 4 * 8 + 8 + 8 * 3 + 3, "frozen": 112 + 16}
    assert second["first_epoch"] == 3 and second["unfrozen_layers"] == 4 and second["learning_rate"] == 1e-4
    assert second["trainable"] == first["trainable"] + 112 and second["frozen"] == 16  # BatchNormalization's 4x4
    assert "fine-tuning from epoch 3: 4 layer(s) of the backbone unfrozen" in whole.file("train.log").read_text()

    pretrained = keras.saving.load_model(earlier.file("model.keras"))
    tuned = keras.saving.load_model(whole.file("model.keras")).get_layer("backbone").get_layer("pretrained")
    for name in ("batch_normalization",):  # moving statistics and gamma/beta: as pretrained
        for before, after in zip(pretrained.get_layer(name).weights, tuned.get_layer(name).weights):
            np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.path)
    assert not np.array_equal(pretrained.get_layer("conv2d").kernel.numpy(), tuned.get_layer("conv2d").kernel.numpy())

    for stop_at in (2, 3):  # the first phase's last epoch, and inside the second phase
        parts = tmp_path / f"parts-{stop_at}"
        with pytest.raises(TrainingInterrupted):
            train(config, runs_root=parts, observer=stop_after(stop_at))
        (stopped,) = parts.iterdir()
        resumed = resume(str(stopped), runs_root=parts)
        np.testing.assert_allclose(_history(resumed), _history(whole), rtol=1e-4, err_msg=f"stopped at {stop_at}")
        assert json.loads(resumed.file("run.json").read_text())["phases"] == info["phases"]


def test_an_input_the_application_cannot_take_is_refused_with_keras_s_reason(photos, tmp_path):
    from dltool.commands.train import prepare
    from dltool.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        prepare(experiment(photos, "{application: Xception, weights: none}"))
    assert str(caught.value).startswith(
        "transfer.yaml:7: model.layers[0].Backbone: Keras refused Xception(input_shape=[32, 32, 3]): "
        "Input size must be at least 71x71"
    )


def test_augmentation_layers_may_come_before_the_backbone(photos, tmp_path):
    from dltool.commands.train import prepare

    config = experiment(photos, "{application: MobileNetV3Small, weights: none, minimalistic: true}")
    layers = [{"RandomFlip": {"mode": "horizontal"}}, *config.model.layers]
    config = config.model_copy(update={"model": config.model.model_copy(update={"layers": layers})})
    _, model = prepare(config)
    assert [layer.name for layer in model.layers] == ["random_flip", "backbone", "dense"]


def test_a_backbone_trained_from_the_start_keeps_batch_norm_and_dropout_in_inference_mode(photos, tmp_path):
    """Keras 3's fit passes training=True into nested models (keras-team/keras#20285): dltool freezes the backbone's
    BatchNormalization and turns its Dropout off instead, so training sees the features inference sees."""
    from dltool.commands.train import prepare
    from dltool.training.backbones import pin_backbone

    earlier = small_cnn(photos, tmp_path)
    _, model = prepare(pin_backbone(experiment(photos, f"{{run: {earlier.path}, up_to: flatten, trainable: true}}")))
    backbone = model.get_layer("backbone")
    core = backbone.get_layer("pretrained")
    assert core.get_layer("conv2d").trainable and not core.get_layer("batch_normalization").trainable
    assert core.get_layer("dropout").rate == 0.0
    pixels = np.random.default_rng(0).uniform(0, 1, (8, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(backbone(pixels, training=True)), np.asarray(backbone(pixels)))


def test_an_untrained_application_trains_from_scratch_with_its_batch_norm(photos):
    from dltool.commands.train import prepare

    _, model = prepare(experiment(photos, "{application: MobileNetV3Small, weights: none, trainable: true}"))
    core = model.get_layer("backbone").get_layer("pretrained")
    norms = [layer for layer in core._flatten_layers() if type(layer).__name__ == "BatchNormalization"]
    assert norms and all(layer.trainable for layer in norms)


@pytest.mark.subprocess
def test_fine_tuning_on_two_devices_compiles_the_second_phase_for_them(photos, tmp_path):
    """TensorFlow's MirroredStrategy: the fine-tuning phase's new optimizer is built in the strategy's scope,
    and a split that is one uneven batch is evened out rather than failing inside TensorFlow."""
    from e2e_support import run_cli

    (tmp_path / "pre.yaml").write_text(
        f"""\
name: pre
data: {{source: images, path: {photos}, image_size: [{SIZE}, {SIZE}], scale: 255}}
model:
  input_shape: [{SIZE}, {SIZE}, 3]
  layers: [{{Conv2D: {{filters: 4, kernel_size: 3, activation: relu}}}}, BatchNormalization, MaxPooling2D, Flatten,
           {{Dense: {{units: 3, activation: softmax}}}}]
train: {{loss: sparse_categorical_crossentropy, epochs: 1, batch_size: 8, tensorboard: false}}
"""
    )
    transfer = experiment(photos, "{run: latest, up_to: flatten}", fine_tune="  fine_tune: {epochs: 1}\n")
    from dltool.config import config_to_yaml

    (tmp_path / "transfer.yaml").write_text(
        config_to_yaml(transfer)
        .replace("deterministic: true", "deterministic: false")
        .replace("steps_per_execution: 32", "steps_per_execution: 1")
    )
    for config in ("pre.yaml", "transfer.yaml"):
        result = run_cli("train", config, "-q", "--runs-dir", "runs", "--devices", "2", cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr + result.stdout
    (pre,) = [p for p in (tmp_path / "runs").iterdir() if "-pre-" in p.name]
    # 3 validation images are one batch that MirroredStrategy cannot split 2/1: one is left out, and said so
    assert (
        "left out so every batch splits evenly over the devices: 1 validation sample(s)"
        in (pre / "train.log").read_text()
    )
    (run,) = [p for p in (tmp_path / "runs").iterdir() if "-transfer-" in p.name]
    info = json.loads((run / "run.json").read_text())
    assert "data parallel over 2 devices" in info["device"] and [p["phase"] for p in info["phases"]] == [1, 2]
