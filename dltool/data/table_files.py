"""Tables in one file or several: which files ``data.path`` names, their columns, and each row's split.

``data.path`` of a ``csv`` or ``parquet`` source is a file, a glob (``data/part-*.parquet``) or a list of
files and globs. Each row's split is a hash of the seed and a 64-bit *split id*: with ``data.split_key``, a
hash of that column's text (stable under any reordering of rows and files); else a hash of its file's name
and its row number within that file (adding a file moves no existing row to another split), except for a CSV
given as one file path, whose split id is its row number alone (as dltool always did, so earlier runs resume
identically).
"""

from __future__ import annotations

import glob as globbing
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DltoolError, did_you_mean

TRAIN, VALIDATION, TEST = 0, 1, 2
_MASK64 = np.uint64(2**64 - 1)
_GLOB_CHARS = frozenset("*?[")
# One random odd 64-bit weight per byte position: a string's hash is the wrapped sum of byte x weight (see
# text_hashes); drawn once from a fixed seed, so every version of dltool hashes a key the same way.
_BYTE_WEIGHTS = np.random.default_rng(20241122).integers(0, 2**63, size=4096, dtype=np.uint64) * np.uint64(2) + 1


@dataclass(frozen=True)
class TableFile:
    """One file of a table: where it is, and the name its rows' split ids are hashed with.

    ``name`` is the path below the fixed (glob-free) folder of the pattern that matched it, so it stays the
    same when the data folder moves or other files are added.
    """

    path: Path
    name: str


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a glob rather than a file name."""
    return any(char in _GLOB_CHARS for char in text)


def several_files(path_value) -> bool:
    """Whether ``data.path`` names its files by a glob or a list (split ids then hash the file name too)."""
    return not isinstance(path_value, str) or is_pattern(path_value)


def hashes_file_names(config) -> bool:
    """Whether a table config's split ids hash each row's file name and row number: always for Parquet, and for a
    CSV named by a glob or a list (a CSV given as one path keeps the row number alone, as in earlier runs)."""
    return getattr(config, "split_key", None) is None and (config.source == "parquet" or several_files(config.path))


def describe_path(path_value) -> str:
    """``data.path`` in messages: the file or pattern, or the list joined."""
    return path_value if isinstance(path_value, str) else ", ".join(path_value)


def _fixed_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if is_pattern(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def expand_paths(path_value, *, suffixes: tuple[str, ...], expected: str, key: str = "data.path") -> list[TableFile]:
    """The files ``data.path`` names: each file as given, each glob's matches; sorted, each file once.

    A glob matching nothing, a missing file or a folder is a ConfigError at ``key`` (``data.path[1]`` for the
    second entry of a list). With a glob, only files ending in one of ``suffixes`` count.
    """
    entries = [path_value] if isinstance(path_value, str) else list(path_value)
    if not entries:
        raise ConfigError(f"expected {expected}, a glob or a list of them, received an empty list", path=key)
    found: dict[Path, TableFile] = {}
    for index, entry in enumerate(entries):
        where = key if isinstance(path_value, str) else f"{key}[{index}]"
        text = str(Path(entry).expanduser())
        if is_pattern(text):
            root = _fixed_root(text)
            matches = [
                Path(m)
                for m in globbing.glob(text, recursive=True)
                if m.lower().endswith(suffixes) and Path(m).is_file()
            ]
            if not matches:
                raise ConfigError(
                    f"no {' or '.join(suffixes)} file matches {entry}; expected {expected} "
                    "(check the folder and the pattern)",
                    path=where,
                )
            named = [TableFile(m, m.relative_to(root).as_posix()) for m in matches]
        else:
            file = Path(text)
            if file.is_dir():
                raise ConfigError(
                    f"{file} is a folder; expected {expected} (give a file, or a glob such as {file}/*{suffixes[0]})",
                    path=where,
                )
            if not file.is_file():
                raise ConfigError(f"data file not found: {file}", path=where)
            named = [TableFile(file, file.name)]
        for table_file in named:
            found.setdefault(table_file.path.resolve(), table_file)
    return sorted(found.values(), key=lambda f: str(f.path))


def require_same_columns(files: list[TableFile], columns: list[list[str]], what: str = "columns") -> None:
    """Every file of a table must have the first file's columns, in any order; else a DataError naming both."""
    first = columns[0]
    for file, names in zip(files[1:], columns[1:]):
        if set(names) != set(first):
            missing = [n for n in first if n not in names]
            extra = [n for n in names if n not in first]
            detail = "; ".join(
                part
                for part in (
                    f"it lacks {', '.join(missing)}" if missing else "",
                    f"it has {', '.join(extra)} besides" if extra else "",
                )
                if part
            )
            raise DataError(
                f"{file.path}: expected the {what} of {files[0].path} ({', '.join(first)}), received "
                f"{', '.join(names)} ({detail}); every file of data.path must have the same {what}"
            )


