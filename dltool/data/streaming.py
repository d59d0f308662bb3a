"""Training data larger than memory: the base of streamed sources, and a CSV read batch by batch.

Streamed splits reach Keras as tf.data datasets (on every backend). For a CSV, the scan counts rows, assigns each row to
train / validation / test by a hash of (seed, row number), so every pass
agrees without holding an index; collects the class labels; and fits the
standardization on training rows only. Each epoch then re-reads the file in
chunks of at most CHUNK_BYTES of features, shuffling within a chunk.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DltoolError
from .base import TrainingData
from .csv_source import CsvReader, feature_columns, id_column_warnings, open_csv, preprocessing_kind
from .labels import encode_labels, labels_to_indices, regression_targets
from .preprocessing import Preprocessing

STREAM_AUTO_BYTES = 2**30  # data.stream: auto streams CSV files larger than 1 GiB
CHUNK_BYTES = 16 * 2**20
TRAIN, VALIDATION, TEST = 0, 1, 2
_MASK64 = np.uint64(2**64 - 1)


def large_file(data_config) -> bool:
    """``data.stream: auto`` for a CSV: stream files larger than STREAM_AUTO_BYTES."""
    try:
        return Path(data_config.path).stat().st_size > STREAM_AUTO_BYTES
    except OSError:
        return False


def split_codes(rows: np.ndarray, seed: int, test: float, validation: float | None) -> np.ndarray:
    """TRAIN, VALIDATION or TEST for each row number: a splitmix64 hash of (seed, row), so any pass agrees."""
    with np.errstate(over="ignore"):
        z = (rows.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    codes = np.full(len(rows), TRAIN, dtype=np.int8)
    codes[u < test] = TEST
    if validation:
        codes[(u >= test) & (u < test + validation * (1 - test))] = VALIDATION
    return codes


class StreamedSplits(TrainingData):
    """The base of every source read from disk batch by batch each epoch: splits known by their sizes only.

    A subclass yields one split's batches from :meth:`iter_split` (seeded per epoch when it shuffles); this base
    turns them into tf.data datasets of known length for Keras, shares every batch among processes, and evens
    batches out over devices.
    """

    streamed = True

    def __init__(self, config, counts: dict, preprocessing: Preprocessing, fingerprint: str, test_source: str):
        super().__init__()
        self.config, self.counts = config, counts
        self.preprocessing, self.fingerprint, self.test_source = preprocessing, fingerprint, test_source
        self.validation = config.data.validation
        self.seed = config.data.split_seed if config.data.split_seed is not None else config.seed
        self._epoch = 0  # the training epoch being read, from 0 (see start_epoch): its shuffle is seeded with it
        self._share: tuple[int, int, int] | None = None  # (processes, this process, multiple): see _share_batches

    @abstractmethod
    def iter_split(self, split: int, batch_size: int, shuffle: bool, targets=None):
        """Yield (x, y) batches of exactly ``batch_size`` samples (the last may be smaller) of one split;
        ``targets`` (default None: as encoded) shapes the labels for the loss."""

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
        for x, y in self.iter_split(split, batch_size * processes, shuffle, targets):
            part = (len(x) - len(x) % multiple) // processes
            if part:
                yield x[process * part : (process + 1) * part], y[process * part : (process + 1) * part]

    def dataset(self, split: int, batch_size: int, shuffle: bool, targets, shared: bool = False):
        """A tf.data.Dataset of one split's batches with known length (so progress bars know the steps).

        ``shared`` (after :meth:`keep_share` or :meth:`even_out`): this process's share, ``batch_size`` rows of
        each global batch.
        """
        import tensorflow as tf

        sample_x, sample_y = next(self.iter_split(split, 1, False, targets))
        signature = (
            tf.TensorSpec((None, *sample_x.shape[1:]), tf.as_dtype(sample_x.dtype)),
            tf.TensorSpec((None, *sample_y.shape[1:]), tf.as_dtype(sample_y.dtype)),
        )
        if shared and self._share is not None:
            processes, _, multiple = self._share
            whole, last = divmod(self.counts[split], batch_size * processes)
            steps = whole + (1 if last - last % multiple else 0)
            batches = lambda: self._shared(split, batch_size, shuffle, targets)  # noqa: E731
        else:
            steps = -(-self.counts[split] // batch_size)
            batches = lambda: self.iter_split(split, batch_size, shuffle, targets)  # noqa: E731
        data = tf.data.Dataset.from_generator(self._recorded(batches), output_signature=signature)
        return data.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)

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
        for x, y in self.iter_split(TEST, 65536, False):
            if limit is not None and seen >= limit:
                return
            yield x[: None if limit is None else limit - seen], y[: None if limit is None else limit - seen]
            seen += len(x)


class StreamedTable(StreamedSplits):
    """A table (a CSV) read from disk in chunks each epoch; each row's split is a hash of (seed, row number)."""

    target_width = 1

    def __init__(
        self,
        config,
        reader: CsvReader,
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
            f"fraction {test_fraction:g} of the rows (hashed with seed {seed}), streamed",
        )
        self.reader, self.test_fraction = reader, test_fraction
        self.warnings = list(warnings or [])  # an id-like feature column in the first chunk, for the run

    def _targets(self, texts: np.ndarray) -> np.ndarray:
        state = self.preprocessing
        if state.task == "classification":
            return labels_to_indices(texts, state.class_names, self.reader.path)
        return regression_targets(texts, self.reader.path)

    def _split_rows(self, split: int):
        """(x, y) of one split's rows, chunk by chunk, as the file holds them (y: the target column's text)."""
        val_fraction = self.validation if isinstance(self.validation, float) else None
        for rows, x, y in self.reader.chunks():
            keep = split_codes(rows, self.seed, self.test_fraction, val_fraction) == split
            yield x[keep], y[keep]

    def iter_split(self, split: int, batch_size: int, shuffle: bool, targets=None):
        rng = self.next_shuffle()
        carry_x = carry_y = None
        for x, y in self._split_rows(split):
            x, y = self.preprocessing.transform(x), self._targets(y)
            if targets is not None:
                y = targets(y)
            if shuffle and len(x):
                order = rng.permutation(len(x))
                x, y = x[order], y[order]
            if carry_x is not None:
                x, y = np.concatenate([carry_x, x]), np.concatenate([carry_y, y])
            full = len(x) - len(x) % batch_size
            for start in range(0, full, batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]
            carry_x, carry_y = x[full:], y[full:]
        if carry_x is not None and len(carry_x):
            yield carry_x, carry_y

    def raw_test_inputs(self, limit: int) -> np.ndarray:
        parts, count = [], 0
        for x, _ in self._split_rows(TEST):
            parts.append(x[: limit - count])
            count += len(parts[-1])
            if count >= limit:
                break
        return np.concatenate(parts) if parts else np.empty((0, len(self.reader.features)), dtype=np.float32)


