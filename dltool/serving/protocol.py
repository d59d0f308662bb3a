"""TensorFlow Serving's REST predict protocol: request bodies to raw samples, outputs to answers.

A predict body is a JSON object with ``instances`` (the row format: a list of
samples) or ``inputs`` (the columnar format: the whole batch), either as the
tensor itself or keyed by the signature's input name, as TF Serving accepts
them. Values are the *raw* inputs, as in the training file: the server applies
the run's saved preprocessing. Every refusal is a :class:`RequestError` whose
message says what was expected and what was received.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import orjson

from ..errors import RequestError

SIGNATURE = "serving_default"
VERSION = "1"
_TF_DTYPES = {"float": "DT_FLOAT", "string": "DT_STRING"}


@dataclass(frozen=True)
class Signature:
    """What the served model takes and gives, in TF Serving's terms."""

    input_name: str
    output_name: str
    dtype: str  # "float" (numbers) or "string" (raw texts)
    shapes: tuple[tuple[int, ...], ...]  # accepted shapes of one raw sample; the first is the model's own
    output_shape: tuple[int, ...]
    feature_names: tuple[str, ...] = ()  # a CSV run's columns, for the hint towards :label

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[0]

    def describe(self) -> str:
        """The expected input in words, for messages."""
        shapes = " or ".join(str(list(s)) for s in self.shapes)
        return f"{self.dtype} instances of shape {shapes}"

    def tensor_info(self, name: str, dtype: str, shape: tuple[int, ...]) -> dict:
        """A TensorInfo as TF Serving's metadata shows it (sizes are strings, -1 for the batch)."""
        return {
            "dtype": _TF_DTYPES.get(dtype, "DT_FLOAT"),
            "tensor_shape": {"dim": [{"size": str(s), "name": ""} for s in (-1, *shape)], "unknown_rank": False},
            "name": f"{SIGNATURE}_{name}:0",
        }

    def signature_def(self) -> dict:
        """The ``serving_default`` SignatureDef of ``GET /v1/models/NAME/metadata``."""
        return {
            "inputs": {self.input_name: self.tensor_info(self.input_name, self.dtype, self.shape)},
            "outputs": {self.output_name: self.tensor_info(self.output_name, "float", self.output_shape)},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }


def parse_json(body: bytes) -> object:
    """The request body as JSON; anything else is a 400 in TF Serving's words.

    orjson, not the standard library: 5-7x faster on a predict body (0.7 against 4.8 us for a digits sample, 10
    against 39 us for an MNIST image), and the event loop that parses every body is what limits requests/s under
    load. It is also strict JSON: NaN and Infinity are refused here, a number beyond 64 bits is a double.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "infinity" in exc.msg or _non_finite_literal(body, exc.pos):
            raise RequestError(
                f"JSON Parse error: a NaN or infinite number at offset: {exc.pos}; expected finite numbers"
            ) from None
        if "UTF-8" in exc.msg:
            raise RequestError("JSON Parse error: the body is not UTF-8 text; expected a JSON object") from None
        if "depth limit" in exc.msg:
            raise RequestError("JSON Parse error: the body nests too deeply; expected a JSON object") from None
        raise RequestError(f"JSON Parse error: {exc.msg} at offset: {exc.pos}; expected a JSON object") from None


def _non_finite_literal(body: bytes, pos: int) -> bool:
    """Whether the token at ``pos`` (or the sign before it) is ``NaN`` or ``Infinity``, which JSON does not have."""
    start = pos - 1 if pos > 0 and body[pos - 1 : pos] == b"-" else pos
    return body[start:].lstrip(b"-").startswith((b"NaN", b"Infinity"))


def encode_json(value: object) -> bytes:
    """``value`` as JSON bytes; NumPy arrays are written directly (float32 as its shortest round-trip text)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_as_list)


def _as_list(value: object) -> object:
    """What orjson cannot write itself (an array of another dtype, a NumPy scalar) as Python values."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def json_kind(value: object) -> str:
    """A JSON value's type name, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def parse_predict(body: object, signature: Signature, *, booleans: bool = True) -> tuple[np.ndarray, str]:
    """(raw samples, "row" or "columnar") from a predict request body (parsed); ``booleans=False`` when the JSON text
    has no ``true`` or ``false`` (see :func:`to_array`)."""
    if not isinstance(body, dict):
        raise RequestError(f"Expected a JSON object with 'instances' or 'inputs', received a JSON {json_kind(body)}")
    name = body.get("signature_name", SIGNATURE)
    if name not in (SIGNATURE, ""):
        raise RequestError(f'Serving signature name: "{name}" not found in signature def; expected "{SIGNATURE}"')
    if "instances" in body and "inputs" in body:
        raise RequestError("Not both of 'instances' and 'inputs' can be specified; send one of them")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(
                f"Expecting 'instances' to be a non-empty list/array of samples, received a JSON {json_kind(instances)}"
                + (" (empty)" if instances == [] else "")
            )
        if all(isinstance(item, dict) for item in instances):
            instances = [_named_value(item, signature, f"instances[{i}]") for i, item in enumerate(instances)]
        elif any(isinstance(item, dict) for item in instances):
            raise RequestError(
                "Failed to process 'instances': some are JSON objects and some are not; "
                f"expected all values, or all objects keyed by '{signature.input_name}'"
            )
        return to_array(instances, signature, "instances", booleans=booleans), "row"
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            inputs = _named_value(inputs, signature, "inputs")
        if not isinstance(inputs, list) or not inputs:
            raise RequestError(
                f"Expecting 'inputs' to be a non-empty list/array (the batch), received a JSON {json_kind(inputs)}"
            )
        return to_array(inputs, signature, "inputs", booleans=booleans), "columnar"
    keys = ", ".join(f"'{k}'" for k in body) or "none"
    raise RequestError(f"Missing 'inputs' or 'instances' key; received keys {keys}")


