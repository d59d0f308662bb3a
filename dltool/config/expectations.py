"""Metric expectations: ``expect: {test.accuracy: ">= 0.95"}`` in a config, or ``--expect "test.accuracy>=0.95"``.

A key names an entry of the run's metrics.json (``train.``, ``validation.`` or
``test.`` followed by ``loss`` or a metric of ``train.metrics``, or ``epochs``);
it is checked against the config before anything trains, with a did-you-mean.
After training, :func:`check_expectations` compares metrics.json with each
condition. An unmet expectation leaves the run COMPLETED; the CLI exits 3.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable

from ..errors import ConfigError, did_you_mean

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
CONDITION_PATTERN = rf"^\s*(>=|<=|==|>|<)\s*({_NUMBER})\s*$"
SPLITS = ("train", "validation", "test")
TOP_LEVEL_KEYS = ("epochs",)  # metrics.json entries outside the splits that an expectation may name


def parse_condition(text: str) -> tuple[str, float]:
    """'>= 0.95' -> ('>=', 0.95); ValueError with the expected form otherwise."""
    match = re.match(CONDITION_PATTERN, str(text))
    if not match:
        raise ValueError(
            f"expected a comparison such as '>= 0.95' (one of {', '.join(OPERATORS)} and a number), received {text!r}"
        )
    return match.group(1), float(match.group(2))


def split_expect_option(text: str) -> tuple[str, str]:
    """'test.accuracy>=0.95' -> ('test.accuracy', '>=0.95'), as ``--expect`` takes it."""
    match = re.match(r"^\s*([^<>=\s]+)\s*((?:>=|<=|==|>|<).*)$", text)
    if not match:
        raise ConfigError(
            f"expected KEY OPERATOR NUMBER such as test.accuracy>=0.95, received '{text}'", source="--expect"
        )
    return match.group(1), match.group(2).strip()


def expectation_keys(config) -> list[str]:
    """The metrics.json entries this config's runs will have: loss and each compiled metric per split, epochs."""
    names = ["loss", *config.train.metrics]
    splits = [s for s in SPLITS if s != "validation" or config.data.validation is not None]
    return [f"{split}.{name}" for split in splits for name in names] + list(TOP_LEVEL_KEYS)


def check_expectation(config, key: str, condition: str) -> str | None:
    """What is wrong with one expectation for this config (None if nothing)."""
    try:
        parse_condition(condition)
    except ValueError as exc:
        return str(exc)
    known = expectation_keys(config)
    if key in known:
        return None
    split = key.split(".", 1)[0]
    if split == "validation" and config.data.validation is None:
        return "this config has no validation split (data.validation is null); expect a train. or test. value"
    hint = did_you_mean(key, known) or f"; expected one of {', '.join(known)}"
    return f"unknown metric '{key}' (metrics.json will have {len(known)} entries){hint}"


def check_config_expectations(config, line_of_key: Callable[[str], int | None] = lambda key: None) -> None:
    """Raise ConfigError (path expect.KEY, with its line where known) for the first bad ``expect:`` entry."""
    for key, condition in config.expect.items():
        problem = check_expectation(config, key, condition)
        if problem:
            raise ConfigError(problem, path=f"expect.{key}", line=line_of_key(key))


def with_expectations(config, options: list[str]):
    """A copy of ``config`` with ``--expect KEY<OP>NUMBER`` options added to (or replacing) its ``expect:``."""
    if not options:
        return config
    expect = dict(config.expect)
    for text in options:
        key, condition = split_expect_option(text)
        problem = check_expectation(config, key, condition)
        if problem:
            raise ConfigError(problem, source=f"--expect {text}")
        expect[key] = condition
    return config.model_copy(update={"expect": expect})


def _lookup(metrics: dict, key: str):
    value: object = metrics
    for part in key.split(".", 1) if key not in metrics else [key]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_expectations(expect: dict[str, str], metrics: dict) -> list[dict]:
    """Each expectation against metrics.json: [{key, condition, value, met}], in the config's order."""
    results = []
    for key, condition in expect.items():
        op, bound = parse_condition(condition)
        value = _lookup(metrics, key)
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        met = number is not None and math.isfinite(number) and OPERATORS[op](number, bound)
        results.append({"key": key, "condition": f"{op} {bound:g}", "value": number, "met": bool(met)})
    return results


def describe_expectation(result: dict) -> str:
    """'test.accuracy = 0.9722 (>= 0.95): met' for logs and messages."""
    value = "missing" if result["value"] is None else f"{result['value']:.4g}"
    return f"{result['key']} = {value}, expected {result['condition']}: {'met' if result['met'] else 'NOT met'}"
