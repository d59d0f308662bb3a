"""The images source (a folder per class), CNN configs with augmentation, and image predict/evaluate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from e2e_support import config_with_data_path, train_in

from dltool.config import config_from_text
from dltool.errors import ConfigError, DataError, InputError

COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}

IMAGES_CONFIG = """
name: shapes
seed: 3
data: {{source: images, path: {path}, image_size: [12, 16], color_mode: rgb, test: 0.25, validation: 0.2}}
model:
  input_shape: [12, 16, 3]
  layers:
    - RandomFlip: {{mode: horizontal}}
    - RandomRotation: {{factor: 0.05}}
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 4, kernel_size: 3, activation: relu}}
    - MaxPooling2D
    - Flatten
    - Dense: {{units: 3, activation: softmax}}
train:
  optimizer: {{name: adam, learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: 4
  batch_size: 8
  tensorboard: false
"""


def write_image(path, color, size=(20, 15), seed=0, mode="RGB"):
    """A noisy solid-colour image of ``size`` (width, height)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (np.array(color) + rng.integers(-25, 25, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    image.convert(mode).save(path)
    return path


def make_class_folders(root, per_class=8, classes=COLORS):
    for name, color in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            # Sizes vary: every image is resized to data.image_size; JPEGs and nested folders are found too.
            suffix = ".jpg" if i % 4 == 3 else ".png"
            folder = root / name / ("more" if i % 5 == 4 else "")
            folder.mkdir(exist_ok=True)
            write_image(folder / f"{name}{i}{suffix}", color, size=(20 + i, 15), seed=i)
    return root


def load(root, extra=""):
    from dltool.data.images import load as load_images

    return load_images(config_from_text(IMAGES_CONFIG.format(path=json.dumps(str(root))) + extra).data)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("photos") / "photos")


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, image_folder):
    return train_in(
        tmp_path_factory.mktemp("shapes"), config_with_data_path(IMAGES_CONFIG, image_folder, source="shapes.yaml")
    )


# --------------------------------------------------------------------------- loading
def test_folder_per_class_gives_sorted_classes_resized_uint8_images(image_folder):
    raw = load(image_folder)
    assert raw.class_names == ["blue", "green", "red"]
    assert raw.x.shape == (24, 12, 16, 3) and raw.x.dtype == np.uint8
    assert np.bincount(raw.y).tolist() == [8, 8, 8]
    red = raw.x[raw.y == 2].reshape(-1, 3).mean(axis=0)
    assert red[0] > 150 and red[1] < 80 and red[2] < 80  # channels in RGB order


def test_grayscale_mode_and_chosen_classes(image_folder):
    from dltool.data.images import load as load_images

    config = config_from_text(
        IMAGES_CONFIG.format(path=json.dumps(str(image_folder))),
        overrides=["data.color_mode=grayscale", "data.classes=[red, blue]"],
    )
    raw = load_images(config.data)
    assert raw.class_names == ["red", "blue"]
    assert raw.x.shape == (16, 12, 16, 1)


def test_image_size_may_be_one_number():
    config = config_from_text(IMAGES_CONFIG.format(path='"x"'), overrides=["data.image_size=32"])
    assert config.data.image_size == [32, 32]


@pytest.mark.parametrize(
    "setup, key, phrase",
    [
        ("missing", "data.path", "image folder not found"),
        (
            "flat",
            "data.path",
            "expected one subfolder per class (at least 2), found 0 subfolder(s) and 2 loose image(s)",
        ),
        ("unknown-class", "data.classes", "no class folder 'gren'"),
    ],
)
def test_folder_mistakes_are_config_errors(tmp_path, setup, key, phrase):
    root = tmp_path / "pics"
    extra = []
    if setup == "flat":
        root.mkdir()
        write_image(root / "a.png", (1, 2, 3))
        write_image(root / "b.png", (1, 2, 3))
    elif setup == "unknown-class":
        make_class_folders(root, per_class=1)
        extra = ["data.classes=[red, gren]"]
    from dltool.data.images import load as load_images

    config = config_from_text(IMAGES_CONFIG.format(path=json.dumps(str(root))), overrides=extra)
    with pytest.raises(ConfigError) as info:
        load_images(config.data)
    assert info.value.path == key
    assert phrase in str(info.value)
    if setup == "unknown-class":
        assert "did you mean 'green'?" in str(info.value)


def test_an_empty_class_folder_and_a_corrupt_image_are_named(tmp_path):
    root = make_class_folders(tmp_path / "pics", per_class=2)
    (root / "purple").mkdir()
    with pytest.raises(DataError, match="purple: the class folder holds no images"):
        load(root)
    (root / "purple" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken.png: cannot read as an image"):
        load(root)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_input_shape_that_does_not_match_image_size_says_what_to_set(tmp_path, image_folder):
    from dltool.commands.train import prepare

    config = config_from_text(
        IMAGES_CONFIG.format(path=json.dumps(str(image_folder))),
        source="shapes.yaml",
        overrides=["model.input_shape=[12, 16, 1]"],
    )
    with pytest.raises(ConfigError, match=r"set model.input_shape: \[12, 16, 3\]"):
        prepare(config)


# --------------------------------------------------------------------------- a trained run
def test_run_saves_class_names_and_image_settings(shapes_run):
    assert shapes_run.status == "COMPLETED"
    state = shapes_run.read_json("preprocessing.json")
    assert state["kind"] == "image"
    assert state["class_names"] == ["blue", "green", "red"]
    assert state["extra"]["image"] == {
        "size": [12, 16],
        "color_mode": "rgb",
        "interpolation": "bilinear",
        "channel_axis": True,
    }
    sizes = shapes_run.info["data"]
    assert (sizes["train"], sizes["validation"], sizes["test"]) == (14, 4, 6)
    assert "seed 3" in sizes["test_split"]
    assert shapes_run.file("confusion_matrix.png").is_file()


def test_augmentation_is_saved_with_the_model_and_inactive_at_inference(shapes_run, image_folder):
    from dltool.commands.predict import predict
    from dltool.saved_run import SavedRun

    model = SavedRun.open(shapes_run).load_model()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:3] == ["RandomFlip", "RandomRotation", "Rescaling"]
    image = sorted((image_folder / "red").glob("*.png"))[0]
    first = predict(shapes_run, [image]).output
    assert predict(shapes_run, [image]).output == first  # no random flip/rotation at predict time
    # Training mode does augment: the same batch gives different outputs.
    x = np.random.default_rng(0).integers(0, 256, (4, 12, 16, 3)).astype("float32")
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=True)))


