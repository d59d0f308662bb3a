"""The ``parquet`` source, and the Parquet reading that ``predict`` and ``evaluate --data`` share with it.

Parquet files are read record batch by record batch (``pyarrow.parquet.ParquetFile.iter_batches``) with only the
columns needed, so memory stays bounded whatever the file size; columns are typed, so numbers are never parsed from
text. Feature columns must be numeric (integers, floats, booleans, decimals) without nulls; the target may hold
numbers or strings. pyarrow is an optional package (the ``parquet`` extra), imported only when a Parquet file is
read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .labels import labels_to_indices, regression_targets
from .sources import RawData
from .table_files import (
    TableFiles,
    check_weights,
    describe_path,
    expand_paths,
    feature_columns,
    hash_bytes,
    id_column_warnings,
    import_pyarrow,
    preprocessing_kind,  # noqa: F401  (the registry names it for this source)
    read_columns,
    require_columns,
    require_same_columns,
    split_weights,
)

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CHUNK_BYTES = 16 * 2**20  # float32 features per record batch of a streamed table
# Peak resident bytes per value of a Parquet table loaded into memory: 10M rows x 21 columns (210M values)
# loaded at 3.9 GB (benchmarks/RESULTS-input.md), about 19 bytes a value (float32 features, their splits, TF's copy).
LOADED_BYTES_PER_VALUE = 19


def open_parquet(path, error=DataError):
    """A ``pyarrow.parquet.ParquetFile``; a missing or unreadable file is ``error`` naming it."""
    pa = import_pyarrow()
    try:
        return pa.parquet.ParquetFile(str(path))
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise error(f"{path}: cannot read as Parquet ({exc})") from None


def loaded_bytes(path) -> int:
    """About the memory a Parquet file takes loaded (its features as float32, copied into splits and batches):
    rows x columns x LOADED_BYTES_PER_VALUE, from its footer. Reads nothing else."""
    metadata = open_parquet(path).metadata
    return metadata.num_rows * metadata.num_columns * LOADED_BYTES_PER_VALUE


def parquet_columns(path, error=DataError) -> list[str]:
    """A Parquet file's column names, from its footer."""
    return list(open_parquet(path, error).schema_arrow.names)


def _kind(arrow_type) -> str:
    """'number', 'text' or 'other' for a column's Arrow type."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_decimal(arrow_type)
    ):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return "other"


def _first_null(column) -> int:
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])


def _values(column) -> np.ndarray:
    """A numeric Arrow column as NumPy (zero-copy where Arrow allows); a dictionary-encoded one decoded first."""
    if hasattr(column, "dictionary_decode"):
        column = column.dictionary_decode()
    return column.to_numpy(zero_copy_only=False)


def feature_matrix(batch, names: list[str], path, first_row: int, error=DataError) -> np.ndarray:
    """The ``names`` columns of a record batch as a float32 (rows, columns) matrix; a null, NaN or infinite
    value is ``error`` naming the file, the row (0 = first data row) and the column."""
    x = np.empty((batch.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = batch.column(name)
        if column.null_count:
            raise error(
                f"{path}: column '{name}': expected a number, received an empty value (row {first_row + _first_null(column)})"
            )
        x[:, j] = _values(column)
    if not np.isfinite(x).all():
        row, col = map(int, np.argwhere(~np.isfinite(x))[0])
        raise error(
            f"{path}: column '{names[col]}': expected a finite number, received {x[row, col]} (row {first_row + row})"
        )
    return x


def _check_numeric(schema, names: list[str], path, error=DataError) -> None:
    for name in names:
        if _kind(schema.field(name).type) != "number":
            raise error(
                f"{path}: column '{name}' holds {schema.field(name).type} values; expected numbers (integers, "
                "floats or booleans) in every feature column"
            )


class LabelBook:
    """String class labels numbered in the order first met: shared by the readers of one table, so a chunk's
    targets travel as int32 codes (no Python string per row) and only new labels are looked up."""

    def __init__(self):
        self.names: list[str] = []
        self._codes: dict[str, int] = {}
        self._index_of: tuple[int, list[str], np.ndarray] | None = None  # (len(names), class_names, code -> index)

    def encode(self, column) -> np.ndarray:
        """A string (or dictionary) Arrow column as codes into ``names``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = column if isinstance(column, pa.DictionaryArray) else pc.dictionary_encode(column)
        mapping = np.array(
            [self._codes.setdefault(value, len(self._codes)) for value in encoded.dictionary.to_pylist()],
            dtype=np.int32,
        )
        self.names.extend(list(self._codes)[len(self.names) :])
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return mapping[indices] if len(mapping) else indices.astype(np.int32)

    def class_indices(self, codes: np.ndarray, class_names: list[str], where: str) -> np.ndarray:
        """Codes as indices of ``class_names``; an unknown label is the error labels_to_indices gives."""
        cached = self._index_of
        if cached is None or cached[0] != len(self.names) or cached[1] is not class_names:
            lookup = {name: i for i, name in enumerate(class_names)}
            cached = (len(self.names), class_names, np.array([lookup.get(n, -1) for n in self.names], np.int32))
            self._index_of = cached
        indices = cached[2][codes] if len(cached[2]) else codes.astype(np.int32)
        if (indices < 0).any():
            unknown = np.unique(codes[indices < 0])
            labels_to_indices(np.array([self.names[c] for c in unknown], dtype=object), class_names, where)
        return indices


