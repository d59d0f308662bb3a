"""TF Serving's predict protocol on its own: JSON in (orjson), arrays checked, answers out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dltool.errors import RequestError
from dltool.serving.protocol import Signature, encode_json, parse_json, parse_predict, predict_answer, to_array

NUMBERS = Signature("inputs", "output_0", "float", ((3,),), (2,))


@pytest.mark.parametrize(
    "body, message",
    [
        (
            b"{not json",
            "JSON Parse error: unexpected character, expected a string key at offset: 1; expected a JSON object",
        ),
        (b"\x80\xff", "JSON Parse error: the body is not UTF-8 text; expected a JSON object"),
        (b"[" * 2000 + b"]" * 2000, "JSON Parse error: the body nests too deeply; expected a JSON object"),
        (
            b'{"instances": [[NaN, 1]]}',
            "JSON Parse error: a NaN or infinite number at offset: 16; expected finite numbers",
        ),
        (b'{"instances": [[1, Infinity]]}', "a NaN or infinite number at offset: 19"),
        (b'{"instances": [[-Infinity]]}', "a NaN or infinite number at offset: 17"),
        (b'{"instances": [[1e999]]}', "a NaN or infinite number"),
        (b"", "JSON Parse error: Input is a zero-length, empty document at offset: 0"),
    ],
)
def test_bodies_that_are_not_json_are_refused_saying_where(body, message):
    with pytest.raises(RequestError) as caught:
        parse_json(body)
    assert message in str(caught.value)


def test_answers_hold_the_models_float32_outputs_exactly():
    outputs = np.random.default_rng(0).random((3, 2), dtype=np.float32)
    written = predict_answer(outputs, "row")
    assert np.array_equal(np.asarray(json.loads(written)["predictions"], dtype=np.float32), outputs)
    # float32 as its shortest text, not float64's 17 digits of the same value
    assert len(written) < len(json.dumps({"predictions": outputs.tolist()}))
    assert list(json.loads(predict_answer(outputs[:, :1], "columnar"))) == ["outputs"]  # a strided view too


def test_values_orjson_cannot_write_itself_are_written_as_lists():
    assert json.loads(encode_json({"a": np.ones((1, 2), dtype=np.float16), "b": np.int8(3)})) == {"a": [[1, 1]], "b": 3}
    with pytest.raises(TypeError):
        encode_json({"a": object()})


@pytest.mark.parametrize("booleans", [True, False])
def test_numbers_come_back_as_numbers_whether_or_not_the_type_scan_runs(booleans):
    array = to_array([[1, 2.5, 3]], NUMBERS, "instances", booleans=booleans)
    assert array.tolist() == [[1, 2.5, 3]] and array.dtype.kind == "f"


def test_a_boolean_is_refused_wherever_the_text_says_true():
    body = b'{"instances": [[1, true, 3]]}'
    with pytest.raises(RequestError, match=r"instances\[0\]\[1\]: expected a number .* received a JSON boolean"):
        parse_predict(parse_json(body), NUMBERS, booleans=b"true" in body or b"false" in body)
    # "true" in a string elsewhere only keeps the scan on: numbers still pass
    body = b'{"instances": [[1, 2, 3]], "signature_name": "", "note": "true"}'
    raw, form = parse_predict(parse_json(body), NUMBERS, booleans=True)
    assert raw.tolist() == [[1, 2, 3]] and form == "row"


def test_strings_and_nulls_are_refused_even_when_the_scan_is_skipped():
    for values, shown in (([[1, "2", 3]], 'a JSON string ("2")'), ([[1, None, 3]], "a JSON null")):
        with pytest.raises(RequestError) as caught:
            to_array(values, NUMBERS, "instances", booleans=False)
        assert shown in str(caught.value)


def test_integers_beyond_64_bits_are_read_as_doubles():
    body = parse_json(b'{"instances": [[1180591620717411303424, 1, 2]]}')
    assert to_array(body["instances"], NUMBERS, "instances", booleans=False)[0, 0] == 2.0**70