def prepare_streamed(config) -> StreamedTable:
    """Scan the CSV once (counts, labels, standardization on training rows, fingerprint); return its streams."""
    data = config.data
    if data.test == "builtin":
        raise ConfigError(
            "a CSV has no test split of its own; set data.test to a fraction such as 0.2", path="data.test"
        )
    test_fraction = 0.2 if data.test == "auto" else data.test
    handle, _, header = open_csv(data.path, data.delimiter)
    handle.close()
    features = feature_columns(data, header)
    if [len(features)] != list(config.model.input_shape):
        raise ConfigError(
            f"expected the data's sample shape, received {list(config.model.input_shape)}: "
            f"{data.path} has {len(features)} feature columns; set model.input_shape: [{len(features)}]",
            path="model.input_shape",
        )
    reader = CsvReader(
        path=data.path,
        delimiter=data.delimiter,
        features=features,
        target=data.target,
        chunk_rows=max(1, min(65536, CHUNK_BYTES // (8 * len(features)))),
    )
    seed = data.split_seed if data.split_seed is not None else config.seed
    val_fraction = data.validation if isinstance(data.validation, float) else None
    counts = {TRAIN: 0, VALIDATION: 0, TEST: 0}
    total = np.zeros(len(features))
    squares = np.zeros(len(features))
    labels: set[str] = set()
    digest = hashlib.sha256()
    warnings: list[str] = []
    for rows, x, y in reader.chunks(digest):
        if rows[:1].tolist() == [0] and not data.features:  # an id column shows in the first chunk already
            warnings = id_column_warnings(x, features)
        codes = split_codes(rows, seed, test_fraction, val_fraction)
        for code in counts:
            counts[code] += int(np.count_nonzero(codes == code))
        train_x = x[codes == TRAIN] / (data.scale or 1.0)
        total += train_x.sum(axis=0)
        squares += np.square(train_x).sum(axis=0)
        if config.is_classifier:
            labels.update(y.tolist())
        elif len(y):
            regression_targets(y, data.path)  # refuse non-numeric targets now, not mid-epoch
    if counts[TRAIN] == 0 or counts[TEST] == 0:
        raise DataError(f"{data.path}: {sum(counts.values())} rows leave no rows for training or testing")
    class_names = None
    if config.is_classifier:
        _, class_names = encode_labels([np.array(sorted(labels), dtype=object)], None, data.path)
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
    return StreamedTable(config, reader, counts, state, digest.hexdigest()[:16], test_fraction, warnings)
