"""Training data larger than memory: the base of streamed sources, and a table (CSV or Parquet) read batch by batch.

Streamed splits reach Keras as tf.data datasets (on every backend). For a table, the scan counts rows, assigns each
row to train / validation / test by a hash of (seed, split id) (its row number, its file's name and row, or its
data.split_key: see :mod:`dltool.data.table_files`), so every pass agrees without holding an index; collects the
class labels; and fits the standardization on training rows only. Each epoch then re-reads the files in chunks of
at most CHUNK_BYTES of features (a CSV's lines, a Parquet file's record batches), shuffling within a chunk.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from ..errors import ConfigError, DataError, DltoolError
from . import csv_source, parquet_source
from .base import TrainingData
from .labels import encode_labels
from .preprocessing import Preprocessing
from .table_files import (  # noqa: F401  (TRAIN, VALIDATION, TEST and split_codes: where streamed data was)
    TEST,
    TRAIN,
    VALIDATION,
    check_weighted_training,
    check_weights,
    expand_paths,
    hashes_file_names,
    id_column_warnings,
    preprocessing_kind,
    split_codes,
    split_weights,
)

STREAM_AUTO_BYTES = 2**30  # data.stream: auto streams tables whose files add up to more than 1 GiB
CHUNK_BYTES = csv_source.CHUNK_BYTES
_TABLE_READERS = {"csv": csv_source.table_reader, "parquet": parquet_source.table_reader}
_SUFFIXES = {"csv": csv_source.CSV_SUFFIXES, "parquet": parquet_source.PARQUET_SUFFIXES}


class TableReader(Protocol):
    """What a streamed table needs of its reader: a CsvReader, a ParquetReader, or a TableFiles over several files."""

    path: str  # the file or files, for messages
    features: list[str]
    chunk_rows: int

    def chunks(self, digest=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (split ids, features (n, k), targets as the reader holds them) per chunk, in file order."""

    def label_values(self, y: np.ndarray) -> set: ...

    def class_indices(self, y: np.ndarray, class_names: list[str]) -> np.ndarray: ...

    def regression_values(self, y: np.ndarray) -> np.ndarray: ...


def large_file(data_config) -> bool:
    """``data.stream: auto`` for a table: stream a CSV whose files add up to more than STREAM_AUTO_BYTES, and
    Parquet whose rows would take more than that in memory, counted from the files' footers (compressed
    columns say little about it: 939 MB of Parquet took 3.9 GB loaded; see parquet_source.loaded_bytes)."""
    try:
        files = expand_paths(data_config.path, suffixes=_SUFFIXES[data_config.source], expected="a file")
        if data_config.source == "parquet":
            return sum(parquet_source.loaded_bytes(file.path) for file in files) > STREAM_AUTO_BYTES
        return sum(file.path.stat().st_size for file in files) > STREAM_AUTO_BYTES
    except (OSError, DltoolError):
        return False  # loading says what is wrong with the path


