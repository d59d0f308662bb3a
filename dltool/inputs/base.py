"""What every reader of model inputs shares: chunk sizes, preprocessing of raw samples, labelled files.

A reader (:class:`ModelInputs`, one subclass per kind of model) reads files in
bounded chunks: unlabelled inputs for ``predict``, inputs with targets for
``evaluate --data``; both come out ready for the model.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..data import images, parquet_source
from ..data.csv_source import column_problem, open_csv
from ..data.labels import labels_to_indices, regression_targets
from ..data.numpy_files import arrays_from_npz
from ..data.preprocessing import Preprocessing
from ..errors import DltoolError, InputError

IMAGE_SUFFIXES = frozenset(images.IMAGE_SUFFIXES)
ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
TABLE_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset(
    parquet_source.PARQUET_SUFFIXES
)  # tabular models read these too (pyarrow: the parquet extra)
TEXT_SUFFIXES = frozenset({".txt"})
CHUNK_BYTES = 16 * 2**20  # float32 input held at once per chunk
TABLE_CHUNK = 65536  # flat samples per chunk, at most
TEXT_CHUNK = 1024  # texts per model call: each becomes sequence_length embeddings inside the model
SPATIAL_CHUNK = 512  # images or windows per model call

Rows = range | list[int]  # row numbers of a chunk within its file
Segment = tuple[str, Rows]  # (input file, row numbers) of consecutive samples of a batch


def read_header(path: Path) -> list[str]:
    """A CSV's column names (the file is closed again), or a Parquet file's, from its footer."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return parquet_source.parquet_columns(path, InputError)
    handle, _, header = open_csv(path, error=InputError)
    handle.close()
    return header


def unexpected_hint(use: str, columns: list[str]) -> str:
    """How to get past CSV columns a model does not take, for the command ``use`` (predict, export or serve)."""
    them = "it" if len(columns) == 1 else "them"
    if use == "serve":
        verb = "is not a feature" if len(columns) == 1 else "are not features"
        return f"{', '.join(columns)} {verb} of this model; leave {them} out"
    flags = " ".join(f"--keep {shlex.quote(name)}" for name in columns)
    purpose = f"copy {them} into each output row" if use == "predict" else f"ignore {them}"
    return f"give {flags} to {purpose}, or remove {them} from the file"


def csv_column_problem(
    state: Preprocessing,
    path,
    header: list[str],
    *,
    use: str = "predict",
    keep: tuple[str, ...] = (),
    labelled: bool = False,
    holder: str = "the file",
) -> str | None:
    """Whether CSV columns (or a served JSON row's keys) fit a run's model: the one rule for predict, export
    --data, evaluate --data and serve's :label. None when they do, else the message.

    The model's feature columns must be there, and with ``labelled`` (evaluate) its target too. Columns
    the run excluded (data.exclude), its target and the ``keep`` columns are ignored; any other column is
    refused, with a hint for ``use`` (predict, export, serve), except when ``labelled``: evaluate reads
    the columns it needs and ignores the rest.
    """
    targets = list(state.target_names or ())
    return column_problem(
        path,
        header,
        list(state.feature_names or ()),
        targets=targets[:1] if labelled else (),
        allowed=None if labelled else [*targets, *state.extra.get("exclude", ()), *keep],
        holder=holder,
        hint=lambda columns: unexpected_hint(use, columns),
    )


def preprocess(state: Preprocessing, raw: np.ndarray, name_row: Callable[[int], tuple[str, int]]) -> np.ndarray:
    """Raw samples as model inputs (the run's preprocessing); a sample with NaN or infinity is refused by file and row.

    ``name_row(i)`` gives the file and row number of sample ``i`` of ``raw``.
    """
    x = state.transform(raw)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        name, row = name_row(int(np.argwhere((~np.isfinite(x.reshape(len(x), -1))).any(axis=1))[0][0]))
        raise InputError(f"{name}: inputs contain NaN or infinite values (row {row})")
    return x


