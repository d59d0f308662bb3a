"""The shipped JSON Schema (dltool/resources/schema.json) accepts what dltool accepts and rejects what it refuses.

Editors underline whatever the schema rejects, so every shipped config, `init` template and README example
must pass a standard validator (the `jsonschema` package, Draft 2020-12), short forms included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from dltool.config import config_from_text
from dltool.config.yamlio import load_yaml
from dltool.templates import SCHEMA_PATH, TEMPLATE_DIR

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)


def _docs_examples() -> list[str]:
    docs = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md")))
    return [text for text in re.findall(r"```yaml\n(.*?)```", docs, flags=re.S) if text.startswith("name:")]


def _schema_errors(data) -> list[str]:
    """Every error, with those inside anyOf/oneOf branches, as 'key.path: message'."""

    def flat(errors):
        for error in errors:
            yield f"{'.'.join(map(str, error.absolute_path)) or '<top>'}: {error.message}"
            yield from flat(error.context)

    return list(flat(VALIDATOR.iter_errors(data)))


SHIPPED = [(f"configs/{p.name}", p.read_text(encoding="utf-8")) for p in sorted((REPO / "configs").glob("*.yaml"))]
TEMPLATES = [
    (f"templates/{p.name}", p.read_text(encoding="utf-8").replace("{schema}", SCHEMA_PATH.as_uri()))
    for p in sorted(TEMPLATE_DIR.glob("*.yaml"))
]
README = [(f"docs example {i}", text) for i, text in enumerate(_docs_examples())]


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_there_is_something_to_check():
    assert len(SHIPPED) >= 10 and len(TEMPLATES) >= 6 and len(README) >= 4


@pytest.mark.parametrize("name, text", SHIPPED + TEMPLATES + README, ids=[n for n, _ in SHIPPED + TEMPLATES + README])
def test_every_shipped_config_template_and_readme_example_validates(name, text):
    config_from_text(text, source=name)  # dltool accepts it ...
    data, _ = load_yaml(text, source=name)
    assert _schema_errors(data) == []  # ... and so does the schema


BASE = {
    "name": "demo",
    "data": {"source": "csv", "path": "data.csv", "target": "label"},
    "model": {"input_shape": [4], "layers": [{"Dense": {"units": 3, "activation": "softmax"}}]},
    "train": {"loss": "sparse_categorical_crossentropy"},
}


def _with(section: str | None, **changes) -> dict:
    data = json.loads(json.dumps(BASE))
    (data[section] if section else data).update(changes)
    return data


def _data(**keys) -> dict:
    return _with(None, data=keys)


SHORT_FORMS = {
    "optimizer name": _with("train", optimizer="adam"),
    "optimizer mapping": _with("train", optimizer={"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}),
    "one metric": _with("train", metrics="accuracy"),
    "callbacks true": _with(
        "train", callbacks={"early_stopping": True, "checkpoint": False, "reduce_lr_on_plateau": {"factor": 0.5}}
    ),
    "callbacks null": _with("train", callbacks=None),
    "jit_compile auto": _with("train", jit_compile="auto"),
    "input_shape number": _with("model", input_shape=4),
    "bare layer, null arguments": _with(
        "model", layers=["Flatten", {"Dropout": {"rate": 0.1}}, {"BatchNormalization": None}]
    ),
    "stream true": _with("data", stream=True),
    "validation test": _with("data", validation="test"),
    "validation null": _with("data", validation=None),
    "test builtin": _with("data", test="builtin"),
    "integer written as float": _with("train", epochs=3.0),
    "image_size number": _data(source="images", path="pics", image_size=64),
    "timeseries target name": _data(source="timeseries", path="s.csv", target="value", window=8),
    "timeseries target list": _data(source="timeseries", path="s.csv", target=["a", "b"], window=8),
}


@pytest.mark.parametrize("data", SHORT_FORMS.values(), ids=SHORT_FORMS.keys())
def test_short_forms_that_dltool_accepts_pass_the_schema(data):
    from dltool.config import validate_config

    validate_config(json.loads(json.dumps(data)))  # dltool accepts it (validation may fill in data)
    assert _schema_errors(data) == []


INVALID = {
    "unknown top-level key": (_with(None, epochs=3), "<top>: Additional properties are not allowed ('epochs' was"),
    "unknown key in data": (_with("data", targte="label"), "data: Additional properties are not allowed ('targte' was"),
    "unknown key in train": (_with("train", epoch=3), "train: Additional properties are not allowed ('epoch' was"),
    "unknown key in a callback": (_with("train", callbacks={"early_stopping": {"patients": 3}}), "'patients' was"),
    "epochs a word": (_with("train", epochs="five"), "train.epochs: 'five' is not of type 'integer'"),
    "epochs zero": (_with("train", epochs=0), "train.epochs: 0 is less than the minimum of 1"),
    "batch_size a fraction": (_with("train", batch_size=2.5), "train.batch_size: 2.5 is not of type 'integer'"),
    "validation out of range": (_with("data", validation=1.5), "data.validation: 1.5 is greater than or equal to"),
    "unknown source": (_data(source="parquet", path="x.parquet"), "data.source: 'csv' was expected"),
    "missing source": (_data(path="x.csv", target="y"), "data: 'source' is a required property"),
    "missing loss": (_with(None, train={"epochs": 3}), "train: 'loss' is a required property"),
    "missing model": ({k: v for k, v in BASE.items() if k != "model"}, "<top>: 'model' is a required property"),
    "name with a space": (_with(None, name="my run"), "name: 'my run' does not match"),
    "shuffle a word": (_with("train", shuffle="maybe"), "train.shuffle: 'maybe' is not of type 'boolean'"),
    "image_size of three": (
        _data(source="images", path="p", image_size=[1, 2, 3]),
        "data.image_size: [1, 2, 3] is too long",
    ),
    "empty layers": (_with("model", layers=[]), "model.layers: [] should be non-empty"),
}


@pytest.mark.parametrize("data, expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_configs_are_rejected_by_the_schema_too(data, expected):
    from dltool.config import validate_config
    from dltool.errors import ConfigError

    with pytest.raises(ConfigError):
        validate_config(json.loads(json.dumps(data)))
    errors = _schema_errors(data)
    assert errors, "the schema accepted a config that dltool refuses"
    assert any(expected in error for error in errors), errors
