"""`predict`: a run's model on new files (CSV, Parquet, .npy/.npz, images, texts), streamed in bounded chunks.

The run's reader (:mod:`dltool.inputs`) reads the files and applies the run's
saved preprocessing. Output rows (CSV, JSON or Parquet) are written as they are
predicted, to a temporary file renamed into place at the end, so memory stays
bounded whatever the input size and a failure leaves no half-written output.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ..data.preprocessing import Preprocessing
from ..errors import InputError, UsageError, did_you_mean
from ..fileio import atomic_target, check_output_file
from ..inputs import expand_inputs, inputs_for
from ..inputs.base import PARQUET_SUFFIXES, read_header
from ..keras_io import as_model_input
from ..metrics import predicted_classes
from ..predictions import labelled_values, prediction_record, value_columns
from ..runs import Run
from ..saved_run import SavedRun
from .predict_onnx import onnx_model, raw_inputs_state, verified_onnx


@dataclass
class PredictResult:
    """How many rows were predicted, from which files, and where they went."""

    rows: int
    inputs: list[str]
    output: str | None


def _csv_field(text: str) -> str:
    """Quote a CSV field when it needs it."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


FORMATS = ("csv", "json", "parquet")


class KeptColumns:
    """The values of ``--keep`` columns, row by row, for each CSV or Parquet input, read alongside the predictions.

    Output rows of a file come in increasing row order, so each file is read once, forward, in step with them.
    """

    def __init__(self, columns: list[str], files: list[Path]):
        self.columns = list(columns)
        self._readers: dict[str, Iterator[tuple[int, list[str]]]] = {}
        self._current: dict[str, tuple[int, list[str]]] = {}
        for path in files:
            if path.suffix.lower() != ".csv" and path.suffix.lower() not in PARQUET_SUFFIXES:
                raise InputError(f"{path}: --keep copies CSV or Parquet columns, and this input is neither")
            header = read_header(path)
            missing = [name for name in self.columns if name not in header]
            if missing:
                raise InputError(
                    f"{path}: no column '{missing[0]}' to keep{did_you_mean(missing[0], header)} "
                    f"(the file has {', '.join(header)})"
                )
            if path.suffix.lower() in PARQUET_SUFFIXES:
                self._readers[str(path)] = self._parquet_values(path, self.columns)
            else:
                self._readers[str(path)] = self._values(path, [header.index(name) for name in self.columns])

    @staticmethod
    def _parquet_values(path: Path, columns: list[str]) -> Iterator[tuple[int, list[str]]]:
        from ..data.parquet_source import iter_parquet_texts

        number = 0
        for rows in iter_parquet_texts(path, columns):
            for values in rows:
                yield number, values
                number += 1

    @staticmethod
    def _values(path: Path, indices: list[int]) -> Iterator[tuple[int, list[str]]]:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = (row for row in csv.reader(handle) if row)  # blank lines are not data rows, as for the inputs
            next(rows, None)
            for number, row in enumerate(rows):
                yield number, [row[i] if i < len(row) else "" for i in indices]

    def values(self, name: str, row: int) -> list[str]:
        """The kept values of data row ``row`` of input ``name``."""
        current = self._current.get(name)
        while current is None or current[0] < row:
            current = next(self._readers[name], (row, [""] * len(self.columns)))
        self._current[name] = current
        return current[1]


