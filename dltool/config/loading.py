"""Reading a config: YAML text -> ``--set`` overrides -> validation -> :class:`ExperimentConfig`; and back out.

Errors name the file and line of the key at fault, or the ``--set`` that put it there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, did_you_mean
from .expectations import check_config_expectations
from .keras_names import check_keras_names
from .messages import first_error, type_name
from .registry import source_names
from .schema import ExperimentConfig
from .yamlio import LineMap, dump_yaml, format_path, load_yaml, parse_path, read_config_text


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a config file; raise :class:`ConfigError` with file, key path and line."""
    path = Path(path)
    text = read_config_text(path)
    return config_from_text(text, source=str(path), overrides=overrides)


def config_from_text(text: str, source: str = "<config>", overrides: list[str] | None = None) -> ExperimentConfig:
    """Validate YAML text as an experiment config (see :func:`load_config`)."""
    data, line_map = load_yaml(text, source)
    if data is None:
        raise ConfigError(
            "the config is empty; expected a mapping with keys name, data, model, train "
            "(see `dltool init` or configs/)",
            source=source,
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level (keys name, data, model, train), received {type_name(data)}",
            source=source,
            line=1,
        )
    overridden = apply_overrides(data, overrides or [])
    config = validate_config(data, source, line_map, overridden)
    config._overrides = list(overrides or [])
    return config


def apply_overrides(data: dict, overrides: list[str]) -> dict[tuple, str]:
    """Apply ``key.path=value`` strings to ``data`` in place; return {path: override text}."""
    applied: dict[tuple, str] = {}
    for text in overrides:
        key, sep, value_text = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE such as train.epochs=3, received '{text}'", source="--set")
        path = parse_path(key.strip())
        value, _ = load_yaml(value_text, source=f"--set {text}")
        target = data
        for depth, part in enumerate(path[:-1]):
            here = format_path(path[: depth + 1])
            if isinstance(part, int):
                if not isinstance(target, list) or not -len(target) <= part < len(target):
                    raise ConfigError(f"no list item [{part}] at {here}", source=f"--set {text}")
                target[part] = _long_form(path[: depth + 1], target[part])
                target = target[part]
            else:
                if not isinstance(target, dict):
                    raise ConfigError(f"{format_path(path[:depth])} is not a mapping", source=f"--set {text}")
                target[part] = _long_form(path[: depth + 1], target.get(part))
                if not isinstance(target[part], (dict, list)):
                    target[part] = {}
                target = target[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(target, list) or not -len(target) <= last < len(target):
                raise ConfigError(f"no list item [{last}] at {key.strip()}", source=f"--set {text}")
        elif not isinstance(target, dict):
            raise ConfigError(f"{format_path(path[:-1])} is not a mapping", source=f"--set {text}")
        target[last] = value
        applied[path] = text
    return applied


def _long_form(path: tuple, value: Any) -> Any:
    """Expand a short form that an override is about to descend into.

    ``optimizer: adam`` becomes ``{name: adam}``, a bare layer ``Flatten``
    becomes ``{Flatten: {}}``, a layer's null arguments become ``{}``.
    """
    if path == ("train", "optimizer") and isinstance(value, str):
        return {"name": value}
    if len(path) == 3 and path[:2] == ("model", "layers") and isinstance(value, str):
        return {value: {}}
    if len(path) == 4 and path[:2] == ("model", "layers") and value is None:
        return {}
    return value


def validate_config(
    data: dict, source: str = "<config>", line_map: LineMap | None = None, overridden: dict | None = None
) -> ExperimentConfig:
    """Validate plain data as an experiment config; errors name ``source`` and lines from ``line_map``."""
    line_map = line_map or LineMap()
    overridden = overridden or {}

    def locate(error: ConfigError) -> ConfigError:
        path = parse_path(error.path) if error.path else ()
        for over_path, text in overridden.items():
            shorter = min(len(path), len(over_path))
            if path and path[:shorter] == over_path[:shorter]:
                return ConfigError(error.detail, source=f"--set {text}", path=error.path)
        return error.located(source, line_map.line_of)

    if "data" in data and isinstance(data["data"], dict):
        _check_source(data["data"], locate)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise locate(first_error(exc)) from None
    try:
        check_keras_names(config)
        check_config_expectations(config, lambda key: line_map.lines.get(("expect", key)))
    except ConfigError as exc:
        raise locate(exc) from None
    config._source = source
    config._line_map = line_map
    return config


def _check_source(data: dict, locate) -> None:
    source, known = data.get("source"), source_names()
    if source is None:
        raise locate(ConfigError(f"missing key 'source'; expected one of {', '.join(known)}", path="data"))
    if source not in known:
        raise locate(
            ConfigError(
                f"unknown data source {source!r}; expected one of {', '.join(known)}"
                + did_you_mean(str(source), known),
                path="data.source",
            )
        )


# --------------------------------------------------------------------------- output
def resolve_paths(config: ExperimentConfig) -> ExperimentConfig:
    """Return a copy whose data file paths are absolute, so a run folder works from any directory."""
    data = config.data.model_copy()
    for key in ("path", "x", "y"):
        value = getattr(data, key, None)
        if isinstance(value, str):
            setattr(data, key, _absolute(value))
        elif isinstance(value, list):  # a table's files and globs
            setattr(data, key, [_absolute(entry) for entry in value])
    return config.model_copy(update={"data": data})


def _absolute(path: str) -> str:
    # A glob stays a glob: only its folder part is made absolute (resolve() leaves the pattern's name as it is).
    return str(Path(path).expanduser().resolve())


def config_to_dict(config: ExperimentConfig) -> dict:
    """The fully resolved config as plain data (every default filled in)."""
    return config.model_dump(mode="json")


def config_to_yaml(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML text."""
    return dump_yaml(config_to_dict(config))
