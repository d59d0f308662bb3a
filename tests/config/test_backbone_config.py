"""A Backbone entry and train.fine_tune in the config: validated without Keras, with a key path, a line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltool.config import config_to_yaml, json_schema, load_config
from dltool.errors import ConfigError

CONFIG = """\
name: transfer
data: {{source: images, path: photos, image_size: [32, 32]}}
model:
  input_shape: [32, 32, 3]
  layers:
    - Backbone: {backbone}
    - {{Dense: {{units: 2, activation: softmax}}}}
train:
  loss: sparse_categorical_crossentropy
  epochs: {epochs}
{fine_tune}"""


def write(tmp_path: Path, backbone: str = "{application: MobileNetV3Small}", epochs: int = 3, fine_tune: str = ""):
    path = tmp_path / "transfer.yaml"
    path.write_text(CONFIG.format(backbone=backbone, epochs=epochs, fine_tune=fine_tune), encoding="utf-8")
    return path


def test_a_backbone_entry_keeps_every_default_in_the_resolved_config(tmp_path):
    config = load_config(write(tmp_path, fine_tune="  fine_tune: {unfreeze: 20}\n"))
    assert config.model.layers[0] == {
        "Backbone": {"application": "MobileNetV3Small", "weights": "imagenet", "trainable": False, "pooling": "avg"}
    }
    assert config.train.fine_tune.model_dump() == {"unfreeze": 20, "epochs": 10, "learning_rate": 1e-5}
    assert config.train.total_epochs == 13
    text = config_to_yaml(config)
    assert "Backbone: {application: MobileNetV3Small, weights: imagenet, trainable: false, pooling: avg}" in text


def test_a_run_backbone_needs_no_weights_and_pools_nothing_by_default(tmp_path):
    config = load_config(write(tmp_path, "{run: latest, up_to: flatten}"))
    assert config.model.layers[0] == {
        "Backbone": {"run": "latest", "up_to": "flatten", "trainable": False, "pooling": None}
    }


def test_fine_tune_true_takes_the_defaults_and_epochs_zero_goes_straight_to_it(tmp_path):
    config = load_config(write(tmp_path, epochs=0, fine_tune="  fine_tune: true\n"))
    assert (config.train.epochs, config.train.fine_tune.epochs, config.train.total_epochs) == (0, 10, 10)


@pytest.mark.parametrize(
    ("backbone", "epochs", "fine_tune", "where", "phrase"),
    [
        (
            "{application: MobileNetV3Smal}",
            3,
            "",
            "6: model.layers[0].Backbone.application",
            "unknown application 'MobileNetV3Smal'; did you mean 'MobileNetV3Small'? (any model of keras.applications)",
        ),
        (
            "{application: MobileNetV3Small, alpah: 0.75}",
            3,
            "",
            "6: model.layers[0].Backbone.alpah",
            "unknown argument 'alpah' for MobileNetV3Small; did you mean 'alpha'?",
        ),
        (
            "{application: ResNet50, alpha: 0.75}",
            3,
            "",
            "6: model.layers[0].Backbone.alpha",
            "unknown argument 'alpha' for ResNet50; ResNet50 takes no arguments of its own",
        ),
        ("{run: latest}", 3, "", "6: model.layers[0].Backbone", "a run backbone needs up_to"),
        ("{}", 3, "", "6: model.layers[0].Backbone", "expected exactly one of application, preset or run"),
        (
            "{application: VGG16, run: latest, up_to: 2}",
            3,
            "",
            "6: model.layers[0].Backbone",
            "expected exactly one of application, preset or run, received application and run",
        ),
        (
            "{run: latest, up_to: 2, weights: none}",
            3,
            "",
            "6: model.layers[0].Backbone",
            "weights applies to an application backbone",
        ),
        (
            "{application: VGG16, pooling: mean}",
            3,
            "",
            "6: model.layers[0].Backbone.pooling",
            "expected one of 'avg' or 'max', received 'mean'",
        ),
        (
            "{application: VGG16, trainable: true}",
            3,
            "  fine_tune: {epochs: 2}\n",
            "11: train.fine_tune",
            "the backbone trains from the start (trainable: true), so fine_tune has nothing to unfreeze",
        ),
        (
            "{application: VGG16}",
            3,
            "  fine_tune: {unfreeze: '(conv'}\n",
            "11: train.fine_tune.unfreeze",
            "expected a regular expression: missing ), unterminated subpattern at position 0",
        ),
        (
            "{application: VGG16}",
            3,
            "  fine_tune: {unfreeze: 0}\n",
            "11: train.fine_tune.unfreeze",
            "expected all, a number of layers >= 1 or a regular expression",
        ),
        (
            "{application: VGG16}",
            0,
            "",
            "10: train.epochs",
            "expected an integer >= 1, received 0; epochs: 0 goes with a fine_tune phase, which then starts at once",
        ),
    ],
)
def test_a_bad_backbone_or_fine_tune_is_refused_with_its_key_path_and_line(
    tmp_path, backbone, epochs, fine_tune, where, phrase
):
    path = write(tmp_path, backbone, epochs, fine_tune)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{where}: "), message
    assert phrase in message and "\n" not in message


def test_fine_tune_without_a_backbone_and_a_backbone_after_the_first_layer_are_refused(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(
        CONFIG.format(backbone="{application: VGG16}", epochs=2, fine_tune="  fine_tune: true\n").replace(
            "    - Backbone: {application: VGG16}\n", "    - Flatten\n"
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"train.fine_tune: fine_tune unfreezes a backbone, and model.layers has none"
    ):
        load_config(path)
    path.write_text(
        CONFIG.format(backbone="{application: VGG16}", epochs=2, fine_tune="").replace(
            "    - Backbone: {application: VGG16}\n", "    - Flatten\n    - Backbone: {application: VGG16}\n"
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError,
        match=r"model.layers\[1\]: a Backbone comes first in model.layers, alone in its "
        r"item, after data augmentation layers only \(RandomFlip, RandomRotation, ...\): it takes the "
        r"inputs as the data gives them; received Flatten before it",
    ):
        load_config(path)
    path.write_text(
        CONFIG.format(backbone="{application: VGG16}", epochs=2, fine_tune="").replace(
            "    - Backbone: {application: VGG16}\n",
            "    - RandomFlip\n    - {RandomRotation: {factor: 0.1}}\n    - Backbone: {application: VGG16}\n",
        ),
        encoding="utf-8",
    )
    assert load_config(path).model.layers[2]["Backbone"]["application"] == "VGG16"


def test_the_json_schema_offers_the_application_names_and_refuses_a_misspelt_one(tmp_path):
    import jsonschema
    import yaml

    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(write(tmp_path, fine_tune="  fine_tune: {unfreeze: 20}\n").read_text())
    assert list(validator.iter_errors(good)) == []
    names = schema["$defs"]["BackboneConfig"]["properties"]["application"]["anyOf"][0]["enum"]
    assert "MobileNetV3Small" in names and "EfficientNetB0" in names and len(names) >= 40
    bad = yaml.safe_load(write(tmp_path, "{application: MobileNetV3Smal}").read_text())
    assert list(validator.iter_errors(bad))
    no_phase = yaml.safe_load(write(tmp_path, epochs=0).read_text())
    assert list(validator.iter_errors(no_phase))