def _named_value(item: dict, signature: Signature, where: str) -> object:
    """The value of the signature's one input in a ``{input_name: value}`` object."""
    name = signature.input_name
    if name in item and len(item) == 1:
        return item[name]
    if signature.feature_names and set(item) & set(signature.feature_names):
        raise RequestError(
            f"{where}: JSON object keyed by column names; :predict takes tensors ('{name}': "
            f"{signature.describe()}); send rows keyed by column name to :label instead"
        )
    if name not in item:
        raise RequestError(
            f"{where}: JSON object does not have named input: {name}; received keys {', '.join(map(str, item))}"
        )
    extra = [k for k in item if k != name]
    raise RequestError(f"{where}: unexpected named input(s) {', '.join(extra)}; the model has one input: {name}")


def to_array(values: list, signature: Signature, where: str, *, booleans: bool = True) -> np.ndarray:
    """A batch of samples as an array of the signature's dtype and a shape it accepts.

    ``booleans=False`` says the values hold no JSON boolean (their text has no ``true`` or ``false``): an array of
    numbers is then numbers only, and the scan of every value's type is skipped (18 us of an MNIST image's 20).
    """
    try:
        array = np.array(values)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise RequestError(
            f"{where}: samples differ in shape or hold mixed values; expected {signature.describe()}"
        ) from None
    wanted = "numbers" if signature.dtype == "float" else "strings"
    # The JSON values themselves are checked: beside numbers NumPy turns true into 1.0, and beside strings it
    # turns a number or a boolean into text.
    numbers_only = not booleans and signature.dtype == "float" and array.dtype.kind in "iuf"
    misfit = None if numbers_only else _misfit(values, _STRINGS if signature.dtype == "string" else _NUMBERS, where)
    if misfit is not None:
        place, value = misfit
        one = "a number" if signature.dtype == "float" else "a string"
        raise RequestError(f"{place}: expected {one} ({signature.describe()}), received {_shown(value)}")
    if signature.shape == (1,) and array.ndim == 1:
        array = array[:, None]  # one value per sample may come without its axis of 1
    if array.ndim == 0 or tuple(array.shape[1:]) not in signature.shapes:
        received = "a single value" if array.ndim == 0 else f"samples of shape {list(array.shape[1:])}"
        raise RequestError(
            f"{where}: expected samples of shape {' or '.join(str(list(s)) for s in signature.shapes)} "
            f"({wanted}), received {received} "
            f"(array shape {list(array.shape)})"
        )
    return array.astype(object) if signature.dtype == "string" else array


_NUMBERS, _STRINGS = frozenset({int, float}), frozenset({str})  # JSON's types; bool is not int here


def _misfit(values: list, allowed: frozenset, where: str) -> tuple[str, object] | None:
    """(path, value) of the first value in the nested lists ``values`` whose type is not ``allowed``, or None."""
    level = values
    while (kinds := set(map(type, level))) == {list}:  # one pass per depth, in C: this runs for every request
        level = list(itertools.chain.from_iterable(level))
    if kinds <= allowed:
        return None
    return _locate(values, allowed, where)


def _locate(values: list, allowed: frozenset, where: str) -> tuple[str, object] | None:
    for index, value in enumerate(values):
        place = f"{where}[{index}]"
        if type(value) is list:
            if (found := _locate(value, allowed, place)) is not None:
                return found
        elif type(value) not in allowed:
            return place, value
    return None


def _shown(value: object) -> str:
    """A JSON value for a message: its type, and the value where it is short."""
    if isinstance(value, (str, int, float)):  # and bool
        text = json.dumps(value)
        return f"a JSON {json_kind(value)} ({text if len(text) <= 40 else text[:37] + '...'})"
    return f"a JSON {json_kind(value)}"


def predict_answer(outputs: np.ndarray, form: str) -> bytes:
    """``{"predictions": [...]}`` for the row format, ``{"outputs": [...]}`` for the columnar one, as JSON bytes."""
    return encode_json({"predictions" if form == "row" else "outputs": np.asarray(outputs)})