@dataclass
class ParquetReader:
    """Reads one Parquet file record batch by record batch: the feature columns as float32, the target as the file
    types it (numbers; strings as codes of a LabelBook shared with the table's other files).

    ``error`` is the exception a bad file raises (a missing column is a ConfigError at its key). With
    ``split_key``, each batch's split ids are hashes of that column's text instead of row numbers.
    """

    path: str
    features: list[str]
    target: str | None
    chunk_rows: int = 65536
    split_key: str | None = None
    error: type = DataError
    labels: LabelBook = field(default_factory=LabelBook)
    target_kind: str = "number"

    def open(self):
        """Open the file and check its columns; returns the ParquetFile."""
        parquet = open_parquet(self.path, self.error)
        schema = parquet.schema_arrow
        names = list(schema.names)
        keys = {name: "data.features" for name in self.features}
        if self.target is not None:
            keys[self.target] = "data.target"
        if self.split_key is not None:
            keys[self.split_key] = "data.split_key"
        # Training names the config key of a missing column; predict and evaluate name the file only.
        require_columns(names, list(keys), self.path, self.error, keys=keys if self.error is DataError else None)
        _check_numeric(schema, self.features, self.path, self.error)
        if self.target is not None:
            self.target_kind = _kind(schema.field(self.target).type)
            if self.target_kind == "other":
                raise self.error(
                    f"{self.path}: target column '{self.target}' holds {schema.field(self.target).type} values; "
                    "expected numbers or strings"
                )
        return parquet

    def columns(self) -> list[str]:
        """The columns read: features, target, split key, each once."""
        return list(
            dict.fromkeys(
                [*self.features, *([self.target] if self.target else []), *([self.split_key] if self.split_key else [])]
            )
        )

    def chunks(self, digest=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (split ids, float32 features, targets) per record batch; the decoded values go to ``digest``.

        The split ids are the row numbers (0 for the first row), or with ``split_key`` hashes of its text.
        Targets are numbers as the file types them, or for a string column codes of ``labels``.
        """
        parquet = self.open()
        row = 0
        for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=self.columns(), use_threads=True):
            x = feature_matrix(batch, self.features, self.path, row, self.error)
            y = self._targets(batch, row) if self.target else np.empty(0)
            ids = np.arange(row, row + len(x)) if self.split_key is None else self._key_hashes(batch, row)
            if digest is not None:
                digest.update(x.data)
                digest.update(np.ascontiguousarray(y).data)
                if self.split_key is not None:
                    digest.update(ids.data)
            yield ids, x, y
            row += len(x)

    def _targets(self, batch, first_row: int) -> np.ndarray:
        column = batch.column(self.target)
        if column.null_count:
            raise self.error(
                f"{self.path}: target column '{self.target}' has an empty value (row {first_row + _first_null(column)}); "
                "every row needs a target"
            )
        if self.target_kind == "text":
            return self.labels.encode(column)
        return _values(column)

    def _key_hashes(self, batch, first_row: int) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        column = batch.column(self.split_key)
        if column.null_count:
            raise self.error(
                f"{self.path}: split key column '{self.split_key}' has an empty value "
                f"(row {first_row + _first_null(column)}); every row needs a key"
            )
        column = pc.cast(column, pa.large_string())
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset : column.offset + len(column) + 1]
        data = column.buffers()[2]
        return hash_bytes(np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8), offsets)

    # What the streamed splits ask of any table reader (see dltool.data.streaming.TableReader).
    def label_values(self, y: np.ndarray) -> set:
        """The distinct class labels of a batch's targets (strings, or numbers)."""
        if self.target_kind == "text":
            return {self.labels.names[c] for c in np.unique(y)}
        return set(np.unique(y).tolist())

    def class_indices(self, y: np.ndarray, class_names: list[str]) -> np.ndarray:
        """A batch's targets as indices of ``class_names``, without a Python object per row."""
        if self.target_kind == "text":
            return self.labels.class_indices(y, class_names, self.path)
        return _numeric_class_indices(y, class_names, self.path)

    def regression_values(self, y: np.ndarray) -> np.ndarray:
        """A batch's targets as float32 of shape (n, 1); a non-numeric one is a DataError naming it."""
        return regression_targets(self.plain_targets(y), self.path)

    def plain_targets(self, y: np.ndarray) -> np.ndarray:
        """A batch's targets as values: numbers, or the label strings (an object array) of a string column."""
        if self.target_kind == "text":
            return np.array(self.labels.names, dtype=object)[y] if len(y) else np.empty(0, dtype=object)
        return y


def iter_parquet_chunks(
    path, feature_names: list[str], chunk_rows: int, error=DataError
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row number, float32 matrix of the feature columns), a record batch of ``chunk_rows`` at a time."""
    reader = ParquetReader(path=str(path), features=feature_names, target=None, chunk_rows=chunk_rows, error=error)
    for rows, x, _ in reader.chunks():
        if len(x):
            yield int(rows[0]), x


def iter_parquet_texts(path, columns: list[str], chunk_rows: int = 65536) -> Iterator[list[list[str]]]:
    """Yield, a record batch at a time, each row's values of ``columns`` as text ('' for an empty value)."""
    parquet = open_parquet(path)
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        values = [batch.column(name).to_pylist() for name in columns]
        yield [["" if value is None else str(value) for value in row] for row in zip(*values)]


def _numeric_class_indices(y: np.ndarray, class_names: list[str], where: str) -> np.ndarray:
    try:
        values = np.array([float(name) for name in class_names])
    except ValueError:
        return labels_to_indices(y, class_names, where)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    position = np.minimum(np.searchsorted(ordered, y), len(ordered) - 1)
    if len(ordered) and np.array_equal(ordered[position], y):
        return order[position].astype(np.int32)
    return labels_to_indices(y, class_names, where)  # the index fallback and the message for an unknown label


def table_reader(config, chunk_rows: int | None = None):
    """(reader, feature columns) of a ``parquet`` config: a TableFiles over its files (one or several, every file
    with the same columns). ``chunk_rows`` (default: a batch of about 16 MB of float32 features)."""
    files = expand_paths(config.path, suffixes=PARQUET_SUFFIXES, expected="a Parquet file")
    schemas = [open_parquet(file.path).schema_arrow for file in files]
    require_same_columns(files, [list(schema.names) for schema in schemas])
    features = feature_columns(config, list(schemas[0].names))
    require_columns(
        list(schemas[0].names), [config.target], describe_path(config.path), keys={config.target: "data.target"}
    )
    weight = config.sample_weight
    for file, schema in zip(files, schemas):
        if weight is not None and _kind(schema.field(weight).type) != "number":
            raise DataError(
                f"{file.path}: column '{weight}' (data.sample_weight) holds {schema.field(weight).type} values; "
                "expected numbers (a weight >= 0 per row)"
            )
    kinds = [_kind(schema.field(config.target).type) for schema in schemas]
    for file, kind in zip(files[1:], kinds[1:]):
        if kind != kinds[0]:
            raise DataError(
                f"{file.path}: target column '{config.target}' holds {kind} values, but in {files[0].path} "
                f"{kinds[0]} values; every file of data.path must type it alike"
            )
    rows = chunk_rows or max(1, min(65536, CHUNK_BYTES // (4 * max(1, len(features)))))
    book = LabelBook()
    readers = [
        ParquetReader(
            path=str(file.path),
            features=read_columns(config, features),
            target=config.target,
            chunk_rows=rows,
            split_key=config.split_key,
            labels=book,
        )
        for file in files
    ]
    # One file too: its rows' split ids hash its name, so giving it later as a glob with others keeps its splits.
    return TableFiles(readers, files, describe_path(config.path), keyed=config.split_key is not None), features


def load(config, **_) -> RawData:
    """Load Parquet file(s) into memory: numeric feature columns as x (float32), the target column as y.

    Read by the same record batches as a streamed run (so the features, labels and splits are the same); every
    row has a split id (see :mod:`dltool.data.table_files`), so the splits are those of a streamed read too.
    """
    reader, features = table_reader(config, chunk_rows=2**20)
    parts = list(reader.chunks())
    if not parts or not sum(len(x) for _, x, _ in parts):
        raise DataError(f"{describe_path(config.path)}: no data rows")
    x, weights = split_weights(np.concatenate([x for _, x, _ in parts]), config.sample_weight is not None)
    y = np.concatenate([reader.readers[0].plain_targets(y) for _, _, y in parts])
    ids = np.concatenate([ids for ids, _, _ in parts])
    warnings = [] if config.features else id_column_warnings(x, features)
    if weights is not None:
        check_weights(weights, describe_path(config.path), config.sample_weight)
    return RawData(x=x, y=y, feature_names=features, warnings=warnings, split_ids=ids, sample_weight=weights)