def require_columns(header: list[str], names: list[str], path, error=DataError, keys: dict | None = None) -> None:
    """Raise for the first of ``names`` missing from ``header``, with a did-you-mean.

    With ``keys`` ({column: config key path}) the error is a ConfigError at that key.
    """
    for name in names:
        if name not in header:
            message = f"no column '{name}' in {path}{did_you_mean(name, header)}; the columns are {', '.join(header)}"
            raise ConfigError(message, path=keys[name]) if keys else error(message)


def feature_columns(config, header: list[str]) -> list[str]:
    """The input columns of a table config for a file with ``header``: data.features, or (null) every column
    but the target, data.exclude and data.split_key. An excluded column the file lacks is a ConfigError at its
    key."""
    where = describe_path(config.path)
    require_columns(
        header, config.exclude, where, keys={name: f"data.exclude[{i}]" for i, name in enumerate(config.exclude)}
    )
    split_key = getattr(config, "split_key", None)
    if split_key is not None:
        require_columns(header, [split_key], where, keys={split_key: "data.split_key"})
    weight = getattr(config, "sample_weight", None)
    if weight is not None:
        require_columns(header, [weight], where, keys={weight: "data.sample_weight"})
    features = config.features or [
        h for h in header if h != config.target and h not in config.exclude and h != split_key and h != weight
    ]
    if config.target in features:
        raise ConfigError(f"the target column '{config.target}' is also listed as a feature", path="data.features")
    return features


def read_columns(config, features: list[str]) -> list[str]:
    """The numeric columns a table's readers parse: the features, then data.sample_weight (if any) last, where
    :func:`split_weights` takes it off again."""
    weight = getattr(config, "sample_weight", None)
    return [*features, weight] if weight is not None else list(features)


def split_weights(x: np.ndarray, weighted: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, weights) of a chunk read with :func:`read_columns`: the weights are its last column (float32)."""
    if not weighted:
        return x, None
    return x[:, :-1], x[:, -1].astype(np.float32)


def check_weights(weights: np.ndarray, path, column: str, first_row: int = 0) -> None:
    """Refuse a negative sample weight, naming the file, the column and the row (0 = the first data row); NaN and
    infinite ones the readers refuse already, as in every numeric column."""
    negative = np.flatnonzero(weights < 0)
    if len(negative):
        row = int(negative[0])
        raise DataError(
            f"{path}: column '{column}' (data.sample_weight): expected weights >= 0, received {weights[row]:g} "
            f"(row {first_row + row})"
        )


def check_weighted_training(weights_sum: float, path, column: str) -> None:
    """Refuse training rows that all weigh 0: the loss would be 0 and nothing learned."""
    if weights_sum <= 0:
        raise DataError(
            f"{path}: column '{column}' (data.sample_weight): every training row weighs 0; expected at least one "
            "weight > 0"
        )


def preprocessing_kind(config) -> dict:
    """What predict needs to read a table run's files: the columns ignored on input ({}: none): data.exclude,
    data.split_key unless it is a feature, and data.sample_weight."""
    ignored = list(config.exclude)
    split_key = getattr(config, "split_key", None)
    if split_key is not None and split_key not in (config.features or []) and split_key not in ignored:
        ignored.append(split_key)
    weight = getattr(config, "sample_weight", None)
    if weight is not None:  # a training device only: predict and evaluate ignore it
        ignored.append(weight)
    return {"extra": {"exclude": ignored}} if ignored else {}


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


# --------------------------------------------------------------------------- split ids and split codes
def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_codes(rows: np.ndarray, seed: int, test: float, validation: float | None) -> np.ndarray:
    """TRAIN, VALIDATION or TEST for each split id (a row number, ...): a splitmix64 hash of (seed, id), so any
    pass agrees."""
    with np.errstate(over="ignore"):
        z = (rows.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    z = _mix(z)
    u = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    codes = np.full(len(rows), TRAIN, dtype=np.int8)
    codes[u < test] = TEST
    if validation:
        codes[(u >= test) & (u < test + validation * (1 - test))] = VALIDATION
    return codes


def _weights(width: int) -> np.ndarray:
    if width <= len(_BYTE_WEIGHTS):
        return _BYTE_WEIGHTS[:width]
    # Keys longer than 4096 bytes (unusual) continue the same fixed sequence.
    more = np.random.default_rng(width).integers(0, 2**63, size=width - len(_BYTE_WEIGHTS), dtype=np.uint64)
    return np.concatenate([_BYTE_WEIGHTS, more * np.uint64(2) + 1])


def hash_bytes(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hashes of the byte strings ``data[offsets[i]:offsets[i+1]]`` (Arrow's layout), vectorized."""
    data, offsets = np.asarray(data, dtype=np.uint8), np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    position = np.arange(offsets[-1] - offsets[0], dtype=np.int64) - np.repeat(offsets[:-1] - offsets[0], lengths)
    with np.errstate(over="ignore"):
        weighted = data[offsets[0] : offsets[-1]].astype(np.uint64) * _weights(int(lengths.max(initial=0)))[position]
        running = np.concatenate([np.zeros(1, np.uint64), np.cumsum(weighted, dtype=np.uint64)])
        sums = running[offsets[1:] - offsets[0]] - running[offsets[:-1] - offsets[0]]
        return _mix(sums + lengths.astype(np.uint64))


