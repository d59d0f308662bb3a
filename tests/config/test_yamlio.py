"""dltool.config.yamlio: safe YAML with line numbers, and the guards against hostile or broken files."""

from __future__ import annotations

import pathlib
import time

import pytest

from dltool.config import load_config
from dltool.config.yamlio import (
    MAX_CONFIG_BYTES,
    LineMap,
    dump_yaml,
    format_path,
    load_yaml,
    parse_path,
    read_config_text,
)
from dltool.errors import ConfigError

DOC = """\
name: demo
model:
  input_shape: [4]
  layers:
    - Flatten
    - Dense:
        units: 3
        activation: relu
train: {loss: mse, metrics: [mae, mse]}
"""


# --------------------------------------------------------------------------- key paths
@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("train",), "train"),
        (("train", "epochs"), "train.epochs"),
        (("model", "layers", 2, "Dense"), "model.layers[2].Dense"),
        (("model", "layers", 1, "Dense", "units"), "model.layers[1].Dense.units"),
        (("train", "metrics", 0), "train.metrics[0]"),
        (("a", 0, 1), "a[0][1]"),
    ],
)
def test_format_and_parse_path_round_trip(path, text):
    assert format_path(path) == text
    assert parse_path(text) == path


def test_format_path_of_the_root_is_empty():
    assert format_path(()) == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "model.layers[x].Dense",
        "model.layers[-1]",
        "a..b",
        ".a",
        "a.",
    ],
)
def test_parse_path_refuses_malformed_paths(text):
    with pytest.raises(ConfigError) as info:
        parse_path(text)
    assert str(info.value).startswith("--set: expected a key path such as 'train.epochs'")
    assert repr(text) in str(info.value)


# --------------------------------------------------------------------------- LineMap
def test_line_map_records_every_key_and_item():
    data, lines = load_yaml(DOC, "demo.yaml")
    assert data["model"]["layers"][1] == {"Dense": {"units": 3, "activation": "relu"}}
    assert lines.lines == {
        ("name",): 1,
        ("model",): 2,
        ("model", "input_shape"): 3,
        ("model", "input_shape", 0): 3,
        ("model", "layers"): 4,
        ("model", "layers", 0): 5,
        ("model", "layers", 1): 6,
        ("model", "layers", 1, "Dense"): 6,
        ("model", "layers", 1, "Dense", "units"): 7,
        ("model", "layers", 1, "Dense", "activation"): 8,
        ("train",): 9,
        ("train", "loss"): 9,
        ("train", "metrics"): 9,
        ("train", "metrics", 0): 9,
        ("train", "metrics", 1): 9,
    }


def test_line_of_accepts_strings_and_tuples_and_falls_back_to_the_nearest_ancestor():
    _, lines = load_yaml(DOC, "demo.yaml")
    assert lines.line_of("model.layers[1].Dense.activation") == 8
    assert lines.line_of(("model", "layers", 1, "Dense", "units")) == 7
    assert lines.line_of("model.layers[1].Dense.unit") == 6  # a misspelt key: its parent's line
    assert lines.line_of("model.layers[7]") == 4
    assert lines.line_of("data.source") is None  # no ancestor in the document
    assert lines.line_of(None) is None
    assert LineMap().line_of("train") is None


# --------------------------------------------------------------------------- syntax and structure
@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        ("name: t\ntrain:\n  epochs: [1, 2\nmodel: {}\n", 4, "expected ',' or ']'"),
        ("a: b: c\n", 1, "mapping values are not allowed here"),
        ("name: t\n\tdata: 1\n", 2, "found character '\\t' that cannot start any token"),
        ("name: [\n", 2, "expected the node content"),
        ("a: 1\n---\nb: 2\n", 2, "another document"),
    ],
)
def test_syntax_error_names_file_and_line(text, line, phrase):
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "cfg.yaml")
    assert str(info.value).startswith(f"cfg.yaml:{line}: YAML syntax error: ")
    assert phrase in str(info.value)
    assert info.value.line == line


def test_syntax_error_through_load_config(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: t\nseed: 1\ndata:\n  source: [npz\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:5: YAML syntax error: ")


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("name: !!python/object/apply:os.system ['echo pwned']\n", "!!python/object/apply:os.system"),
        ("x: !!python/name:os.system\n", "!!python/name:os.system"),
        ("x: !!python/object:collections.OrderedDict {}\n", "!!python/object:collections.OrderedDict"),
        ("x: !!binary aGk=\n", "!!binary"),
        ("x: !!set {a, b}\n", "!!set"),
        ("x: !custom 1\n", "!custom"),
    ],
)
def test_non_plain_tags_are_refused(text, tag):
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "evil.yaml")
    assert str(info.value) == (
        f"evil.yaml:1: YAML tag '{tag}' is not allowed; a config holds plain values, lists and mappings only"
    )


