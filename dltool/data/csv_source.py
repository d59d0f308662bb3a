"""The ``csv`` source, and the CSV reading that ``predict`` shares with it.

A header row is required; the target is chosen by column name. Feature
columns must be numeric; a class target may hold any strings (they are mapped
to indices by :mod:`dltool.data.labels`).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .sources import RawData, require_data_file


def open_csv(path: str | Path, delimiter: str = ",", error=DataError):
    """Open a CSV and read its header; return (file, reader, header). Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # utf-8-sig: spreadsheet exports start with a BOM
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


def require_columns(header: list[str], names: list[str], path, error=DataError, keys: dict | None = None) -> None:
    """Raise for the first of ``names`` missing from ``header``, with a did-you-mean.

    With ``keys`` ({column: config key path}) the error is a ConfigError at that key.
    """
    for name in names:
        if name not in header:
            message = f"no column '{name}' in {path}{did_you_mean(name, header)}; the columns are {', '.join(header)}"
            raise ConfigError(message, path=keys[name]) if keys else error(message)


def column_problem(
    path,
    header: list[str],
    takes: list[str],
    *,
    targets: list[str] = (),
    allowed: list[str] | None = None,
    holder: str = "the file",
    hint: Callable[[list[str]], str] | None = None,
) -> str | None:
    """The one message for a CSV whose columns do not fit a model, or None when they do.

    ``takes`` are the model's input columns and ``targets`` the label columns
    also needed (evaluate); with ``allowed``, any column outside these and
    ``allowed`` is unexpected (otherwise other columns are ignored). ``holder``
    names what has the columns in the message (a served JSON row: "the row");
    ``hint(unexpected columns)`` says how to get past unexpected columns.
    """
    wanted = list(dict.fromkeys([*takes, *targets]))
    missing = [name for name in wanted if name not in header]
    if missing and header and all(_is_number(h) for h in header):
        shown = ", ".join(header[:5]) + (", ..." if len(header) > 5 else "")
        return (
            f"{path}: the first line holds numbers ({shown}), not column names: the CSV needs a header row "
            f"naming its columns, as in {','.join(wanted)}"
        )
    if missing:
        spare = [h for h in header if h not in wanted]
        problem = f"missing column '{missing[0]}'{did_you_mean(missing[0], spare)}"
    elif allowed is not None and (extra := [h for h in header if h not in wanted and h not in allowed]):
        problem = f"unexpected column(s) {', '.join(extra)}"
    else:
        return None
    target = f"; expected target column {', '.join(targets)}" if targets else ""
    advice = f": {hint(extra)}" if hint is not None and not missing else ""
    return f"{path}: {problem} (the model takes {', '.join(takes)}{target}; {holder} has {', '.join(header)}){advice}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def column_indices(header: list[str], wanted: list[str], path, error=DataError) -> list[int]:
    """Indices of ``wanted`` in ``header``; a missing name is an error with a did-you-mean (see column_problem)."""
    problem = column_problem(path, header, wanted)
    if problem:
        raise error(problem)
    return [header.index(name) for name in wanted]


def to_float_matrix(
    rows: list[list[str]], indices: list[int], names: list[str], path, lines: list[int], error=DataError
) -> np.ndarray:
    """Convert the chosen cells of ``rows`` to float64; the first bad cell is named by its file line and column.

    ``lines[i]`` is the line number of ``rows[i]`` in the file.
    """
    try:
        matrix = np.array([[row[i] for i in indices] for row in rows], dtype=np.float64)
    except (ValueError, IndexError):
        for line, row in zip(lines, rows):
            if len(row) <= max(indices):
                raise error(
                    f"{path}:{line}: expected at least {max(indices) + 1} fields, received {len(row)}"
                ) from None
            for i, name in zip(indices, names):
                try:
                    float(row[i])
                except ValueError:
                    shown = repr(row[i]) if row[i].strip() else "an empty cell"
                    raise error(f"{path}:{line}: column '{name}': expected a number, received {shown}") from None
        raise
    if not np.isfinite(matrix).all():
        offset, col = map(int, np.argwhere(~np.isfinite(matrix))[0])
        raise error(
            f"{path}:{lines[offset]}: column '{names[col]}': expected a finite number, "
            f"received {rows[offset][indices[col]]!r}"
        )
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


