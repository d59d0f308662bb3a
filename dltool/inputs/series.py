"""Forecasting models: every window of a CSV series (with its target for evaluate), or windows as arrays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.csv_source import column_problem
from ..data.timeseries import iter_labelled_windows, iter_window_chunks
from ..errors import InputError
from .base import TABLE_SUFFIXES, LabelledFile, ModelInputs, Rows, read_header


class SeriesInputs(ModelInputs):
    """A CSV of consecutive rows, read as every window of the run's length; or windows as arrays."""

    @property
    def window(self) -> int:
        return self.state.extra["timeseries"]["window"]

    def describe(self) -> str:
        return f"a CSV of recent rows with columns {', '.join(self.state.feature_names)}, oldest first"

    def csv_columns(self, path: Path, header: list[str]) -> list[str]:
        problem = column_problem(path, header, self.state.feature_names)
        if problem:
            raise InputError(problem)
        return self.state.feature_names

    def read(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        if path.suffix.lower() not in TABLE_SUFFIXES:
            yield from self._read_arrays(path)
            return
        columns = self.csv_columns(path, read_header(path))
        for last, x in iter_window_chunks(path, columns, self.window, self.chunk_rows, error=InputError):
            yield range(last, last + len(x)), x

    def _labelled_csv(self, path: Path) -> LabelledFile:
        """Every window of a CSV series with its target, as the run's data source builds them, in chunks."""
        state, horizon = self.state, self.state.extra["timeseries"]["horizon"]
        problem = column_problem(path, read_header(path), state.feature_names, targets=state.target_names)
        if problem:
            raise InputError(problem)
        features, targets, window, chunk = state.feature_names, state.target_names, self.window, self.chunk_rows
        parts = lambda: iter_labelled_windows(path, features, targets, window, horizon, chunk, InputError)  # noqa: E731
        return LabelledFile(path, state, parts)