class LabelledFile:
    """A file of inputs with targets for ``evaluate --data``, already checked; read in chunks, as often as needed."""

    def __init__(
        self,
        path: Path,
        state: Preprocessing,
        read: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
        empty: str = "holds no samples",
        encoded: bool = False,
    ):
        """``read`` yields (raw inputs, targets): raw labels or values, or with ``encoded`` (default False) the
        targets the model takes already (class indices, float32 (n, k))."""
        self.path, self.state, self._read, self._empty, self._encoded = path, state, read, empty, encoded
        self.failure: DltoolError | None = None  # what stopped a tf.data pass (see evaluate_inputs)
        self._sample: tuple[np.ndarray, np.ndarray] | None = None  # the first (x, y), for tf.data's signature
        self.chunk_sizes: list[int] | None = None  # samples per chunk, known once the file has been read through

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (model inputs, targets): targets as class indices (classifiers) or float32 (n, k)."""
        where, state, sizes = str(self.path), self.state, []
        for raw_x, raw_y in self._read():
            state.check_shape(np.asarray(raw_x), where)
            x = preprocess(state, raw_x, lambda i, first=sum(sizes): (where, first + i))
            if self._encoded:
                y = raw_y
            elif state.task == "classification":
                y = labels_to_indices(raw_y, state.class_names, where)
            else:
                y = regression_targets(raw_y, where)
            if self._sample is None:
                self._sample = (x[:1], y[:1])
            sizes.append(len(x))
            yield x, y
        if not sum(sizes):
            raise InputError(f"{where}: {self._empty}")
        self.chunk_sizes = sizes

    def evaluate_inputs(self, targets: Callable[[np.ndarray], np.ndarray], batch_size: int) -> dict:
        """Keyword arguments for ``model.evaluate``: a tf.data pipeline over the chunks, in batches of ``batch_size``.

        Keras then accumulates loss and compiled metrics itself, which is exact
        for every metric (AUC and precision too, which are not means).
        """
        import tensorflow as tf

        if self._sample is None:
            next(iter(self.chunks()))
        sample_x, sample_y = self._sample
        signature = tuple(
            tf.TensorSpec((None, *a.shape[1:]), tf.string if a.dtype.kind in "OUS" else a.dtype)
            for a in (sample_x, targets(sample_y))
        )

        def batches():
            # An error raised here would reach the caller as a TensorFlow error without its message:
            # end the data instead and keep the error for the caller (evaluate raises it afterwards).
            try:
                for x, y in self.chunks():
                    y = targets(y)
                    for start in range(0, len(x), batch_size):
                        yield x[start : start + batch_size], y[start : start + batch_size]
            except DltoolError as exc:
                self.failure = exc

        data = tf.data.Dataset.from_generator(batches, output_signature=signature)
        if self.chunk_sizes is not None:  # a known length spares Keras' "ran out of data" warning
            steps = sum(-(-size // batch_size) for size in self.chunk_sizes)
            data = data.apply(tf.data.experimental.assert_cardinality(steps))
        return {"x": data.prefetch(2)}


class ModelInputs:
    """The files a model of one kind reads, and how; :func:`inputs_for` picks the subclass for a run."""

    keep: tuple[str, ...] = ()  # CSV columns predict copies into its output (--keep): allowed beside the inputs
    use: str = "predict"  # the command reading (predict, export, serve): how a refused column's hint reads

    def __init__(self, state: Preprocessing):
        self.state = state

    # ------------------------------------------------------------------ what the model takes
    def suffixes(self, in_folder: bool = False) -> frozenset[str]:
        """The file types predict reads for this model (in a folder: only its natural kind, e.g. images)."""
        return ARRAY_SUFFIXES | TABLE_SUFFIXES

    def describe(self) -> str:
        """What the model takes, in words, for messages."""
        return f"samples of shape {list(self.state.input_shape)}"

    @property
    def chunk_rows(self) -> int:
        """Samples per chunk read and per model call: about CHUNK_BYTES of float32 input."""
        shape = self.state.input_shape
        # Images and windows go through conv/recurrent layers whose activations dwarf the input: smaller calls.
        most = TABLE_CHUNK if len(shape) <= 1 else SPATIAL_CHUNK
        return max(1, min(most, CHUNK_BYTES // (4 * max(1, int(np.prod(shape))))))

    def csv_columns(self, path: Path, header: list[str]) -> list[str]:
        """The columns read from a CSV with ``header``; a CSV that does not fit the model is refused."""
        raise InputError(f"{path}: this model takes {self.describe()}, not a CSV")

    # ------------------------------------------------------------------ predict
    def check(self, path: Path) -> None:
        """Refuse, before the model loads, a file whose columns do not fit the model (a CSV, a Parquet file)."""
        if path.suffix.lower() in TABLE_SUFFIXES | PARQUET_SUFFIXES:
            self.csv_columns(path, read_header(path))

    def read(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        """Yield (row numbers, raw samples) chunks of one input file."""
        yield from self._read_arrays(path)

    def batches(self, files: list[Path]) -> Iterator[tuple[list[Segment], np.ndarray]]:
        """Yield (segments, model inputs) over ``files``, one model call each, preprocessed and checked."""
        for segments, raw in self._raw_batches(files):
            yield (
                segments,
                preprocess(
                    self.state, raw, lambda i, segments=segments: [(n, r) for n, rows in segments for r in rows][i]
                ),
            )

    def _raw_batches(self, files: list[Path]) -> Iterator[tuple[list[Segment], np.ndarray]]:
        for path in files:
            for rows, raw in self.read(path):
                yield [(str(path), rows)], raw

    def _read_arrays(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        """An .npy (memory-mapped) or .npz file's samples in chunks; pickled objects are refused."""
        state, chunk = self.state, self.chunk_rows
        try:
            loaded = np.load(path, mmap_mode="r" if path.suffix.lower() == ".npy" else None, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001  (whatever NumPy raises, the message names the file)
            raise InputError(f"{path}: cannot read as a NumPy file ({type(exc).__name__}: {exc})") from None
        if not isinstance(loaded, np.ndarray):
            with loaded:
                keys = loaded.files
                key = next((k for k in ("x", "x_test", "x_train") if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise InputError(
                        f"{path}: expected an array named x (or a single array), received {', '.join(keys)}"
                    )
                try:
                    array = loaded[key]
                except ValueError as exc:  # object arrays need pickle, which is refused
                    raise InputError(
                        f"{path}: array '{key}' cannot be read without unpickling ({exc}); expected a numeric array"
                    ) from None
        else:
            array = loaded
        if list(array.shape) == list(state.input_shape):
            array = array[None]  # one sample without a batch axis
        state.check_shape(array, str(path))
        if len(array) == 0:
            raise InputError(f"{path}: the array holds no samples")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise InputError(f"{path}: expected numbers, received an array of dtype {array.dtype}")
        for start in range(0, len(array), chunk):
            part = np.asarray(array[start : start + chunk])
            yield range(start, start + len(part)), part

    # ------------------------------------------------------------------ evaluate --data
    def labelled(self, path: Path) -> LabelledFile:
        """A file of inputs with targets (.npz, a CSV or a Parquet file), checked now (before the model loads) and
        read later."""
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return self._labelled_npz(path)
        if suffix == ".csv":
            return self._labelled_csv(path)
        if suffix in PARQUET_SUFFIXES:
            return self._labelled_parquet(path)
        raise InputError(
            f"{path}: expected an .npz, .csv or .parquet file with inputs and targets, received '{path.suffix}'"
        )

    def _labelled_csv(self, path: Path) -> LabelledFile:
        raise InputError(f"{path}: this run was not trained on a CSV; give an .npz with x and y")

    def _labelled_parquet(self, path: Path) -> LabelledFile:
        raise InputError(f"{path}: this run was not trained on a table; give an .npz with x and y")

    def _labelled_npz(self, path: Path) -> LabelledFile:
        """x_test/y_test, else x/y, of an .npz (held in memory, as NumPy reads an .npz whole)."""
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001  (any unreadable file gets one message)
            raise InputError(f"{path}: cannot read as .npz ({exc})") from None
        with archive:
            raw = arrays_from_npz(archive, path)
        x, y = (raw.x_test, raw.y_test) if raw.x_test is not None else (raw.x, raw.y)
        if len(x) != len(y):
            raise InputError(f"{path}: inputs and targets differ in length: {len(x)} inputs, {len(y)} targets")
        return self._in_memory(path, x, y)

    def _in_memory(self, path: Path, x: np.ndarray, y: np.ndarray, empty: str = "holds no samples") -> LabelledFile:
        chunk = self.chunk_rows
        parts = lambda: ((x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(x), chunk))  # noqa: E731
        return LabelledFile(path, self.state, parts, empty)
