"""data.resample and data.sample_weight in the config: shapes, bounds, roles and the combinations refused, by the
messages a user reads (issue 25). No data is read: config_from_text only."""

from __future__ import annotations

import pytest

from dltool.config import config_from_text, json_schema
from dltool.errors import ConfigError

CLASSIFIER = """\
name: resampled
data:
  source: csv
  path: data.csv
  target: label
  %s
model: {input_shape: [2], layers: [{Dense: {units: 2, activation: softmax}}]}
train:
  loss: sparse_categorical_crossentropy
"""


def load(line: str, loss: str = "sparse_categorical_crossentropy"):
    return config_from_text((CLASSIFIER % line).replace("sparse_categorical_crossentropy", loss), source="c.yaml")


def error_of(line: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load(line, **kwargs)
    return str(caught.value)


def test_resample_takes_minority_majority_or_factors_by_label():
    assert load("resample: {oversample: minority}").data.resample.oversample == "minority"
    assert load("resample: {undersample: majority}").data.resample.undersample == "majority"
    # Labels as the run names its classes: 3 and 3.0 are "3".
    assert load("resample: {oversample: {rare: 4, 3.0: 1.5}}").data.resample.oversample == {"rare": 4.0, "3": 1.5}
    assert load("resample: {undersample: {common: 0.25, 7: 1}}").data.resample.undersample == {"common": 0.25, "7": 1.0}
    assert load("resample: null").data.resample is None


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "resample: {oversample: minority, undersample: majority}",
            "c.yaml:6: data.resample: expected exactly one of oversample (minority or {label: factor}) or "
            "undersample (majority or {label: factor})",
        ),
        ("resample: {}", "c.yaml:6: data.resample: expected exactly one of oversample"),
        (
            "resample: {oversample: majority}",
            "data.resample.oversample: expected minority or a mapping {label: factor} with factors >= 1, "
            "received 'majority'",
        ),
        ("resample: {oversample: {rare: 0.5}}", "label 'rare': expected a factor >= 1, received 0.5"),
        (
            "resample: {undersample: {common: 2}}",
            "label 'common': expected a factor between 0 (exclusive) and 1, received 2",
        ),
        ("resample: {undersample: {common: 0}}", "label 'common': expected a factor between 0 (exclusive) and 1"),
        ("resample: {oversample: {rare: .nan}}", "label 'rare': expected a factor >= 1, received nan"),
        (
            "resample: {oversample: {rare: 2, rare: 3}}",
            "c.yaml:6: data.resample.oversample: duplicate key 'rare' (first at line 6); each key may appear once",
        ),
        (
            "resample: {oversmaple: minority}",
            "c.yaml:6: data.resample.oversmaple: unknown key 'oversmaple'; did you mean 'oversample'?",
        ),
    ],
)
def test_a_bad_resample_is_named(line, message):
    assert message in error_of(line)


def test_resample_on_a_regression_loss_is_a_config_error_naming_the_key():
    assert error_of("resample: {undersample: majority}", loss="mse") == (
        "c.yaml:6: data.resample.undersample: resampling by class applies to classification losses only, received "
        "loss 'mse' (regression); remove data.resample, or use a classification loss such as "
        "sparse_categorical_crossentropy"
    )


def test_sample_weight_is_a_column_of_its_own():
    assert load("sample_weight: w").data.sample_weight == "w"
    assert "'label' is the target column (data.target); the sample weight is a column of its own" in error_of(
        "sample_weight: label"
    )
    text = "features: [a, w]\n  sample_weight: w"
    assert "data.sample_weight: 'w' is listed in data.features; the sample weight" in error_of(text)
    text = "exclude: [w]\n  sample_weight: w"
    assert "'w' is listed in data.exclude" in error_of(text)
    text = "split_key: w\n  sample_weight: w"
    assert "'w' is the split key (data.split_key)" in error_of(text)


def test_sample_weight_with_class_weight_is_refused_as_keras_refuses_it():
    text = (CLASSIFIER % "sample_weight: w") + "  class_weight: balanced\n"
    with pytest.raises(ConfigError) as caught:
        config_from_text(text, source="c.yaml")
    assert str(caught.value) == (
        "c.yaml:6: data.sample_weight: data.sample_weight (w) and train.class_weight cannot both weigh the loss: "
        "Keras's fit takes one or the other; remove train.class_weight, or multiply the class weights into the "
        "weight column"
    )


def test_sample_weight_is_for_tables_only():
    text = (
        "name: n\ndata: {source: sklearn, name: iris, sample_weight: w}\nmodel: {input_shape: [4], layers: [Dense]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        config_from_text(text + "train: {loss: sparse_categorical_crossentropy}\n", source="c.yaml")
    assert "data.sample_weight" in str(caught.value)


def test_resample_and_sample_weight_in_the_json_schema():
    defs = json_schema()["$defs"]
    resample = defs["Resample"]["properties"]
    over = resample["oversample"]["anyOf"]
    assert {"const": "minority", "type": "string"} in over or {"enum": ["minority"], "type": "string"} in over
    mapping = next(kind for kind in over if kind.get("type") == "object")
    assert mapping["additionalProperties"]["minimum"] == 1
    under = next(kind for kind in resample["undersample"]["anyOf"] if kind.get("type") == "object")
    assert under["additionalProperties"]["exclusiveMinimum"] == 0 and under["additionalProperties"]["maximum"] == 1
    assert "resample" in defs["CsvData"]["properties"] and "resample" in defs["ImageData"]["properties"]
    assert (
        "sample_weight" in defs["ParquetData"]["properties"] and "sample_weight" not in defs["ImageData"]["properties"]
    )
