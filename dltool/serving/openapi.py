"""The server's OpenAPI 3 document, built from the served run: request bodies carry its real input shape.

TF Serving's bodies are free-form JSON whose shape depends on the model, so the
schema is written here from the run's signature rather than derived from
handler annotations; clients, and the fuzzing test, read it at ``/openapi.json``.
"""

from __future__ import annotations

from .._version import __version__
from .label import LABEL_KEYS
from .servable import ServedModel

ERROR = {"$ref": "#/components/schemas/Error"}


def _tensor(shape: tuple[int, ...], dtype: str) -> dict:
    """JSON Schema of one sample: arrays nested as the shape, numbers or strings inside."""
    schema: dict = {"type": "string"} if dtype == "string" else {"type": "number"}
    for size in reversed(shape):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    return schema


def _responses(ok: dict, *codes: int) -> dict:
    answers = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    reasons = {400: "Bad request", 401: "Missing or wrong token", 404: "Unknown model or version", 413: "Too large"}
    for code in (*codes, 401):
        answers[str(code)] = {"description": reasons[code], "content": {"application/json": {"schema": ERROR}}}
    return answers


def _parameters(version: bool) -> list[dict]:
    found = [{"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if version:
        found.append({"name": "version", "in": "path", "required": True, "schema": {"type": "string"}})
    return found


def openapi_document(served: ServedModel) -> dict:
    """The OpenAPI 3.0 document of a server holding ``served``."""
    sig = served.signature
    sample = _tensor(sig.shape, sig.dtype)
    named = {"type": "object", "properties": {sig.input_name: sample}, "required": [sig.input_name]}
    predict_body = {
        "type": "object",
        "properties": {
            "signature_name": {"type": "string"},
            "instances": {"type": "array", "items": {"oneOf": [sample, named]}, "minItems": 1},
            "inputs": {"oneOf": [{"type": "array", "items": sample, "minItems": 1}, {"type": "object"}]},
        },
    }
    row = {"type": "object", "properties": {n: {"type": "number"} for n in served.state.feature_names or ()}}
    if served.state.kind == "text":
        row = {"type": "object", "properties": {served.state.feature_names[0]: {"type": "string"}}}
    label_body = {
        "type": "object",
        "properties": {
            "rows": {"type": "array", "items": row, "minItems": 1},
            "texts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "instances": {"type": "array", "items": sample, "minItems": 1},
        },
        "description": f"One of {', '.join(LABEL_KEYS)}; or multipart/form-data with files, as `dltool predict` reads",
    }
    anything = {"type": "object"}
    predict = {
        "summary": "TF Serving predict: raw inputs in, model outputs back",
        "requestBody": {"required": True, "content": {"application/json": {"schema": predict_body}}},
        "responses": _responses(anything, 400, 404, 413),
    }
    status = {"summary": "TF Serving model status", "responses": _responses(anything, 404)}
    metadata = {"summary": "TF Serving model metadata (signature_def)", "responses": _responses(anything, 404)}
    label = {
        "summary": "Labels and probabilities (or values) for what `dltool predict` reads",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": label_body},
                "multipart/form-data": {"schema": {"type": "object"}},
            },
        },
        "responses": _responses(anything, 400, 404, 413),
    }
    paths = {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "OK"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        "/v1/models/{model_name}": {"get": {**status, "parameters": _parameters(False)}},
        "/v1/models/{model_name}/versions/{version}": {"get": {**status, "parameters": _parameters(True)}},
        "/v1/models/{model_name}/metadata": {"get": {**metadata, "parameters": _parameters(False)}},
        "/v1/models/{model_name}/versions/{version}/metadata": {"get": {**metadata, "parameters": _parameters(True)}},
        "/v1/models/{model_name}:predict": {"post": {**predict, "parameters": _parameters(False)}},
        "/v1/models/{model_name}/versions/{version}:predict": {"post": {**predict, "parameters": _parameters(True)}},
        "/v1/models/{model_name}:label": {"post": {**label, "parameters": _parameters(False)}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"dltool serve: {served.name}", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