def text_hashes(texts: np.ndarray) -> np.ndarray:
    """64-bit hashes of the UTF-8 bytes of each text (a NumPy str array): equal to :func:`hash_bytes` of them."""
    encoded = np.char.encode(np.asarray(texts, dtype=str), "utf-8")
    width = encoded.dtype.itemsize
    if not len(encoded) or width == 0:
        return _mix(np.zeros(len(encoded), np.uint64))
    matrix = np.frombuffer(encoded.tobytes(), dtype=np.uint8).reshape(len(encoded), width)
    lengths = np.char.str_len(encoded).astype(np.uint64)  # NUL padding adds nothing to the weighted sum
    with np.errstate(over="ignore"):
        sums = (matrix.astype(np.uint64) * _weights(width)).sum(axis=1, dtype=np.uint64)
        return _mix(sums + lengths)


def file_salt(name: str) -> np.uint64:
    """A file's part of its rows' split ids: a 64-bit hash of its name."""
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))


def salted(rows: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Split ids of rows ``rows`` of the file whose name hashes to ``salt``."""
    with np.errstate(over="ignore"):
        return _mix(rows.astype(np.uint64) ^ salt)


class TableFiles:
    """Several files read one after another as one table: what a single file's reader is, over all of them.

    ``readers`` read one file each (a CsvReader, a ParquetReader), in the order of ``files``; each file's row
    numbers become split ids salted with its name (unless ``keyed``: a data.split_key's hashes are ids already).
    Class labels are asked of the first reader: readers of one table share how they encode labels.
    """

    def __init__(self, readers: list, files: list[TableFile], path: str, keyed: bool = False):
        self.readers, self.files, self.path, self.keyed = readers, files, path, keyed
        self.features = readers[0].features

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk of each file."""
        return self.readers[0].chunk_rows

    @chunk_rows.setter
    def chunk_rows(self, rows: int) -> None:
        for reader in self.readers:
            reader.chunk_rows = rows

    def chunks(self, digest=None):
        """Yield (split ids, features, targets) per chunk of each file in turn; the file names go to ``digest``."""
        for file, reader in zip(self.files, self.readers):
            if digest is not None:
                digest.update(file.name.encode() + b"\x00")
            salt = file_salt(file.name)
            for ids, x, y in reader.chunks(digest):
                yield (ids if self.keyed else salted(ids, salt)), x, y

    def label_values(self, y):
        """The distinct class labels of a chunk's targets."""
        return self.readers[0].label_values(y)

    def class_indices(self, y, class_names: list[str]):
        """A chunk's targets as indices of ``class_names``."""
        return self.readers[0].class_indices(y, class_names)

    def regression_values(self, y):
        """A chunk's targets as float32 of shape (n, 1)."""
        return self.readers[0].regression_values(y)


# --------------------------------------------------------------------------- pyarrow, an optional package
def import_pyarrow(purpose: str = "reading Parquet"):
    """``pyarrow`` (and its parquet module), or an exit-2 error naming the install command."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (loads the submodule onto the package)
    except ImportError:
        from ..installation import pip_install

        raise DltoolError(
            f"{purpose} needs pyarrow, which is not installed: {pip_install('parquet')} (or: pip install pyarrow)"
        ) from None
    return pyarrow