def iter_line_chunks(handle, path, chunk_rows: int, error=DataError) -> Iterator[tuple[int, list[str]]]:
    """Yield (file line of the first line, up to ``chunk_rows`` raw lines) from an open CSV after its header."""
    line = 2
    while True:
        try:
            lines = list(itertools.islice(handle, chunk_rows))
        except UnicodeDecodeError:
            raise error(f"{path}: expected UTF-8 text, received binary or non-UTF-8 data") from None
        if not lines:
            return
        yield line, lines
        line += len(lines)


def parse_numeric_lines(
    lines: list[str], indices: list[int], names: list[str], path, first_line: int, delimiter: str = ",", error=DataError
) -> np.ndarray:
    """The chosen columns of raw CSV lines as float64, blank lines skipped.

    NumPy's C reader parses the lines (about 10x the csv module); lines it
    refuses are parsed again row by row to name the bad line and column.
    Records must be one per line (no line breaks inside quotes).
    """
    try:
        matrix = np.loadtxt(
            lines, delimiter=delimiter, usecols=indices, ndmin=2, dtype=np.float64, quotechar='"', comments=None
        )
        if np.isfinite(matrix).all():
            return matrix
    except ValueError:
        pass
    rows, numbers = read_rows(csv.reader(lines, delimiter=delimiter), path, error)
    return to_float_matrix(rows, indices, names, path, [first_line + n - 1 for n in numbers], error)


def iter_csv_chunks(
    path, feature_names: list[str], chunk_rows: int, delimiter: str = ",", error=DataError
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row number, float64 matrix of the feature columns), ``chunk_rows`` lines at a time."""
    handle, _, header = open_csv(path, delimiter, error)
    with handle:
        indices = column_indices(header, feature_names, path, error)
        row_number = 0
        for line, lines in iter_line_chunks(handle, path, chunk_rows, error):
            matrix = parse_numeric_lines(lines, indices, feature_names, path, line, delimiter, error)
            if len(matrix):
                yield row_number, matrix
            row_number += len(matrix)


@dataclass
class CsvReader:
    """Reads a CSV in chunks of lines: chosen feature columns as float64, the target column as text.

    ``error`` is the exception a bad file raises (a missing column is a ConfigError at its key).
    """

    path: str
    delimiter: str
    features: list[str]
    target: str
    chunk_rows: int = 65536
    error: type = DataError
    indices: list[int] = field(default_factory=list)
    target_index: int = 0

    def open(self):
        """Open the file, check the columns, and return the handle positioned after the header."""
        handle, _, header = open_csv(self.path, self.delimiter, self.error)
        try:
            require_columns(header, [self.target], self.path, keys={self.target: "data.target"})
        except ConfigError:
            handle.close()
            raise
        try:
            self.indices = column_indices(header, self.features, self.path, ConfigError)
        except ConfigError as exc:
            handle.close()
            raise ConfigError(exc.detail, path="data.features") from None
        self.target_index = header.index(self.target)
        return handle

    def chunks(self, digest=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (row numbers, features, target texts) per chunk; feed the raw text to ``digest`` if given."""
        handle = self.open()
        row = 0
        with handle:
            for line, lines in iter_line_chunks(handle, self.path, self.chunk_rows, self.error):
                if digest is not None:
                    digest.update("".join(lines).encode())
                x = parse_numeric_lines(lines, self.indices, self.features, self.path, line, self.delimiter, self.error)
                y = self._targets(lines, line)
                yield np.arange(row, row + len(x)), x, y
                row += len(x)

    def _targets(self, lines: list[str], first_line: int) -> np.ndarray:
        try:
            return np.char.strip(
                np.loadtxt(
                    lines,
                    delimiter=self.delimiter,
                    usecols=[self.target_index],
                    dtype=str,
                    quotechar='"',
                    comments=None,
                    ndmin=1,
                )
            )
        except ValueError:
            rows, numbers = read_rows(csv.reader(lines, delimiter=self.delimiter), self.path, self.error)
            for row, number in zip(rows, numbers):
                if len(row) <= self.target_index:
                    raise self.error(
                        f"{self.path}:{first_line + number - 1}: expected at least "
                        f"{self.target_index + 1} fields, received {len(row)}"
                    ) from None
            return np.array([row[self.target_index].strip() for row in rows], dtype=str)


