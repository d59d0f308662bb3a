"""dltool's own ``:label`` endpoint: what ``dltool predict`` reads, sent as JSON or as uploaded files.

JSON bodies hold ``rows`` (objects keyed by the training file's column names;
for a forecaster, consecutive rows of the series), ``texts`` or ``instances``
(arrays, as for TF Serving). Uploaded files (multipart) go through the very
reader ``dltool predict`` uses for files of their type (CSV, .npy/.npz, images,
.txt), so their checks and messages are the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..data.preprocessing import Preprocessing
from ..data.timeseries import make_windows
from ..errors import DltoolError, RequestError
from ..inputs import expand_inputs
from ..inputs.base import csv_column_problem
from .protocol import json_kind, to_array
from .servable import ServedModel

LABEL_KEYS = ("rows", "texts", "instances")


def label_json(body: object, served: ServedModel) -> tuple[np.ndarray, list[dict]]:
    """(raw samples, where each came from) of a JSON ``:label`` body."""
    if not isinstance(body, dict) or not (keys := [k for k in LABEL_KEYS if k in body]):
        received = f"keys {', '.join(map(str, body)) or 'none'}" if isinstance(body, dict) else f"a {json_kind(body)}"
        raise RequestError(f"expected a JSON object with {_takes(served)}, received {received}")
    if len(keys) > 1:
        raise RequestError(f"send one of {', '.join(keys)}, not several")
    key, values = keys[0], body[keys[0]]
    if not isinstance(values, list) or not values:
        raise RequestError(f"'{key}': expected a non-empty array, received a JSON {json_kind(values)}")
    kind, state = served.state.kind, served.state
    if key == "instances":
        raw = to_array(values, served.signature, "instances")
    elif key == "texts":
        if kind != "text":
            raise RequestError(f"'texts': this model takes {_takes(served)}, not texts")
        raw = _strings(values, "texts").reshape(-1, 1)
    else:
        if not state.feature_names:
            raise RequestError(f"'rows': this run's inputs have no column names; send {_takes(served)}")
        table = _columns(values, state)
        if kind == "text":
            raw = _strings([row[0] for row in table], "rows").reshape(-1, 1)
        else:
            raw = _numbers(table, state.feature_names)
    if kind == "timeseries" and key == "rows":
        window = state.extra["timeseries"]["window"]
        if len(raw) < window:
            raise RequestError(
                f"'rows': expected at least {window} consecutive rows (the model's window), received {len(raw)}"
            )
        return make_windows(raw, window), [{"row": i} for i in range(window - 1, len(raw))]
    return raw, [{"row": i} for i in range(len(raw))]


def _takes(served: ServedModel) -> str:
    """What a ``:label`` JSON body holds for this model, in words."""
    state = served.state
    if state.kind == "text":
        return f"'texts' (an array of strings) or 'rows' (objects with a '{state.feature_names[0]}' key)"
    instances = f"'instances' ({served.signature.describe()})"
    if state.feature_names:
        names = ", ".join(state.feature_names)
        series = " (consecutive rows of the series, oldest first)" if state.kind == "timeseries" else ""
        return f"'rows' (objects keyed by {names}){series} or {instances}"
    return instances


def _columns(rows: list, state: Preprocessing) -> list[list]:
    """The feature columns of each JSON row, in the model's order; a row that does not fit (a column missing or
    unexpected: the rule of :func:`~dltool.inputs.base.csv_column_problem`) is refused by its index."""
    table, names = [], list(state.feature_names)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"rows[{index}]: expected an object keyed by column name, received a {json_kind(row)}")
        problem = csv_column_problem(state, f"rows[{index}]", list(row), use="serve", holder="the row")
        if problem:
            raise RequestError(problem)
        table.append([row[name] for name in names])
    return table


def _numbers(table: list[list], names: list[str]) -> np.ndarray:
    """JSON cells as float64: numbers, or numbers written as strings (as in a CSV); the first bad cell is named."""
    for index, row in enumerate(table):
        for name, cell in zip(names, row):
            if isinstance(cell, bool) or not isinstance(cell, (int, float, str)) or not _is_number(cell):
                shown = f"'{cell}'" if isinstance(cell, str) else f"a JSON {json_kind(cell)}"
                raise RequestError(f"rows[{index}]: column '{name}': expected a number, received {shown}")
    return np.array(table, dtype=np.float64)


def _is_number(cell) -> bool:
    try:
        float(cell)
    except (ValueError, OverflowError):
        return False
    return True


def _strings(values: list, where: str) -> np.ndarray:
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise RequestError(f"{where}[{bad}]: expected a string, received a JSON {json_kind(values[bad])}")
    return np.array(values, dtype=object)


def label_files(uploads: list[tuple[str, bytes]], served: ServedModel) -> tuple[np.ndarray, list[dict]]:
    """(model inputs, where each came from) of uploaded files, read as ``dltool predict`` reads files.

    Blocking (files are written to a temporary folder and decoded): run it on a worker thread.
    """
    if not uploads:
        raise RequestError("expected at least one uploaded file (multipart/form-data), received none")
    with tempfile.TemporaryDirectory(prefix="dltool-serve-") as folder:
        paths, names = [], {}
        for index, (filename, data) in enumerate(uploads):
            name = Path(filename or f"upload{index}").name or f"upload{index}"
            path = Path(folder, str(index), name)
            path.parent.mkdir()
            path.write_bytes(data)
            paths.append(path)
            names[str(path)] = name
        try:
            files = expand_inputs(paths, served.reader)
            for path in files:
                served.reader.check(path)
            chunks, rows = [], []
            for segments, x in served.reader.batches(files):
                chunks.append(x)
                rows += [{"input": names[file], "row": row} for file, numbers in segments for row in numbers]
        except DltoolError as exc:
            message = str(exc)
            for path, name in names.items():
                message = message.replace(path, name)
            raise RequestError(message) from None
    return np.concatenate(chunks), rows
