"""The ``csv`` source, and the CSV reading that ``predict`` shares with it.

A header row is required; the target is chosen by column name. Feature
columns must be numeric; a class target may hold any strings (they are mapped
to indices by :mod:`dltool.data.labels`).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .sources import RawData


def open_csv(path: str | Path, delimiter: str = ",", error=DataError):
    """Open a CSV and read its header; return (file, reader, header). Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        handle = open(path, newline="", encoding="utf-8")
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
    except UnicodeDecodeError:
        raise error(f"{path}: expected a UTF-8 text CSV, received binary or non-UTF-8 data") from None
    except (OSError, csv.Error) as exc:
        raise error(f"{path}: cannot read as CSV ({exc})") from None
    if not header or not any(h.strip() for h in header):
        handle.close()
        raise error(f"{path}: the file is empty; expected a header row naming the columns")
    return handle, reader, [h.strip() for h in header]


def column_indices(header: list[str], wanted: list[str], path, error=DataError, key: str = "columns") -> list[int]:
    """Indices of ``wanted`` in ``header``; a missing name is an error with a did-you-mean."""
    missing = [name for name in wanted if name not in header]
    if missing:
        name = missing[0]
        raise error(
            f"{path}: missing column '{name}'{did_you_mean(name, header)} "
            f"(expected {key} {', '.join(wanted)}; the file has {', '.join(header)})"
        )
    return [header.index(name) for name in wanted]


def to_float_matrix(rows: list[list[str]], indices: list[int], names: list[str], path, lines: list[int],
                    error=DataError) -> np.ndarray:  # fmt: skip
    """Convert the chosen cells of ``rows`` to float64; the first bad cell is named by its file line and column.

    ``lines[i]`` is the line number of ``rows[i]`` in the file.
    """
    try:
        matrix = np.array([[row[i] for i in indices] for row in rows], dtype=np.float64)
    except (ValueError, IndexError):
        for line, row in zip(lines, rows):
            if len(row) <= max(indices):
                raise error(f"{path}:{line}: expected at least {max(indices) + 1} fields, received {len(row)}") from None
            for i, name in zip(indices, names):
                try:
                    float(row[i])
                except ValueError:
                    shown = repr(row[i]) if row[i].strip() else "an empty cell"
                    raise error(f"{path}:{line}: column '{name}': expected a number, received {shown}") from None
        raise
    if not np.isfinite(matrix).all():
        offset, col = map(int, np.argwhere(~np.isfinite(matrix))[0])
        raise error(f"{path}:{lines[offset]}: column '{names[col]}': expected a finite number, "
                    f"received {rows[offset][indices[col]]!r}")  # fmt: skip
    return matrix


def read_rows(reader, path, error=DataError) -> tuple[list[list[str]], list[int]]:
    """All non-blank rows left in ``reader``, and the file line of each."""
    rows, lines = [], []
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise error(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return rows, lines


def iter_csv_chunks(path, feature_names: list[str], chunk_rows: int, delimiter: str = ",",
                    error=DataError) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """Yield (first row number, float64 matrix of the feature columns), ``chunk_rows`` rows at a time.

    Each chunk is parsed by NumPy's C reader (about 10x the csv module); a
    chunk it refuses is parsed again row by row to name the bad line and
    column. Records must be one per line (no line breaks inside quotes).
    """
    handle, _, header = open_csv(path, delimiter, error)
    with handle:
        indices = column_indices(header, feature_names, path, error, key="feature columns")
        line, row_number = 2, 0  # file line of the chunk's first line, and rows yielded so far
        while True:
            try:
                lines = list(itertools.islice(handle, chunk_rows))
            except UnicodeDecodeError:
                raise error(f"{path}: expected UTF-8 text, received binary or non-UTF-8 data") from None
            if not lines:
                return
            try:
                matrix = np.loadtxt(lines, delimiter=delimiter, usecols=indices, ndmin=2, dtype=np.float64,
                                    quotechar='"', comments=None)  # fmt: skip
                ok = bool(np.isfinite(matrix).all())
            except ValueError:
                ok = False
            if not ok:  # let the row-by-row parser find and name the first bad cell
                rows, numbers = read_rows(csv.reader(lines, delimiter=delimiter), path, error)
                matrix = to_float_matrix(rows, indices, feature_names, path, [line + n - 1 for n in numbers], error)
            if len(matrix):
                yield row_number, matrix
            line += len(lines)
            row_number += len(matrix)


def load(config, **_) -> RawData:
    """Load a CSV: numeric feature columns as x, the target column as y (strings kept for class labels)."""
    path = config.path
    if not Path(path).is_file():
        raise ConfigError(f"data file not found: {path}", path="data.path")
    handle, reader, header = open_csv(path, config.delimiter)
    with handle:
        if config.target not in header:
            raise ConfigError(
                f"no column '{config.target}' in {path}{did_you_mean(config.target, header)}; "
                f"the columns are {', '.join(header)}",
                path="data.target",
            )
        features = config.features or [h for h in header if h != config.target]
        if config.target in features:
            raise ConfigError(f"the target column '{config.target}' is also listed as a feature", path="data.features")
        try:
            column_indices(header, features, path, ConfigError, key="features")
        except ConfigError as exc:
            raise ConfigError(exc.detail, path="data.features") from None
        rows, lines = read_rows(reader, path, DataError)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    x = to_float_matrix(rows, column_indices(header, features, path), features, path, lines)
    target_index = header.index(config.target)
    y = np.array([row[target_index].strip() if target_index < len(row) else "" for row in rows], dtype=object)
    return RawData(x=x, y=y, feature_names=features)
