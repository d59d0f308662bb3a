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
from .labels import labels_to_indices, regression_targets
from .sources import RawData
from .table_files import (  # noqa: F401  (id_column_warnings, preprocessing_kind: public names of the csv source)
    check_weights,
    describe_path,
    expand_paths,
    feature_columns,
    hashes_file_names,
    id_column_warnings,
    preprocessing_kind,
    read_columns,
    require_columns,
    require_same_columns,
    several_files,
    split_weights,
    text_hashes,
)

CHUNK_BYTES = 16 * 2**20  # features held per chunk of a streamed table
CSV_SUFFIXES = (".csv", ".tsv")  # the files a glob in data.path matches


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

    ``error`` is the exception a bad file raises (a missing column is a ConfigError at its key). With
    ``split_key``, each chunk's split ids are hashes of that column's text instead of row numbers.
    """

    path: str
    delimiter: str
    features: list[str]
    target: str
    chunk_rows: int = 65536
    error: type = DataError
    indices: list[int] = field(default_factory=list)
    target_index: int = 0
    split_key: str | None = None
    key_index: int = 0

    def open(self):
        """Open the file, check the columns, and return the handle positioned after the header."""
        handle, _, header = open_csv(self.path, self.delimiter, self.error)
        try:
            require_columns(header, [self.target], self.path, keys={self.target: "data.target"})
            if self.split_key is not None:
                require_columns(header, [self.split_key], self.path, keys={self.split_key: "data.split_key"})
        except ConfigError:
            handle.close()
            raise
        try:
            self.indices = column_indices(header, self.features, self.path, ConfigError)
        except ConfigError as exc:
            handle.close()
            raise ConfigError(exc.detail, path="data.features") from None
        self.target_index = header.index(self.target)
        self.key_index = header.index(self.split_key) if self.split_key is not None else 0
        return handle

    def chunks(self, digest=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (split ids, features, target texts) per chunk; feed the raw text to ``digest`` if given.

        The split ids are the row numbers (0 for the first data row), or with ``split_key`` hashes of its text.
        """
        handle = self.open()
        row = 0
        with handle:
            for line, lines in iter_line_chunks(handle, self.path, self.chunk_rows, self.error):
                if digest is not None:
                    digest.update("".join(lines).encode())
                x = parse_numeric_lines(lines, self.indices, self.features, self.path, line, self.delimiter, self.error)
                y = self._texts(lines, line, self.target_index)
                if self.split_key is None:
                    ids = np.arange(row, row + len(x))
                else:
                    ids = text_hashes(self._texts(lines, line, self.key_index))
                yield ids, x, y
                row += len(x)

    def _texts(self, lines: list[str], first_line: int, index: int) -> np.ndarray:
        try:
            return np.char.strip(
                np.loadtxt(
                    lines, delimiter=self.delimiter, usecols=[index], dtype=str, quotechar='"', comments=None, ndmin=1
                )
            )
        except ValueError:
            rows, numbers = read_rows(csv.reader(lines, delimiter=self.delimiter), self.path, self.error)
            for row, number in zip(rows, numbers):
                if len(row) <= index:
                    raise self.error(
                        f"{self.path}:{first_line + number - 1}: expected at least {index + 1} fields, "
                        f"received {len(row)}"
                    ) from None
            return np.array([row[index].strip() for row in rows], dtype=str)

    # What the streamed splits ask of any table reader (see dltool.data.streaming.TableReader).
    def label_values(self, y: np.ndarray) -> set:
        """The distinct class labels of a chunk's targets."""
        return set(y.tolist())

    def class_indices(self, y: np.ndarray, class_names: list[str]) -> np.ndarray:
        """A chunk's targets as indices of ``class_names``."""
        return labels_to_indices(y, class_names, self.path)

    def regression_values(self, y: np.ndarray) -> np.ndarray:
        """A chunk's targets as float32 of shape (n, 1); a non-numeric one is a DataError naming it."""
        return regression_targets(y, self.path)


def csv_header(path, delimiter: str) -> list[str]:
    """The column names of a CSV (the file is closed again)."""
    handle, _, header = open_csv(path, delimiter)
    handle.close()
    return header


def table_reader(config, chunk_rows: int | None = None):
    """(reader, feature columns) of a ``csv`` config: one file's CsvReader, or a TableFiles over several files
    (a glob or a list, each file with the same columns). ``chunk_rows`` (default: a chunk of about 16 MB)."""
    from .table_files import TableFiles

    files = expand_paths(config.path, suffixes=CSV_SUFFIXES, expected="a CSV file")
    headers = [csv_header(file.path, config.delimiter) for file in files]
    require_same_columns(files, headers)
    features = feature_columns(config, headers[0])
    rows = chunk_rows or max(1, min(65536, CHUNK_BYTES // (8 * max(1, len(features)))))
    readers = [
        CsvReader(
            path=str(file.path),
            delimiter=config.delimiter,
            features=read_columns(config, features),
            target=config.target,
            chunk_rows=rows,
            split_key=getattr(config, "split_key", None),
        )
        for file in files
    ]
    if not several_files(config.path):
        return readers[0], features
    return TableFiles(readers, files, describe_path(config.path), keyed=config.split_key is not None), features


def load(config, **_) -> RawData:
    """Load a CSV (or several): numeric feature columns as x, the target column as y (text, for class labels).

    Several files are concatenated in sorted order. With data.features null, a feature column that looks like a
    row id gets a warning (RawData.warnings). Files named by a glob or a list, or a data.split_key, give each
    row a split id (see :mod:`dltool.data.table_files`); one file without it is split at random, as always.
    """
    reader, features = table_reader(config)
    parts = list(reader.chunks())
    if not parts or not sum(len(x) for _, x, _ in parts):
        raise DataError(f"{describe_path(config.path)}: no data rows after the header")
    x, weights = split_weights(np.concatenate([x for _, x, _ in parts]), config.sample_weight is not None)
    y = np.concatenate([y for _, _, y in parts]).astype(object)
    hashed = hashes_file_names(config) or config.split_key is not None
    ids = np.concatenate([ids for ids, _, _ in parts]) if hashed else None
    warnings = [] if config.features else id_column_warnings(x, features)
    if weights is not None:
        check_weights(weights, describe_path(config.path), config.sample_weight)
    return RawData(x=x, y=y, feature_names=features, warnings=warnings, split_ids=ids, sample_weight=weights)
