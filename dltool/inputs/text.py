"""Text models: raw texts from a .txt file (one per line) or a CSV column; the model tokenizes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.csv_source import column_problem
from ..data.text import read_text_column
from ..errors import InputError
from .base import TABLE_SUFFIXES, TEXT_CHUNK, TEXT_SUFFIXES, LabelledFile, ModelInputs, Rows, read_header


class TextInputs(ModelInputs):
    """Raw texts: a .txt file (one per line) or a CSV's text column; the model's own layers tokenize them."""

    @property
    def column(self) -> str | None:
        return self.state.feature_names[0] if self.state.feature_names else None

    @property
    def chunk_rows(self) -> int:
        return TEXT_CHUNK

    def suffixes(self, in_folder: bool = False) -> frozenset[str]:
        return TEXT_SUFFIXES | TABLE_SUFFIXES

    def describe(self) -> str:
        return f"texts: a .txt file with one per line, or a CSV with a column '{self.column}'"

    def csv_columns(self, path: Path, header: list[str]) -> list[str]:
        if self.column in header:
            return [self.column]
        if len(header) == 1:
            return header  # a one-column CSV of texts, whatever its header says
        raise InputError(
            f"{column_problem(path, header, [self.column])}; a CSV with no column '{self.column}' "
            "is read only when it has a single column of texts"
        )

    def read(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        if path.suffix.lower() in TABLE_SUFFIXES:
            texts, _, _ = read_text_column(path, self.csv_columns(path, read_header(path))[0], error=InputError)
            rows = range(len(texts))
        else:
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError:
                raise InputError(f"{path}: expected UTF-8 text, one text per line") from None
            rows = [i for i, line in enumerate(lines) if line.strip()]  # blank lines are not texts
            texts = np.array([lines[i] for i in rows], dtype=object)
        if not len(texts):
            raise InputError(f"{path}: holds no texts")
        for start in range(0, len(texts), self.chunk_rows):
            yield rows[start : start + self.chunk_rows], texts[start : start + self.chunk_rows].reshape(-1, 1)

    def _labelled_csv(self, path: Path) -> LabelledFile:
        """The text column and the label column of a CSV (texts are read whole, as predict reads them)."""
        state = self.state
        if not state.target_names or self.column is None:
            return super()._labelled_csv(path)
        problem = column_problem(path, read_header(path), [self.column], targets=state.target_names[:1])
        if problem:
            raise InputError(problem)
        texts, labels, _ = read_text_column(path, self.column, error=InputError, label=state.target_names[0])
        return self._in_memory(path, texts.reshape(-1, 1), labels, "no data rows after the header")
