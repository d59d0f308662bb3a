"""dltool serve with real trained runs: answers equal `dltool predict`'s, schema fuzzing, load, graceful stop.

Every test here uses a trained run, so all are slow (see conftest). The load
test is bounded: 32 clients for 20 s or 1,000 requests each, whichever comes first.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from e2e_support import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import running_server


@pytest.fixture(scope="module")
def iris_server(iris_run):
    from dltool.serving.servable import ServedModel

    served = ServedModel.open(iris_run)
    served.warm_up()
    with running_server(served, max_batch=64, batch_wait_ms=2) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, served, iris_run


@pytest.fixture(scope="module")
def iris_rows(iris_server, tmp_path_factory):
    """30 raw iris rows as a CSV with the run's column names, and as lists."""
    from sklearn.datasets import load_iris

    _, served, _ = iris_server
    rows = load_iris().data[::5].round(2).tolist()
    path = tmp_path_factory.mktemp("serve") / "flowers.csv"
    path.write_text(",".join(served.state.feature_names) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path, rows


def test_predict_and_label_answer_what_dltool_predict_answers(iris_server, iris_rows):
    from dltool.commands.predict import predict

    client, served, run = iris_server
    path, rows = iris_rows
    offline = json.loads(predict(run, [path], fmt="json").output)
    probabilities = np.array([list(r["probabilities"].values()) for r in offline])

    tf_serving = client.post(f"/v1/models/{served.name}:predict", json={"instances": rows})
    assert tf_serving.status_code == 200, tf_serving.text
    np.testing.assert_allclose(tf_serving.json()["predictions"], probabilities, rtol=1e-5, atol=1e-6)

    by_column = client.post(
        f"/v1/models/{served.name}:label", json={"rows": [dict(zip(served.state.feature_names, r)) for r in rows]}
    )
    uploaded = client.post(f"/v1/models/{served.name}:label", files={"file": (path.name, path.read_bytes())})
    for answer in (by_column, uploaded):
        assert answer.status_code == 200, answer.text
        labelled = answer.json()["predictions"]
        assert [r["label"] for r in labelled] == [r["label"] for r in offline]
        np.testing.assert_allclose(
            [list(r["probabilities"].values()) for r in labelled], probabilities, rtol=1e-5, atol=1e-6
        )


def test_a_named_input_request_gets_the_same_answer_from_serve_and_the_exported_saved_model(
    iris_server, iris_rows, tmp_path
):
    import tensorflow as tf

    from dltool.commands.export import export

    client, served, run = iris_server
    _, rows = iris_rows
    assert served.model.inputs[0].name == "inputs"  # the trained model's own input has the name clients send
    meta = client.get(f"/v1/models/{served.name}/metadata").json()
    assert list(meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]) == ["inputs"]
    answer = client.post(f"/v1/models/{served.name}:predict", json={"inputs": {"inputs": rows}})
    assert answer.status_code == 200, answer.text

    record = export(run, "saved_model", output=tmp_path)
    signature = tf.saved_model.load(record["path"]).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["inputs"]
    exported = next(iter(signature(inputs=tf.constant(rows, dtype=tf.float32)).values())).numpy()
    np.testing.assert_allclose(answer.json()["outputs"], exported, rtol=1e-5, atol=1e-6)


def test_regression_values_equal_dltool_predict(linear_run, tmp_path):
    from dltool.commands.predict import predict
    from dltool.serving.servable import ServedModel

    x = np.linspace(-2, 2, 9, dtype=np.float32).reshape(-1, 1)
    np.save(tmp_path / "x.npy", x)
    offline = json.loads(predict(linear_run, [tmp_path / "x.npy"], fmt="json").output)
    served = ServedModel.open(linear_run)
    with running_server(served) as (url, _):
        answer = httpx.post(f"{url}/v1/models/{served.name}:predict", json={"instances": x.reshape(-1).tolist()})
        labelled = httpx.post(f"{url}/v1/models/{served.name}:label", json={"instances": x.tolist()}).json()
    assert answer.status_code == 200, answer.text
    values = [r["value"] for r in offline]
    np.testing.assert_allclose(np.ravel(answer.json()["predictions"]), values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["value"] for r in labelled["predictions"]], values, rtol=1e-5, atol=1e-6)


def from_schema(schema: dict):
    """Values of the JSON Schema subset the server's OpenAPI document uses (hypothesis-jsonschema 0.23 does not
    run on current Hypothesis): object, array, number, string, oneOf; object properties may be left out."""
    if "oneOf" in schema:
        return st.one_of([from_schema(option) for option in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "array":
        items = from_schema(schema.get("items", {}))
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 8))
    if kind == "object":
        fields = {name: from_schema(sub) for name, sub in schema.get("properties", {}).items()}
        return (
            st.fixed_dictionaries({}, optional=fields) if fields else st.dictionaries(st.text(max_size=8), JSON_VALUES)
        )
    if kind == "number":
        return st.one_of(st.floats(allow_nan=False, width=32), st.integers(-(10**6), 10**6))
    if kind == "string":
        return st.text(max_size=20)
    return JSON_VALUES


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_fuzzing_every_endpoint_from_the_openapi_schema_gets_no_5xx(iris_server):
    """Bodies from each operation's schema, arbitrary JSON and raw bytes; names and versions valid or not."""
    client, served, _ = iris_server
    document = client.get("/openapi.json").json()
    started, checked = time.monotonic(), []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            bodies = st.one_of(from_schema(schema), JSON_VALUES) if schema else st.just(None)

            fuzz(client, served.name, method, path, bodies)
            checked.append(f"{method.upper()} {path}")
    assert len(checked) == sum(len(ops) for ops in document["paths"].values()) >= 10
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 60