class _Writer:
    """Streams prediction rows as CSV or JSON (a JSON array of objects)."""

    def __init__(
        self,
        stream: TextIO,
        fmt: str,
        state: Preprocessing,
        outputs: int,
        kept: KeptColumns | None = None,
        threshold: float | None = None,
    ):
        self.stream, self.fmt, self.state, self.kept, self.threshold = stream, fmt, state, kept, threshold
        self.count = 0
        self.columns = value_columns(state, outputs)
        self.started = False

    def _start(self) -> None:
        # Written with the first rows, so an input refused before any prediction leaves the output empty.
        if self.fmt == "csv":
            self.csv = csv.writer(self.stream, lineterminator="\n")
            self.csv.writerow(["input", "row"] + (self.kept.columns if self.kept else []) + self.columns)
        else:
            self.stream.write("[")
        self.started = True

    def write(self, segments: list[tuple[str, range | list[int]]], outputs: np.ndarray) -> None:
        if not self.started:
            self._start()
        values = labelled_values(self.state, outputs, self.threshold)
        where = [(name, row) for name, rows in segments for row in rows]
        if self.fmt == "csv":
            self._write_csv_rows(segments, values)
        else:
            for (name, row), vals in zip(where, values):
                record = {"input": name, "row": row}
                if self.kept is not None:
                    record.update(zip(self.kept.columns, self.kept.values(name, row)))
                record.update(prediction_record(self.state, self.columns, vals))
                self.stream.write(("," if self.count else "") + "\n  " + json.dumps(record))
                self.count += 1
            return
        self.count += len(values)

    def _write_csv_rows(self, segments: list[tuple[str, range | list[int]]], values: list[list]) -> None:
        # %-formatting whole lines is ~4x the csv module; only names and labels may need CSV quoting.
        classify = self.state.task == "classification"
        numbers = ",".join(["%.6g"] * (len(values[0]) - (1 if classify else 0)))
        lines = []
        position = 0
        for name, rows in segments:
            prefix = _csv_field(name) + ","
            count = len(rows)
            for row, vals in zip(rows, values[position : position + count]):
                if self.kept is not None:
                    row = f"{row}," + ",".join(_csv_field(v) for v in self.kept.values(name, row))
                if classify:
                    lines.append(f"{prefix}{row},{_csv_field(str(vals[0]))}," + numbers % tuple(vals[1:]))
                else:
                    lines.append(f"{prefix}{row}," + numbers % tuple(vals))
            position += count
        self.stream.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if not self.started:
            self._start()
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")


class _ParquetWriter:
    """Streams prediction rows into a Parquet file: one row group per model call, typed columns (input, row, the
    --keep columns and label as strings, probabilities and values as float32)."""

    def __init__(
        self,
        path: Path,
        state: Preprocessing,
        outputs: int,
        kept: KeptColumns | None = None,
        threshold: float | None = None,
    ):
        from ..data.table_files import import_pyarrow

        self.pa = import_pyarrow("-o FILE.parquet")
        self.path, self.state, self.kept, self.threshold = path, state, kept, threshold
        self.columns = value_columns(state, outputs)
        pa = self.pa
        fields = [pa.field("input", pa.string()), pa.field("row", pa.int64())]
        fields += [pa.field(name, pa.string()) for name in (kept.columns if kept else [])]
        if state.task == "classification":
            fields += [pa.field("label", pa.string())] + [pa.field(c, pa.float32()) for c in self.columns[1:]]
        else:
            fields += [pa.field(c, pa.float32()) for c in self.columns]
        self.schema = pa.schema(fields)
        self.writer = pa.parquet.ParquetWriter(str(path), self.schema)
        self.count = 0

    def write(self, segments: list[tuple[str, range | list[int]]], outputs: np.ndarray) -> None:
        pa = self.pa
        outputs = np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
        names = np.repeat(np.array([name for name, _ in segments], dtype=object), [len(rows) for _, rows in segments])
        rows = np.concatenate([np.asarray(rows, dtype=np.int64) for _, rows in segments])
        arrays = [pa.array(names, pa.string()), pa.array(rows)]
        if self.kept is not None:
            values = [self.kept.values(name, row) for name, row in zip(names, rows.tolist())]
            arrays += [pa.array([v[i] for v in values], pa.string()) for i in range(len(self.kept.columns))]
        if self.state.task == "classification":
            labels = pa.array(self.state.class_names, pa.string()).take(
                pa.array(predicted_classes(outputs, self.threshold))
            )
            if outputs.shape[1] == 1:  # one sigmoid output: P(class 1), shown as both classes' probabilities
                outputs = np.hstack([1 - outputs, outputs])
            arrays.append(labels)
        arrays += [pa.array(outputs[:, i]) for i in range(outputs.shape[1])]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.count += len(rows)

    def close(self) -> None:
        self.writer.close()