def test_predict_on_files_and_folders_writes_file_label_and_probabilities(shapes_run, image_folder, tmp_path):
    from dltool.commands.predict import predict

    red = write_image(tmp_path / "new_red.png", COLORS["red"], size=(40, 30), seed=99)
    result = predict(shapes_run, [red, image_folder / "blue"], output=tmp_path / "out.csv")
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert result.rows == 1 + 8
    assert list(rows[0]) == ["input", "row", "label", "prob_blue", "prob_green", "prob_red"]
    assert rows[0]["input"] == str(red)
    assert {r["input"].split("/")[-2] for r in rows[1:]} <= {"blue", "more"}
    for row in rows:
        assert sum(float(row[f"prob_{c}"]) for c in COLORS) == pytest.approx(1, abs=1e-4)
    json_rows = json.loads(predict(shapes_run, [red], fmt="json").output)
    assert set(json_rows[0]["probabilities"]) == set(COLORS)


def test_predict_reads_images_exactly_as_training_did(shapes_run, image_folder):
    from dltool.data.images import ImageSettings, read_image
    from dltool.inputs import load_image
    from dltool.saved_run import SavedRun

    saved = SavedRun.open(shapes_run)
    image = sorted((image_folder / "green").rglob("*.jpg"))[0]
    settings = ImageSettings.from_dict(saved.preprocessing.extra["image"])
    assert np.array_equal(load_image(image, saved.preprocessing), read_image(image, settings))


def test_predict_refuses_what_an_image_model_cannot_read(shapes_run, tmp_path):
    from dltool.commands.predict import predict

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"cannot read '.txt' files"):
        predict(shapes_run, [tmp_path / "notes.txt"])
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(InputError, match=r"fake.png: cannot read as an image"):
        predict(shapes_run, [tmp_path / "fake.png"], output=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no files this model can read"):
        predict(shapes_run, [tmp_path / "empty"])


def test_evaluate_on_its_test_split_and_on_a_labelled_folder(shapes_run, image_folder, tmp_path):
    from dltool.commands.evaluate import evaluate

    own = evaluate(shapes_run)
    assert own["samples"] == 6
    assert own["classification"]["per_class"].keys() == {"blue", "green", "red"}
    assert evaluate(shapes_run)["compiled"] == own["compiled"]  # the same test split again
    other = make_class_folders(
        tmp_path / "holdout", per_class=2, classes={"red": COLORS["red"], "blue": COLORS["blue"]}
    )
    result = evaluate(shapes_run, data_file=other)
    assert result["samples"] == 4
    assert result["classification"]["per_class"]["green"]["support"] == 0
    (other / "purple").mkdir()
    with pytest.raises(InputError, match="subfolder 'purple' is not one of the run's classes"):
        evaluate(shapes_run, data_file=other)


def test_a_folder_too_large_for_memory_is_refused_before_decoding(image_folder, monkeypatch):
    import os

    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 4 if name == "SC_PHYS_PAGES" else real(name))
    with pytest.raises(DataError, match=r"24 images of \[12, 16, 3\] need about .* GiB in memory"):
        load(image_folder)


def test_standardize_is_per_colour_channel(image_folder):
    from dltool.data import prepare_data

    data = prepare_data(config_with_data_path(IMAGES_CONFIG, image_folder, ["data.standardize=true"]))
    assert np.asarray(data.preprocessing.mean).shape == (3,)