def fuzz(client: httpx.Client, model: str, method: str, path: str, bodies) -> None:
    """Send one operation up to 50 generated requests; none may get a 5xx, and every 4xx says why in JSON."""

    @settings(max_examples=50, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(
        body=bodies,
        name=st.one_of(st.just(model), st.text(min_size=1, max_size=12)),
        version=st.sampled_from(["1", "2", "latest", "-1"]),
        raw=st.one_of(st.none(), st.binary(max_size=64)),
        multipart=st.booleans(),
    )
    def no_server_error(body, name, version, raw, multipart):
        url = path.replace("{model_name}", quote(name, safe="")).replace("{version}", version)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"content-type": "multipart/form-data; boundary=xyz"} if multipart and data else {}
        answer = client.request(method.upper(), url, content=data, headers=headers)
        assert answer.status_code < 500, (method, url, data, answer.text)
        if answer.status_code >= 400:
            assert answer.json()["error"]

    no_server_error()


def test_load_32_clients_for_20_seconds_gets_no_errors(iris_server):
    client, served, _ = iris_server
    url = str(client.base_url).rstrip("/") + f"/v1/models/{served.name}:predict"
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    seconds, clients, cap = 20.0, 32, 1000

    async def load():
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(limits=limits, timeout=30) as session:

            async def one_client():
                codes = []
                while time.monotonic() < deadline and len(codes) < cap:
                    try:
                        codes.append((await session.post(url, json=body)).status_code)
                    except httpx.HTTPError as exc:
                        codes.append(type(exc).__name__)
                return codes

            return [code for codes in await asyncio.gather(*(one_client() for _ in range(clients))) for code in codes]

    started = time.monotonic()
    codes = asyncio.run(load())
    assert time.monotonic() - started < seconds + 10
    assert len(codes) > clients and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


@contextmanager
def serve_process(run):
    """``dltool serve RUN --port 0`` in a subprocess; yield (process, base URL)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "dltool", "serve", str(run.path), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = server.stdout.readline()
        assert first.startswith("serving iris-test"), first + server.stderr.read()
        yield server, first.rsplit(" at ", 1)[1].strip()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.subprocess
def test_sigterm_finishes_the_requests_in_flight_then_exits_0(iris_run):
    with serve_process(iris_run) as (server, url):
        codes, sent, terminated = [], threading.Semaphore(0), threading.Event()

        def slow_body():  # half the body now, the rest after SIGTERM: the request is in flight when it comes
            yield b'{"instances": [[5.1, 3.5,'
            sent.release()
            terminated.wait(20)
            time.sleep(0.2)
            yield b" 1.4, 0.2]]}"

        def ask():
            answer = httpx.post(f"{url}/v1/models/iris-test:predict", content=slow_body(), timeout=30)
            codes.append(answer.status_code)

        asking = [threading.Thread(target=ask) for _ in range(8)]
        for thread in asking:
            thread.start()
        for _ in asking:
            assert sent.acquire(timeout=20)
        time.sleep(0.3)  # the server accepts the connections (one still waiting in the kernel would be reset)
        server.send_signal(signal.SIGTERM)
        terminated.set()
        for thread in asking:
            thread.join(20)
        assert server.wait(timeout=30) == 0
        assert codes == [200] * 8
        assert server.stdout.read().strip().endswith("stopped")


@pytest.mark.subprocess
def test_sigterm_under_load_answers_every_request_sent(iris_run):
    """32 keep-alive clients post without pause; SIGTERM mid-load. Each request gets a 200 or, once the server
    stopped listening, a refused connection: never a reset (issue 20: 1 in 3 runs reset one). Bounded: 15 s."""
    clients, seconds = 32, 15.0
    with serve_process(iris_run) as (server, url):
        predict = f"{url}/v1/models/iris-test:predict"
        body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}

        async def load():
            deadline, loaded, stopping = time.monotonic() + seconds, asyncio.Event(), False
            served = []  # per client, for each answer: (after SIGTERM?, its Connection header)

            async def one_client():  # one keep-alive connection each
                answers = []
                served.append(answers)
                async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=seconds) as session:
                    while time.monotonic() < deadline:
                        try:
                            answer = await session.post(predict, json=body)
                        except httpx.ConnectError:
                            return "refused"  # sent nothing: the server stopped listening
                        except httpx.HTTPError as exc:
                            return f"{type(exc).__name__} after {len(answers)} answers"
                        if answer.status_code != 200:
                            return f"status {answer.status_code}"
                        answers.append((stopping, answer.headers.get("connection")))
                        if len(served) == clients and all(served):
                            loaded.set()
                return "still served at the deadline"

            async def stop():
                nonlocal stopping
                await asyncio.wait_for(loaded.wait(), seconds)  # every client holds a keep-alive connection
                await asyncio.sleep(0.3)
                stopping = True
                server.send_signal(signal.SIGTERM)

            ends = await asyncio.gather(*(one_client() for _ in range(clients)), stop())
            return ends[:clients], served

        started = time.monotonic()
        ends, served = asyncio.run(load())
        assert server.wait(timeout=30) == 0
        took = time.monotonic() - started
    assert ends == ["refused"] * clients, ends
    assert all(answers[-1] == (True, "close") for answers in served), [a[-1] for a in served]
    assert took < seconds + 10
