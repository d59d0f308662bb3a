"""Tabular models: CSV or Parquet rows (columns by name when the run knows them) and .npy/.npz arrays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.csv_source import CsvReader, iter_csv_chunks
from ..data.parquet_source import ParquetReader, iter_parquet_chunks
from ..errors import InputError
from .base import (
    ARRAY_SUFFIXES,
    PARQUET_SUFFIXES,
    TABLE_SUFFIXES,
    LabelledFile,
    ModelInputs,
    Rows,
    csv_column_problem,
    read_header,
)


class TableInputs(ModelInputs):
    """Samples of numbers: CSV or Parquet rows (columns by name when the run knows them) or .npy/.npz arrays."""

    def suffixes(self, in_folder: bool = False) -> frozenset[str]:
        return ARRAY_SUFFIXES | TABLE_SUFFIXES | PARQUET_SUFFIXES

    def csv_columns(self, path: Path, header: list[str]) -> list[str]:
        state = self.state
        if state.feature_names is None:
            if [len(header)] != list(state.input_shape):
                raise InputError(
                    f"{path}: expected {state.input_shape} columns, received {len(header)} ({', '.join(header)})"
                )
            return header
        problem = csv_column_problem(state, path, header, use=self.use, keep=self.keep)
        if problem:
            raise InputError(problem)
        return state.feature_names

    def read(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        suffix = path.suffix.lower()
        if suffix not in TABLE_SUFFIXES | PARQUET_SUFFIXES:
            yield from self._read_arrays(path)
            return
        rows = 0
        columns = self.csv_columns(path, read_header(path))
        chunks = iter_parquet_chunks if suffix in PARQUET_SUFFIXES else iter_csv_chunks
        for start, x in chunks(path, columns, self.chunk_rows, error=InputError):
            rows += len(x)
            yield range(start, start + len(x)), x
        if rows == 0:
            raise InputError(f"{path}: no data rows after the header")

    def _labelled_csv(self, path: Path) -> LabelledFile:
        """The training feature columns and target column of a CSV, streamed in chunks."""
        state = self.state
        if not state.feature_names or not state.target_names:
            return super()._labelled_csv(path)
        problem = csv_column_problem(state, path, read_header(path), labelled=True)
        if problem:
            raise InputError(problem)
        reader = CsvReader(
            path=str(path),
            delimiter=",",
            features=state.feature_names,
            target=state.target_names[0],
            chunk_rows=self.chunk_rows,
            error=InputError,
        )
        parts = lambda: ((x, y) for _, x, y in reader.chunks())  # noqa: E731
        return LabelledFile(path, state, parts, "no data rows after the header")

    def _labelled_parquet(self, path: Path) -> LabelledFile:
        """The training feature columns and target column of a Parquet file, streamed by record batch; the
        targets are encoded without a Python object per row."""
        state = self.state
        if not state.feature_names or not state.target_names:
            return super()._labelled_parquet(path)
        problem = csv_column_problem(state, path, read_header(path), labelled=True)
        if problem:
            raise InputError(problem)
        reader = ParquetReader(
            path=str(path),
            features=state.feature_names,
            target=state.target_names[0],
            chunk_rows=self.chunk_rows,
            error=InputError,
        )

        def parts():
            for _, x, y in reader.chunks():
                if state.task == "classification":
                    yield x, reader.class_indices(y, state.class_names)
                else:
                    yield x, reader.regression_values(y)

        return LabelledFile(path, state, parts, "holds no rows", encoded=True)