def output_format(fmt: str | None, output) -> str:
    """The output format: ``fmt`` when given, else parquet for an output path ending in .parquet, else csv."""
    if fmt is None:
        is_parquet = isinstance(output, (str, Path)) and Path(output).suffix.lower() in PARQUET_SUFFIXES
        return "parquet" if is_parquet else "csv"
    if fmt not in FORMATS:
        raise InputError(f"expected format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}, received '{fmt}'")
    if fmt == "parquet" and not isinstance(output, (str, Path)):
        raise InputError("--format parquet writes a file, not text: give -o FILE.parquet")
    return fmt


def predict(
    ref: str | Run,
    inputs: list[str | Path],
    *,
    output: str | Path | TextIO | None = None,
    fmt: str | None = None,
    runs_root: str | Path | None = None,
    keep: list[str] | None = None,
    checkpoint: str = "final",
    runtime: str = "keras",
    threshold: float | None = None,
) -> PredictResult:
    """Predict on ``inputs`` with a run's model and write CSV, JSON or Parquet rows to ``output``.

    ``runtime`` (default keras) ``onnx`` runs the run's verified ONNX export in onnxruntime instead
    (:mod:`dltool.commands.predict_onnx`; :func:`choose_runtime` decides it without TensorFlow).

    ``output`` is a path (written via a temp file and renamed), an open text
    stream, or None for an in-memory string returned in ``PredictResult.output``.
    ``fmt`` (csv, json or parquet; default None: parquet for an ``output`` path
    ending in .parquet, else csv); parquet needs an output path.
    ``keep`` names CSV columns (an id) copied into each output row; ``checkpoint``
    is ``final`` (model.keras) or ``best`` (checkpoints/best.keras).
    A binary run's labels use its decision threshold (``train.threshold``, else 0.5); ``threshold``
    (default None) overrides it for this call.
    """
    fmt = output_format(fmt, output)
    if fmt == "parquet":
        from ..data.table_files import import_pyarrow

        import_pyarrow("-o FILE.parquet")  # before the model loads
    if isinstance(output, (str, Path)):
        check_output_file(
            output, "predictions", "-o", InputError
        )  # before any work: a bad -o used to fail after predicting
    saved = SavedRun.open(ref, runs_root)
    state = saved.preprocessing
    decision = saved.decision_threshold(threshold)
    onnx_file = verified_onnx(saved.run, checkpoint) if runtime == "onnx" else None
    if runtime == "onnx" and onnx_file is None:
        raise UsageError(f"--runtime onnx: run {saved.run.id} has no verified ONNX export of its current model")
    reader = inputs_for(raw_inputs_state(state) if onnx_file else state)
    reader.keep = tuple(keep or ())
    files = expand_inputs(inputs, reader)
    kept = KeptColumns(keep, files) if keep else None
    for path in files:  # refuse unusable inputs before the model loads and any output is written
        reader.check(path)
    if onnx_file is not None:
        call, outputs = onnx_model(onnx_file)
        outputs = outputs or len(state.class_names or []) or 1
    else:
        model = saved.load_model(checkpoint)
        outputs = int(model.output_shape[-1] or 1)

        def call(x):
            return model.predict_on_batch(as_model_input(x))

    # TensorFlow leaves millions of objects for the cyclic GC to rescan whenever row lists are built;
    # freezing them makes those collections cheap (measured: 2x faster output on 1M rows).
    gc.freeze()

    def run_into(stream: TextIO) -> int:
        writer = _Writer(stream, fmt, state, outputs, kept, decision)
        for segments, x in reader.batches(files):
            writer.write(segments, np.asarray(call(x)))
        writer.close()
        return writer.count

    if output is None:
        buffer = io.StringIO()
        rows = run_into(buffer)
        return PredictResult(rows=rows, inputs=[str(f) for f in files], output=buffer.getvalue())
    if not isinstance(output, (str, Path)):
        return PredictResult(rows=run_into(output), inputs=[str(f) for f in files], output=None)
    target = Path(output)
    if fmt == "parquet":
        with atomic_target(target) as tmp:
            writer = _ParquetWriter(tmp, state, outputs, kept, decision)
            try:
                for segments, x in reader.batches(files):
                    writer.write(segments, np.asarray(call(x)))
            finally:
                writer.close()
        return PredictResult(rows=writer.count, inputs=[str(f) for f in files], output=str(target))
    with atomic_target(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as stream:
        rows = run_into(stream)
    return PredictResult(rows=rows, inputs=[str(f) for f in files], output=str(target))
