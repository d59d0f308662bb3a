"""Pydantic's validation errors in plain words: one ConfigError with a key path, what was expected and received."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, did_you_mean
from .registry import source_entry, source_names
from .schema import REGISTERED_MODEL_NAME, ExperimentConfig
from .yamlio import format_path


def type_name(value: Any) -> str:
    """A value's type in words: 'a list', 'a mapping', 'nothing (null)'."""
    return {
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        dict: "a mapping",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


def _allowed_keys(loc: tuple, model: Any = ExperimentConfig) -> list[str]:
    """The keys the model at ``loc`` (below ``model``) accepts, for did-you-mean on an unknown key."""
    keyed = False  # the part after a dict[str, Model] field is a free key, not a field name
    for part in loc:
        if keyed:
            keyed = False
            continue
        if isinstance(part, int) or model is None:
            return []
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        keyed = typing.get_origin(field.annotation) is dict
        model = _model_of(field.annotation)
    return list(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def _model_of(annotation) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def first_error(exc: ValidationError, root: Any = ExperimentConfig) -> ConfigError:
    """Turn pydantic's first error into a ConfigError with a key path and a plain-words message.

    ``root`` is the model that was validated (default the experiment config), for did-you-mean on unknown keys.
    """
    errors = exc.errors(include_url=False)
    # In a union every member reports; our own messages already cover the whole union.
    err = next((e for e in errors if e["type"] == "dltool"), None) or next(
        (e for e in errors if e["type"] == "extra_forbidden"), errors[0]
    )
    loc = list(err["loc"])
    # Drop the discriminator tag pydantic inserts: ('data', 'csv', 'target') -> ('data', 'target').
    if root is ExperimentConfig and len(loc) >= 2 and loc[0] == "data" and loc[1] in source_names():
        model = source_entry(loc.pop(1)).config
    else:
        model = None
    # Union members add their type name to the location ('str', 'dict[str,...]'); drop them.
    loc = [
        p
        for p in loc
        if not (
            isinstance(p, str)
            and (
                p in ("str", "int", "float", "bool", "list[str]")
                or p.startswith(("dict[", "list[", "function-", "literal["))
            )
        )
    ]
    path = format_path(tuple(loc))
    kind, received = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = tuple(loc[:-1])
        allowed = _allowed_keys(parent[1:], model) if model else _allowed_keys(parent, root)
        key = str(loc[-1])
        hint = did_you_mean(key, allowed) or (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return ConfigError(f"unknown key '{key}'{hint}", path=path)
    if kind == "missing":
        return ConfigError(f"missing required key '{loc[-1]}'", path=path)
    if kind == "dltool":
        message = err["msg"]
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        message = f"expected one of {expected}, received {_show(received)}" + did_you_mean(str(received), choices)
    elif kind in ("string_type",):
        message = "expected a string"
    elif kind in ("list_type",):
        message = "expected a list"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a mapping"
    elif kind == "bool_type" or kind == "bool_parsing":
        message = "expected true or false"
    elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == REGISTERED_MODEL_NAME:
        message = "expected a registered model name without '/' or ':' (MLflow refuses them)"
    elif kind == "string_pattern_mismatch":
        message = "expected letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)"
    elif kind in _BOUNDS:
        bound = next(iter(err.get("ctx", {}).values()), "")
        message = f"expected a number {_BOUNDS[kind]} {bound}"
    elif kind == "too_short":
        message = "expected at least one item"
    else:
        message = "expected " + err["msg"][0].lower() + err["msg"][1:]
    if kind not in ("missing",) and "received" not in message:
        message += f", received {_show(received)}"
    return ConfigError(message, path=path)


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) < 60 else type_name(value)
    if value is None:
        return "null"
    return repr(value)