def test_os_system_tag_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: t\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value).startswith(f"{config}:2: YAML tag '!!python/object/apply:os.system' is not allowed")
    assert not marker.exists()


BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)


def test_billion_laughs_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "alias" in message
    assert "more than 100,000 values" in message


def test_a_few_aliases_are_fine():
    data, _ = load_yaml("a: &x [1, 2]\nb: *x\n", "ok.yaml")
    assert data == {"a": [1, 2], "b": [1, 2]}


def test_merge_keys_are_refused():
    with pytest.raises(ConfigError, match=r"^m\.yaml:3: YAML merge keys \('<<'\) are not supported$"):
        load_yaml("base: &b {x: 1}\nother:\n  <<: *b\n", "m.yaml")


def test_very_deep_flow_nesting_is_refused():
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_yaml("[" * 10000, "deep.yaml")
    assert time.perf_counter() - start < 5
    assert str(info.value).startswith("deep.yaml")
    assert "nested too deeply (more than 64 levels)" in str(info.value)


def test_deep_nesting_closed_is_refused_with_a_line():
    text = "[" * 100 + "]" * 100
    with pytest.raises(ConfigError, match=r"^d\.yaml:1: YAML is nested too deeply"):
        load_yaml(text, "d.yaml")


def test_deep_block_nesting_names_the_line():
    text = "a:\n" + "".join("  " * i + "-\n" for i in range(1, 100))
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "d.yaml")
    assert "nested too deeply" in str(info.value)
    assert info.value.line is not None and 60 <= info.value.line <= 70


def test_moderate_nesting_is_accepted():
    data, _ = load_yaml("[" * 60 + "]" * 60, "ok.yaml")
    depth = 0
    while isinstance(data, list):
        data = data[0] if data else None
        depth += 1
    assert depth == 60


@pytest.mark.parametrize(
    ("text", "line", "where", "key", "first"),
    [
        ("name: a\nseed: 1\nname: b\n", 3, "", "name", 1),
        ("train:\n  epochs: 1\n  loss: mse\n  epochs: 2\n", 4, "train: ", "epochs", 2),
        ("m:\n  layers:\n    - Dense: {units: 1, units: 2}\n", 3, "m.layers[0].Dense: ", "units", 3),
        ("1: a\n1: b\n", 2, "", "1", 1),
    ],
)
def test_duplicate_keys_are_refused(text, line, where, key, first):
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "dup.yaml")
    assert str(info.value) == (
        f"dup.yaml:{line}: {where}duplicate key '{key}' (first at line {first}); each key may appear once"
    )


# --------------------------------------------------------------------------- files
def test_file_over_one_megabyte_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# x\n" * (MAX_CONFIG_BYTES // 4 + 1))
    assert path.stat().st_size > MAX_CONFIG_BYTES

    def no_reading(*args, **kwargs):
        raise AssertionError("the config file was read")

    monkeypatch.setattr(pathlib.Path, "read_bytes", no_reading)
    monkeypatch.setattr(pathlib.Path, "read_text", no_reading)
    monkeypatch.setattr(pathlib.Path, "open", no_reading)
    with pytest.raises(ConfigError) as info:
        read_config_text(path)
    assert str(info.value) == (
        f"{path}: config file is 1,000,004 bytes; a config must be under 1,000,000 bytes "
        "(put data in a data file and name it in data.path)"
    )


def test_yaml_text_over_the_limit_is_refused():
    with pytest.raises(ConfigError, match=r"^big: YAML text is longer than 1,000,000 characters$"):
        load_yaml("#" * (MAX_CONFIG_BYTES + 1), "big")


def test_nul_bytes_are_refused(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: t\x00\x01\x02\xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: expected a YAML text file, received binary data (NUL bytes)"


def test_non_utf8_is_refused_with_the_offset(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: expected UTF-8 text, received a byte that is not UTF-8 at offset 9"


def test_utf8_text_is_read(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text("name: caf\u00e9\n", encoding="utf-8")
    assert read_config_text(path) == "name: caf\u00e9\n"


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_refused_clearly(tmp_path, content):
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    assert load_yaml(content, "x") == (None, LineMap())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(
        f"{path}: the config is empty; expected a mapping with keys name, data, model, train"
    )


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found; check the path"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected a YAML file, received a directory"


def test_dump_yaml_keeps_key_order_and_reloads():
    data = {"name": "x", "train": {"loss": "mse", "epochs": 3}, "data": {"weights": [1.5, -2.0]}}
    text = dump_yaml(data)
    assert text.index("name") < text.index("train") < text.index("data")
    assert load_yaml(text, "dump")[0] == data


def test_exponent_floats_without_a_dot_are_numbers():
    data, _ = load_yaml("lr: 1e-3\nb: 2.5E+2\nname: 1e3x\n", "f.yaml")
    assert data == {"lr": 0.001, "b": 250.0, "name": "1e3x"}