def feature_columns(config, header: list[str]) -> list[str]:
    """The input columns of a ``csv`` config for a file with ``header``: data.features, or (null) every column
    but the target and data.exclude. An excluded column the file lacks is a ConfigError at its key."""
    require_columns(
        header, config.exclude, config.path, keys={name: f"data.exclude[{i}]" for i, name in enumerate(config.exclude)}
    )
    features = config.features or [h for h in header if h != config.target and h not in config.exclude]
    if config.target in features:
        raise ConfigError(f"the target column '{config.target}' is also listed as a feature", path="data.features")
    return features


ID_MIN_ROWS = 10  # fewer rows say nothing about a column being an id
ID_DISTINCT = 0.95  # share of distinct values (and of the range filled) that makes an integer column id-like


def id_column_warnings(x: np.ndarray, names: list[str]) -> list[str]:
    """A warning for each column of ``x`` that looks like a row id rather than a measurement.

    A row id is integer, (nearly) unique per row, and either strictly monotonic
    in file order or packed into a range about as long as the rows (a shuffled
    0..n-1); an integer measurement with many distinct values (an income) is
    spread far wider, so it is not flagged.
    """
    rows = len(x)
    warnings = []
    if rows < ID_MIN_ROWS:
        return warnings
    for j, name in enumerate(names):
        column = x[:, j]
        if not np.array_equal(column, np.floor(column)):
            continue
        distinct = len(np.unique(column))
        steps = np.diff(column)
        low, high = column.min(), column.max()
        if (steps > 0).all():
            shape = "increasing"
        elif (steps < 0).all():
            shape = "decreasing"
        elif distinct >= ID_DISTINCT * rows and high - low + 1 <= rows / ID_DISTINCT:
            shape = f"values {low:.0f} to {high:.0f}"
        else:
            continue
        unique = "unique per row" if distinct == rows else f"{distinct / rows:.0%} of rows distinct"
        warnings.append(
            f"data.path: column '{name}' looks like a row id (integer, {unique}, {shape}); it is used as a "
            f"feature. Exclude it with data.exclude: [{name}]"
        )
    return warnings


def preprocessing_kind(config) -> dict:
    """What predict needs to read a CSV run's files: the excluded columns, ignored on input ({}: none)."""
    return {"extra": {"exclude": list(config.exclude)}} if config.exclude else {}


def load(config, **_) -> RawData:
    """Load a CSV: numeric feature columns as x, the target column as y (text, for class labels).

    With data.features null, a feature column that looks like a row id gets a warning (RawData.warnings).
    """
    path = config.path
    require_data_file(path, expected="a CSV file")
    handle, _, header = open_csv(path, config.delimiter)
    handle.close()
    features = feature_columns(config, header)
    reader = CsvReader(path=path, delimiter=config.delimiter, features=features, target=config.target)
    parts = [(x, y) for _, x, y in reader.chunks()]
    if not parts or not sum(len(x) for x, _ in parts):
        raise DataError(f"{path}: no data rows after the header")
    x = np.concatenate([x for x, _ in parts])
    y = np.concatenate([y for _, y in parts]).astype(object)
    warnings = [] if config.features else id_column_warnings(x, features)
    return RawData(x=x, y=y, feature_names=features, warnings=warnings)
