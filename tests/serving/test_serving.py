"""dltool serve's HTTP layer on a real server and client, over a NumPy stand-in model (no TensorFlow)."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import httpx
import numpy as np
import pytest
from serve_support import FEATURES, dltool_server, fake_served, metric_value, running_server

from dltool.errors import RequestError
from dltool.serving.app import endpoint_of


@pytest.fixture(scope="module")
def server():
    served = fake_served()
    with running_server(served, max_batch=64, batch_wait_ms=2) as (url, app):
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client, served


def expected(served, rows) -> np.ndarray:
    return served.model.predict_on_batch(served.state.transform(np.asarray(rows, dtype=np.float64)))


ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.5, 8.0], [3, 1, 4, 1]]


def test_status_and_metadata_speak_tf_serving(server):
    client, _ = server
    status = client.get("/v1/models/fake").json()
    assert status == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert client.get("/v1/models/fake/versions/1").status_code == 200
    assert client.get("/v1/models/20260101-000000-fake-0000").status_code == 200  # the run id names it too
    meta = client.get("/v1/models/fake/metadata").json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    tensor = signature["inputs"]["inputs"]
    assert tensor["dtype"] == "DT_FLOAT" and [d["size"] for d in tensor["tensor_shape"]["dim"]] == ["-1", "4"]
    assert [d["size"] for d in signature["outputs"]["output_0"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert meta["model_spec"] == {"name": "fake", "signature_name": "", "version": "1"}
    assert meta["dltool"]["raw_inputs"] is True and meta["dltool"]["class_names"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "body, key",
    [
        ({"instances": ROWS}, "predictions"),
        ({"instances": [{"inputs": r} for r in ROWS], "signature_name": "serving_default"}, "predictions"),
        ({"inputs": ROWS}, "outputs"),
        ({"inputs": {"inputs": ROWS}}, "outputs"),
    ],
    ids=["row", "row-named", "columnar", "columnar-named"],
)
def test_predict_takes_raw_inputs_in_every_tf_serving_form(server, body, key):
    client, served = server
    answer = client.post("/v1/models/fake:predict", json=body)
    assert answer.status_code == 200, answer.text
    assert list(answer.json()) == [key]
    np.testing.assert_allclose(answer.json()[key], expected(served, ROWS), rtol=1e-6)
    versioned = client.post("/v1/models/fake/versions/1:predict", json=body)
    assert versioned.json() == answer.json()


def test_label_takes_rows_by_column_name_and_uploaded_csv(server):
    client, served = server
    rows = [dict(zip(FEATURES, r)) for r in ROWS]
    answer = client.post("/v1/models/fake:label", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    probabilities = expected(served, ROWS)
    assert [p["label"] for p in predictions] == [["a", "b", "c"][i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in predictions], probabilities, rtol=1e-6)
    csv = "y," + ",".join(FEATURES) + "\n" + "".join(f"a,{','.join(map(str, r))}\n" for r in ROWS)
    upload = client.post("/v1/models/fake:label", files={"file": ("new.csv", csv.encode(), "text/csv")})
    assert upload.status_code == 200, upload.text
    assert [(p["input"], p["row"]) for p in upload.json()["predictions"]] == [("new.csv", i) for i in range(3)]
    assert [p["label"] for p in upload.json()["predictions"]] == [p["label"] for p in predictions]


@pytest.mark.parametrize(
    "method, path, body, status, phrase",
    [
        ("POST", "/v1/models/fake:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", "/v1/models/fake:predict", b"\x80\xff\x00", 400, "JSON"),
        ("POST", "/v1/models/fake:predict", b"[1, 2]", 400, "received a JSON array"),
        ("POST", "/v1/models/fake:predict", {"instances": [[1, 2, 3]]}, 400, "expected samples of shape [4]"),
        ("POST", "/v1/models/fake:predict", {"instances": [[1, 2, 3, 4], [1]]}, 400, "differ in shape"),
        ("POST", "/v1/models/fake:predict", {"instances": [["a", "b", "c", "d"]]}, 400, 'a JSON string ("a")'),
        ("POST", "/v1/models/fake:predict", {"instances": [[None, 1, 2, 3]]}, 400, "[0][0]: expected a number"),
        ("POST", "/v1/models/fake:predict", b'{"instances": [[1, 2, 3, 4]]} [', 400, "content after document"),
        ("POST", "/v1/models/fake:predict", {"instances": []}, 400, "non-empty"),
        ("POST", "/v1/models/fake:predict", {"instances": [[1, 2, 3, 4]], "inputs": [[1]]}, 400, "Not both"),
        ("POST", "/v1/models/fake:predict", {"rows": []}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/fake:predict", {"instances": [{"f1": 1}]}, 400, "to :label"),
        ("POST", "/v1/models/fake:predict", {"instances": [{"x": [1, 2, 3, 4]}]}, 400, "named input: inputs"),
        ("POST", "/v1/models/fake:predict", {"instances": [[1, 2, 3, 4]], "signature_name": "x"}, 400, "not found"),
        ("POST", "/v1/models/fake:predict", b'{"instances": [[NaN, 1, 2, 3]]}', 400, "NaN or infinite"),
        ("POST", "/v1/models/fake:predict", b'{"instances": [[1e999, 1, 2, 3]]}', 400, "NaN or infinite"),
        ("POST", "/v1/models/fake:predict", b'{"instances": [[1, -Infinity, 2, 3]]}', 400, "NaN or infinite"),
        # beyond float32: infinite once cast, refused by row
        ("POST", "/v1/models/fake:predict", b'{"instances": [[1e39, 1, 2, 3]]}', 400, "NaN or infinite values (row 0)"),
        ("POST", "/v1/models/fake:predict", b"[" * 100_000, 400, "JSON"),
        ("POST", "/v1/models/nope:predict", {"instances": [[1, 2, 3, 4]]}, 404, "Servable not found"),
        ("POST", "/v1/models/fake/versions/2:predict", {"instances": [[1, 2, 3, 4]]}, 404, "Specific(fake, 2)"),
        ("GET", "/v1/models/fake:predict", None, 405, "expected POST"),
        ("POST", "/v1/models/fake:classify", {}, 400, "not served"),
        ("GET", "/v1/models/fake/bogus", None, 404, "Malformed request"),
        ("GET", "/nowhere", None, 404, "Malformed request"),
        ("POST", "/v1/models/fake:label", {"rows": [{"f1": 1, "f2": 2, "f3": 3}]}, 400, "missing column 'f4'"),
        ("POST", "/v1/models/fake:label", {"rows": [{"f1": 1, "f2": 2, "f3": 3, "f4": 4, "z": 0}]}, 400, "unexpected"),
        ("POST", "/v1/models/fake:label", {"rows": [dict.fromkeys(FEATURES, "x")]}, 400, "expected a number"),
        ("POST", "/v1/models/fake:label", {"texts": ["hi"]}, 400, "not texts"),
        ("POST", "/v1/models/fake:label", {"what": 1}, 400, "'rows' (objects keyed by f1"),
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a warning is a 500: none may reach the log
def test_client_mistakes_get_a_4xx_saying_what_was_expected(server, method, path, body, status, phrase):
    client, _ = server
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    answer = client.request(method, path, content=content)
    assert answer.status_code == status, answer.text
    assert phrase in answer.json()["error"]
    assert client.get("/healthz").status_code == 200  # and the next request is served


@pytest.mark.parametrize(
    "path, body, place, shown",
    [
        (":predict", {"instances": [[1.0, 2.0, True, 4.0]]}, "instances[0][2]", "true"),
        (":predict", {"instances": [[1, 2, 3, 4], [1, 2, 3, False]]}, "instances[1][3]", "false"),
        (":predict", {"instances": [{"INPUT": [1.5, True, 3, 4]}]}, "instances[0][1]", "true"),
        (":predict", {"inputs": [[1.0, 2.0, 3.0, 4.0], [True, 2.0, 3.0, 4.0]]}, "inputs[1][0]", "true"),
        (":predict", {"inputs": {"INPUT": [[1, 2, 3, True]]}}, "inputs[0][3]", "true"),
        (":predict", {"instances": [[True, True, True, True]]}, "instances[0][0]", "true"),
        (":label", {"instances": [[1.0, 2.0, 3.0, True]]}, "instances[0][3]", "true"),
        (":label", {"rows": [{"f1": 1, "f2": True, "f3": 3, "f4": 4}]}, "rows[0]: column 'f2'", "a JSON boolean"),
    ],
)
def test_booleans_are_not_taken_for_numbers(server, path, body, place, shown):
    """JSON true beside numbers used to be predicted as 1.0."""
    client, served = server
    content = json.dumps(body).replace('"INPUT"', json.dumps(served.signature.input_name))
    answer = client.post(f"/v1/models/fake{path}", content=content)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith(place) and "expected a number" in error and shown in error, error


def test_texts_are_strings_only():
    """Beside strings NumPy would turn 1 and true into the texts '1' and 'True'."""
    from dltool.serving.protocol import Signature, to_array

    signature = Signature("text", "output_0", "string", ((1,),), (2,))
    assert to_array(["a", "b"], signature, "instances").tolist() == [["a"], ["b"]]
    for values, message in (
        (["a", 1], "instances[1]: expected a string (string instances of shape [1]), received a JSON number (1)"),
        (
            [["a"], [True]],
            "instances[1][0]: expected a string (string instances of shape [1]), received a JSON boolean (true)",
        ),
    ):
        with pytest.raises(RequestError) as refused:
            to_array(values, signature, "instances")
        assert str(refused.value) == message


def test_bad_uploads_are_refused_with_the_file_name(server):
    client, _ = server
    bad_csv = client.post("/v1/models/fake:label", files={"f": ("mine.csv", b"f1,f2\n1,2\n", "text/csv")})
    assert bad_csv.status_code == 400 and "mine.csv: missing column 'f3'" in bad_csv.json()["error"]
    wrong_kind = client.post("/v1/models/fake:label", files={"f": ("a.exe", b"MZ", "application/octet-stream")})
    assert wrong_kind.status_code == 400 and "cannot read '.exe' files" in wrong_kind.json()["error"]
    broken = client.post(
        "/v1/models/fake:label", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert broken.status_code == 400


def test_token_and_body_limit():
    served = fake_served()
    with running_server(served, token="s3cret", max_body_mb=0.001) as (url, _):
        body = {"instances": [[1, 2, 3, 4]]}
        assert httpx.post(f"{url}/v1/models/fake:predict", json=body).status_code == 401
        wrong = httpx.post(f"{url}/v1/models/fake:predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Bearer" in wrong.json()["error"]
        auth = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/models/fake:predict", json=body, headers=auth).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no token
        big = httpx.post(f"{url}/v1/models/fake:predict", content=b" " * 5000, headers=auth)
        assert big.status_code == 413 and "at most 0.001 MB" in big.json()["error"]

        def chunks():  # no Content-Length: the limit is counted while reading
            for _ in range(10):
                yield b" " * 1000

        streamed = httpx.post(f"{url}/v1/models/fake:predict", content=chunks(), headers=auth)
        assert streamed.status_code == 413
        assert httpx.post(f"{url}/v1/models/fake:predict", json=body, headers=auth).status_code == 200


def test_concurrent_requests_are_merged_and_counted_in_metrics():
    served = fake_served(delay=0.01)
    with running_server(served, max_batch=64, batch_wait_ms=20) as (url, _):
        with httpx.Client(base_url=url, timeout=10) as client:

            def one(i):
                return client.post("/v1/models/fake:predict", json={"instances": [ROWS[i % 3]]}).json()

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(one, range(48)))
            metrics = client.get("/metrics")
    for i, answer in enumerate(answers):  # each request got its own sample's answer back
        np.testing.assert_allclose(answer["predictions"][0], expected(served, [ROWS[i % 3]])[0], rtol=1e-6)
    assert max(served.model.calls) > 1 and sum(served.model.calls) >= 48
    text = metrics.text
    calls, samples = (
        metric_value(text, "dltool_serve_batch_size_count"),
        metric_value(text, "dltool_serve_batch_size_sum"),
    )
    assert samples == 48 and calls < 48
    assert metric_value(text, 'dltool_serve_requests_total{code="200",endpoint="predict"}') == 48
    assert "dltool_serve_request_duration_seconds_bucket" in text and "dltool_serve_model_call_seconds" in text


def test_a_request_larger_than_max_batch_is_split_and_max_batch_one_never_merges():
    served = fake_served(delay=0.005)
    rows = [[i, i + 1, i + 2, i + 3] for i in range(10)]
    with running_server(served, max_batch=4, batch_wait_ms=1) as (url, _):
        answer = httpx.post(f"{url}/v1/models/fake:predict", json={"instances": rows})
    assert served.model.calls[-3:] == [4, 4, 2] or sorted(served.model.calls[-3:]) == [2, 4, 4]
    np.testing.assert_allclose(answer.json()["predictions"], expected(served, rows), rtol=1e-6)
    served = fake_served(delay=0.005)
    with running_server(served, max_batch=1, batch_wait_ms=5) as (url, _):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda r: httpx.post(f"{url}/v1/models/fake:predict", json={"instances": [r]}), rows))
    assert set(served.model.calls) == {1}


def test_openapi_document_lists_every_endpoint_with_the_models_shape(server):
    client, _ = server
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {
        "/healthz",
        "/metrics",
        "/v1/models/{model_name}",
        "/v1/models/{model_name}/metadata",
        "/v1/models/{model_name}:predict",
        "/v1/models/{model_name}/versions/{version}:predict",
        "/v1/models/{model_name}:label",
    } <= set(document["paths"])
    body = document["paths"]["/v1/models/{model_name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    sample = body["schema"]["properties"]["instances"]["items"]["oneOf"][0]
    assert sample["minItems"] == sample["maxItems"] == 4


def test_endpoint_labels_are_a_fixed_set():
    assert endpoint_of("/v1/models/x/versions/3:predict") == "predict"
    assert endpoint_of("/v1/models/anything/at/all") == "status"
    assert endpoint_of("/random/path") == "other"


def test_cli_refuses_bad_options_and_a_missing_extra_with_exit_2(monkeypatch):
    import importlib.util

    from typer.testing import CliRunner

    from dltool.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve", "latest", "--max-batch", "0"])
    assert bad.exit_code == 2 and "--max-batch: expected an integer >= 1, received 0" in bad.output
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else find_spec(name))
    missing = runner.invoke(app, ["serve", "latest"])
    assert missing.exit_code == 2 and 'pip install -e ".[serve]"' in missing.output
    assert "dltool serve latest" in runner.invoke(app, ["serve", "--help"]).output


def test_a_busy_port_is_a_usage_error():
    from dltool.commands.serve import bind_socket
    from dltool.errors import UsageError

    taken = bind_socket("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(UsageError, match="choose another --port"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def _post(conn: socket.socket, body: bytes = b'{"instances": [[1, 2, 3, 4]]}') -> None:
    head = b"POST /v1/models/fake:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _response(conn: socket.socket) -> tuple[str, bytes]:
    """(status line and headers in lower case, body) of one response; b"" at once if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection without answering (received {data!r})"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(
        next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")).split(b":")[1]
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head.decode().lower(), body


