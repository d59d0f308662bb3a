"""Safe YAML reading that remembers where every key came from.

Configs are read with PyYAML's safe loader, and before anything is built the
node tree is checked for what a hostile or broken file could do: YAML tags
that name Python objects, alias bombs that expand exponentially, nesting
deep enough to exhaust the stack, duplicate keys, files too large for a config.
Each accepted document comes with a :class:`LineMap` from key paths to lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000  # a real config is a few KB; anything bigger is a mistake or an attack
MAX_EXPANDED_NODES = 100_000  # values after expanding aliases (billion-laughs guard)
MAX_DEPTH = 64  # nesting levels of mappings and sequences

_STANDARD_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")}


class _Loader(yaml.SafeLoader):
    """The safe loader, also reading YAML 1.2 floats such as 1e-3 (YAML 1.1 leaves them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

KeyPath = tuple  # of str (mapping keys) and int (sequence indices)


def format_path(path: KeyPath) -> str:
    """Render ('model', 'layers', 2, 'Dense') as 'model.layers[2].Dense'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class LineMap:
    """Maps key paths of a YAML document to 1-based line numbers."""

    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath | str | None) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the document."""
        if path is None:
            return None
        if isinstance(path, str):
            path = parse_path(path)
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def parse_path(text: str) -> KeyPath:
    """Parse 'model.layers[2].Dense.units' into ('model', 'layers', 2, 'Dense', 'units')."""
    parts: list = []
    chunks = text.split(".")
    if any(not chunk.strip() for chunk in chunks):
        raise ConfigError(f"expected a key path such as 'train.epochs', received '{text}'", source="--set")
    for chunk in chunks:
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not index.strip().isdigit():
                raise ConfigError(
                    f"expected a key path such as 'train.epochs' or 'model.layers[1].Dense.units', received '{text}'",
                    source="--set",
                )
            parts.append(int(index))
            rest = rest.lstrip("[")
    if not parts or any(p == "" for p in parts):
        raise ConfigError(f"expected a key path such as 'train.epochs', received '{text}'", source="--set")
    return tuple(parts)


def read_config_text(path: Path) -> str:
    """Read a config file as UTF-8 text, refusing missing, huge or binary files."""
    source = str(path)
    if not path.exists():
        raise ConfigError(f"config file not found; check the path (cwd is {Path.cwd()})", source=source)
    if path.is_dir():
        raise ConfigError("expected a YAML file, received a directory", source=source)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file is {size:,} bytes; a config must be under {MAX_CONFIG_BYTES:,} bytes "
                "(put data in a data file and name it in data.path)",
                source=source,
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", source=source) from None
    if b"\x00" in raw:
        raise ConfigError("expected a YAML text file, received binary data (NUL bytes)", source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"expected UTF-8 text, received a byte that is not UTF-8 at offset {exc.start}", source=source
        ) from None


def load_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse one YAML document safely; return the data and its :class:`LineMap`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"YAML text is longer than {MAX_CONFIG_BYTES:,} characters", source=source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap()
        line_map = LineMap()
        _check_tree(node, (), 0, line_map, {}, source)
        data = loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError(f"YAML is nested too deeply (more than {MAX_DEPTH} levels)", source=source) from None
    finally:
        loader.dispose()
    return data, line_map


def _check_tree(node, path: KeyPath, depth: int, line_map: LineMap, sizes: dict, source: str) -> int:
    """Validate tags, depth, duplicates and expanded size; record lines. Returns the expanded size."""
    if id(node) in sizes:  # an alias: the same node object again, counted as often as it is used
        return sizes[id(node)]
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise ConfigError(f"YAML is nested too deeply (more than {MAX_DEPTH} levels)", source=source, line=line)
    if node.tag not in _STANDARD_TAGS:
        raise ConfigError(
            f"YAML tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed; "
            "a config holds plain values, lists and mappings only",
            source=source,
            line=line,
        )
    total = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError("YAML merge keys ('<<') are not supported", source=source, line=line)
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_line = key_node.start_mark.line + 1
            if key is not None:
                if key in seen:
                    raise ConfigError(
                        f"duplicate key '{key}' (first at line {seen[key]}); each key may appear once",
                        source=source,
                        path=format_path(path) or None,
                        line=key_line,
                    )
                seen[key] = key_line
                line_map.lines.setdefault(path + (key,), key_line)
            total += _check_tree(key_node, path, depth + 1, line_map, sizes, source)
            total += _check_tree(value_node, path + (key,), depth + 1, line_map, sizes, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            line_map.lines.setdefault(path + (index,), item.start_mark.line + 1)
            total += _check_tree(item, path + (index,), depth + 1, line_map, sizes, source)
    if total > MAX_EXPANDED_NODES:
        raise ConfigError(
            f"YAML expands to more than {MAX_EXPANDED_NODES:,} values (too many aliases: an alias bomb?)",
            source=source,
            line=line,
        )
    sizes[id(node)] = total
    return total


def dump_yaml(data: Any) -> str:
    """Dump plain data as block-style YAML, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