def quiet_options(tf):
    """tf.data options without autotuning: its thread held Keras up to 4 s each time a finished pass's iterator
    was deleted (measured on the 2-core machine); the pipeline's parallelism and prefetch are set explicitly."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class StreamedSplits(TrainingData):
    """The base of every source read from disk batch by batch each epoch: splits known by their sizes only.

    A subclass yields one split's batches from :meth:`iter_split` (seeded per epoch when it shuffles); this base
    turns them into tf.data datasets of known length for Keras, shares every batch among processes, and evens
    batches out over devices.
    """

    streamed = True
    tensorflow_reason = "tf.data reads the streamed data (data.stream) from disk, batch by batch"

    def __init__(self, config, counts: dict, preprocessing: Preprocessing, fingerprint: str, test_source: str):
        super().__init__()
        self.config, self.counts = config, counts
        self.preprocessing, self.fingerprint, self.test_source = preprocessing, fingerprint, test_source
        self.validation = config.data.validation
        self.seed = config.data.split_seed if config.data.split_seed is not None else config.seed
        self._epoch = 0  # the training epoch being read, from 0 (see start_epoch): its shuffle is seeded with it
        self._share: tuple[int, int, int] | None = None  # (processes, this process, multiple): see _share_batches
        self.split_class_counts: dict[int, list[int]] | None = None  # {split code: samples per class}, classification

    @abstractmethod
    def iter_split(self, split: int, batch_size: int, shuffle: bool, targets=None):
        """Yield (x, y) batches of exactly ``batch_size`` samples (the last may be smaller) of one split;
        ``targets`` (default None: as encoded) shapes the labels for the loss. The training split of a table with
        data.sample_weight yields (x, y, sample weights)."""

    def next_shuffle(self) -> np.random.Generator:
        """The generator of a pass's shuffle: seeded by (seed, epoch), so a rerun or a resumed run repeats it."""
        return np.random.default_rng([self.seed, self._epoch])

    def start_epoch(self, epoch: int) -> None:
        # Epochs, not passes: Keras starts passes of its own (a batch to build the model, an iterator made ahead
        # at an epoch's end) that must not shift the shuffles, and a resumed run starts at its first missing epoch.
        self._epoch = epoch - 1

    @property
    def validation_is_test(self) -> bool:
        return self.validation == "test"

    def sizes(self) -> dict:
        val = self.counts[TEST] if self.validation_is_test else (self.counts[VALIDATION] if self.validation else None)
        return {
            "train": self.counts[TRAIN],
            "validation": val,
            "test": self.counts[TEST],
            "validation_is_test": self.validation_is_test,
            "test_split": self.test_source,
            "streamed": True,
        }

    def class_counts(self) -> dict | None:
        counts = self.split_class_counts
        if counts is None:
            return None
        validation = counts[TEST] if self.validation_is_test else (counts[VALIDATION] if self.validation else None)
        return {"train": counts[TRAIN], "validation": validation, "test": counts[TEST]}

    def resample(self, plan) -> None:
        # Steps per epoch and each process's share follow the resampled count; the subclass repeats or drops rows.
        self.counts[TRAIN] = plan.size
        self.split_class_counts[TRAIN] = list(plan.after)
        self.resampling = plan

    def even_out(self, devices: int, *, test: bool = True) -> dict[str, int]:
        # The test split is evaluated on one device: only training and validation batches are evened out.
        self.left_out = self._share_batches(1, 0, devices)
        return self.left_out

    def keep_share(self, processes: int, process: int, devices: int, batch_size: int) -> str:
        self.left_out = self._share_batches(processes, process, devices)
        return f"{batch_size // processes} rows of every batch per process, streamed"

    def _share_batches(self, processes: int, process: int, multiple: int) -> dict[str, int]:
        """From now on, training and validation batches are this process's share of each global batch.

        Several devices (``multiple``, over all ``processes``) must each get an equal part of every batch: the
        last, shorter batch of each split loses its last few rows (fewer than ``multiple``), and process
        ``process`` keeps rows [p*b/N, (p+1)*b/N) of every global batch of b rows. Every process reads the whole
        split (the same seeded shuffle), so together they see exactly one process's batches. Returns the rows
        left out per split, for the log.
        """
        self._share = (processes, process, multiple)
        splits = {"train": TRAIN, "validation": TEST if self.validation_is_test else VALIDATION}
        batch = self.config.train.batch_size
        return {
            name: (self.counts[split] % batch) % multiple
            for name, split in splits.items()
            if (name == "train" or self.validation) and (self.counts[split] % batch) % multiple
        }

    def _shared(self, split: int, batch_size: int, shuffle: bool, targets):
        processes, process, multiple = self._share
        for batch in self.iter_split(split, batch_size * processes, shuffle, targets):
            part = (len(batch[0]) - len(batch[0]) % multiple) // processes
            if part:  # (x, y) or (x, y, sample weights): every array's same rows
                yield tuple(array[process * part : (process + 1) * part] for array in batch)

    def dataset(self, split: int, batch_size: int, shuffle: bool, targets, shared: bool = False):
        """A tf.data.Dataset of one split's batches with known length (so progress bars know the steps).

        ``shared`` (after :meth:`keep_share` or :meth:`even_out`): this process's share, ``batch_size`` rows of
        each global batch.
        """
        from ..backend import import_tensorflow

        tf = import_tensorflow(self.tensorflow_reason)

        sample = next(self.iter_split(split, 1, False, targets))  # (x, y), or (x, y, sample weights) for training
        signature = tuple(tf.TensorSpec((None, *array.shape[1:]), tf.as_dtype(array.dtype)) for array in sample)
        if shared and self._share is not None:
            batches = lambda: self._shared(split, batch_size, shuffle, targets)  # noqa: E731
        else:
            batches = lambda: self.iter_split(split, batch_size, shuffle, targets)  # noqa: E731
        data = tf.data.Dataset.from_generator(self._recorded(batches), output_signature=signature)
        steps = self._steps(split, batch_size, shared)
        return data.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2).with_options(quiet_options(tf))

    def _steps(self, split: int, batch_size: int, shared: bool) -> int:
        """Batches in one pass over ``split``: ``shared`` (after keep_share), this process's share of each."""
        if shared and self._share is not None:
            processes, _, multiple = self._share
            whole, last = divmod(self.counts[split], batch_size * processes)
            return whole + (1 if last - last % multiple else 0)
        return -(-self.counts[split] // batch_size)

    def _recorded(self, batches):
        """``batches`` that keep a DltoolError they raise in ``failure``: TensorFlow wraps it in a traceback."""

        def recorded():
            try:
                yield from batches()
            except DltoolError as exc:
                self.failure = exc
                raise

        return recorded

    def fit_inputs(self, targets, batch_size: int, shuffle: bool) -> dict:
        # shuffle=False tells Keras not to expect a shuffle it cannot do; iter_split shuffles itself.
        inputs = {"x": self.dataset(TRAIN, batch_size, shuffle, targets, shared=True), "shuffle": False}
        if self.validation_is_test:
            inputs["validation_data"] = self.dataset(TEST, batch_size, False, targets, shared=True)
        elif self.validation:
            inputs["validation_data"] = self.dataset(VALIDATION, batch_size, False, targets, shared=True)
        return inputs

    def evaluate_inputs(self, targets, batch_size: int) -> dict:
        return {"x": self.dataset(TEST, batch_size, False, targets)}

    def test_chunks(self, limit: int | None = None):
        seen = 0
        for x, y, *_ in self.iter_split(TEST, 65536, False):
            if limit is not None and seen >= limit:
                return
            yield x[: None if limit is None else limit - seen], y[: None if limit is None else limit - seen]
            seen += len(x)

    def validation_chunks(self, chunk: int = 65536):
        if self.validation_is_test or self.validation:
            yield from self.iter_split(TEST if self.validation_is_test else VALIDATION, chunk, False)


class StreamedTable(StreamedSplits):
    """A table (CSV or Parquet, one file or several) read from disk in chunks each epoch; each row's split is a
    hash of (seed, split id)."""

    target_width = 1

    def __init__(
        self,
        config,
        reader: TableReader,
        counts: dict,
        preprocessing: Preprocessing,
        fingerprint: str,
        test_fraction: float,
        warnings: list[str] | None = None,
    ):
        seed = config.data.split_seed if config.data.split_seed is not None else config.seed
        super().__init__(
            config,
            counts,
            preprocessing,
            fingerprint,
            f"fraction {test_fraction:g} of the rows (hashed {_hashed_by(config.data)}with seed {seed}), streamed",
        )
        self.reader, self.test_fraction = reader, test_fraction
        self.warnings = list(warnings or [])  # an id-like feature column in the first chunk, for the run
        self.weighted = getattr(config.data, "sample_weight", None) is not None  # read as the last column

    def _targets(self, y: np.ndarray) -> np.ndarray:
        state = self.preprocessing
        if state.task == "classification":
            return self.reader.class_indices(y, state.class_names)
        return self.reader.regression_values(y)

    def _split_rows(self, split: int):
        """(x, y, sample weights or None) of one split's rows, chunk by chunk, as the files hold them (y: the
        target as the reader holds it: a CSV's text, a Parquet column's values)."""
        val_fraction = self.validation if isinstance(self.validation, float) else None
        for rows, x, y in self.reader.chunks():
            keep = split_codes(rows, self.seed, self.test_fraction, val_fraction) == split
            x, weights = split_weights(x[keep], self.weighted)
            yield x, y[keep], weights

    def iter_split(self, split: int, batch_size: int, shuffle: bool, targets=None):
        rng = self.next_shuffle()
        training = split == TRAIN
        plan = self.resampling if training else None
        seen = None if plan is None else np.zeros(len(plan.before), dtype=np.int64)  # rows per class read so far
        carry = None
        for x, y, weights in self._split_rows(split):
            x, y = self.preprocessing.transform(x), self._targets(y)
            batch = [x, y] + ([weights] if training and self.weighted else [])
            if plan is not None:  # data.resample: each row repeated or dropped by its class and place in it
                repeats = plan.repeats(y, seen)
                batch = [np.repeat(array, repeats, axis=0) for array in batch]
            if targets is not None:
                batch[1] = targets(batch[1])
            if shuffle and len(batch[0]):
                order = rng.permutation(len(batch[0]))
                batch = [array[order] for array in batch]
            if carry is not None:
                batch = [np.concatenate([old, new]) for old, new in zip(carry, batch)]
            full = len(batch[0]) - len(batch[0]) % batch_size
            for start in range(0, full, batch_size):
                yield tuple(array[start : start + batch_size] for array in batch)
            carry = [array[full:] for array in batch]
        if carry is not None and len(carry[0]):
            yield tuple(carry)

    def raw_test_inputs(self, limit: int) -> np.ndarray:
        parts, count = [], 0
        for x, _, _ in self._split_rows(TEST):
            parts.append(x[: limit - count])
            count += len(parts[-1])
            if count >= limit:
                break
        width = len(self.reader.features) - self.weighted
        return np.concatenate(parts) if parts else np.empty((0, width), dtype=np.float32)


def _hashed_by(data) -> str:
    if getattr(data, "split_key", None):
        return f"by split key {data.split_key} "
    return "by file name and row " if hashes_file_names(data) else ""


def prepare_streamed(config) -> StreamedTable:
    """Scan the table once (counts, labels, standardization on training rows, fingerprint); return its streams."""
    data = config.data
    if data.test == "builtin":
        raise ConfigError(
            f"a {data.source} table has no test split of its own; set data.test to a fraction such as 0.2",
            path="data.test",
        )
    test_fraction = 0.2 if data.test == "auto" else data.test
    reader, features = _TABLE_READERS[data.source](data)
    if [len(features)] != list(config.model.input_shape):
        raise ConfigError(
            f"expected the data's sample shape, received {list(config.model.input_shape)}: "
            f"{reader.path} has {len(features)} feature columns; set model.input_shape: [{len(features)}]",
            path="model.input_shape",
        )
    seed = data.split_seed if data.split_seed is not None else config.seed
    val_fraction = data.validation if isinstance(data.validation, float) else None
    counts = {TRAIN: 0, VALIDATION: 0, TEST: 0}
    total = np.zeros(len(features))
    squares = np.zeros(len(features))
    labels: set = set()
    label_counts: dict[int, list] = {code: [] for code in counts}  # per split: (distinct targets, their counts)
    digest = hashlib.sha256()
    warnings: list[str] = []
    first = True
    weight = getattr(data, "sample_weight", None)
    rows_read, training_weight = 0, 0.0
    for ids, x, y in reader.chunks(digest):
        x, weights = split_weights(x, weight is not None)
        if first and not data.features:  # an id column shows in the first chunk already
            warnings = id_column_warnings(x, features)
        first = False
        codes = split_codes(ids, seed, test_fraction, val_fraction)
        if weights is not None:
            check_weights(weights, reader.path, weight, rows_read)
            training_weight += float(weights[codes == TRAIN].sum(dtype=np.float64))
        rows_read += len(x)
        for code in counts:
            counts[code] += int(np.count_nonzero(codes == code))
        train_x = x[codes == TRAIN]
        if data.scale:
            train_x = train_x / data.scale
        total += train_x.sum(axis=0, dtype=np.float64)
        squares += np.square(train_x, dtype=np.float64).sum(axis=0)
        if config.is_classifier:
            labels.update(reader.label_values(y))
            _count_labels(label_counts, y, codes)
        elif len(y):
            reader.regression_values(y)  # refuse non-numeric targets now, not mid-epoch
    if counts[TRAIN] == 0 or counts[TEST] == 0:
        raise DataError(f"{reader.path}: {sum(counts.values())} rows leave no rows for training or testing")
    if weight is not None:
        check_weighted_training(training_weight, reader.path, weight)
    class_names = None
    if config.is_classifier:
        _, class_names = encode_labels([np.array(sorted(labels), dtype=object)], None, reader.path)
    state = Preprocessing(
        input_shape=list(config.model.input_shape),
        task="classification" if config.is_classifier else "regression",
        scale=data.scale,
        class_names=class_names,
        feature_names=features,
        target_names=[data.target],
        **preprocessing_kind(data),
    )
    if data.standardize:
        mean = total / counts[TRAIN]
        std = np.sqrt(np.maximum(squares / counts[TRAIN] - mean**2, 0.0))
        std[std == 0] = 1.0
        state.mean, state.std = mean.tolist(), std.tolist()
    table = StreamedTable(config, reader, counts, state, digest.hexdigest()[:16], test_fraction, warnings)
    if config.is_classifier:
        table.split_class_counts = {
            code: _class_counts(reader, parts, class_names) for code, parts in label_counts.items()
        }
    return table


def _count_labels(label_counts: dict[int, list], y: np.ndarray, codes: np.ndarray) -> None:
    """Add a chunk's targets, as the reader holds them, to each split's counts (one sort per chunk)."""
    if not len(y):
        return
    values, inverse = np.unique(y, return_inverse=True)
    for code, parts in label_counts.items():
        here = np.bincount(inverse.ravel()[codes == code], minlength=len(values))
        parts.append((values[here > 0], here[here > 0]))


def _class_counts(reader, parts: list, class_names: list[str]) -> list[int]:
    """One split's samples per class index, from its chunks' (distinct targets, counts)."""
    parts = [(values, n) for values, n in parts if len(values)]
    if not parts:
        return [0] * len(class_names)
    indices = reader.class_indices(np.concatenate([values for values, _ in parts]), class_names)
    totals = np.bincount(indices, weights=np.concatenate([n for _, n in parts]), minlength=len(class_names))
    return [int(round(n)) for n in totals]