def _stop(server) -> None:
    """What SIGTERM does (signals reach only the main thread); returns once the listening socket is closed."""
    server.should_exit = True
    deadline = time.monotonic() + 10
    while not server.stopping:
        assert time.monotonic() < deadline, "the server did not start stopping"
        time.sleep(0.005)


def test_a_stopping_server_answers_requests_on_keep_alive_connections_then_closes_them():
    """uvicorn alone closes idle keep-alive connections at once: a request on its way to one was reset."""
    grace = 1.0
    with dltool_server(fake_served(), grace_s=grace) as (url, server):
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        with socket.create_connection(address, timeout=10) as conn, socket.create_connection(address, 10) as idle:
            _post(conn)
            head, _ = _response(conn)
            assert head.startswith("http/1.1 200") and "connection: close" not in head
            _stop(server)
            stopped = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=10)
            _post(conn)  # on the keep-alive connection, after the stop: answered, and told it is the last
            head, body = _response(conn)
            assert head.startswith("http/1.1 200") and "connection: close" in head
            assert json.loads(body)["predictions"]
            assert conn.recv(1) == b""  # closed after that response
            assert idle.recv(1) == b""  # a connection that stays idle is closed once the grace period is over
            assert grace * 0.9 <= time.monotonic() - stopped < grace + 5


def test_a_response_in_flight_when_the_server_stops_says_connection_close():
    with dltool_server(fake_served(delay=0.5), grace_s=1.0) as (url, server):
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as conn:
            _post(conn)
            time.sleep(0.1)  # the model is running
            _stop(server)
            head, _ = _response(conn)
            assert head.startswith("http/1.1 200") and "connection: close" in head
            assert conn.recv(1) == b""
