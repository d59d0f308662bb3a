"""An image folder read from disk batch by batch each epoch (``data.stream`` on an ``images`` source).

Nothing is decoded to prepare it: the files are listed, split by :func:`~dltool.data.images.split_by_class` (the
same split as in memory) and fingerprinted by their paths, sizes and modification times. Keras gets each split as
a tf.data pipeline that decodes its files in parallel, in an order that does not depend on the threads' timing:
TensorFlow's decoders where they give exactly the pixels of :func:`~dltool.data.images.read_image` (the function
predict uses), read_image itself elsewhere (:mod:`.image_pipeline`). ``data.cache`` keeps the decoded uint8
images (:mod:`.image_cache`); with ``data.on_bad_file: skip`` batches are decoded by read_image on dltool's own
threads, where an unreadable file's place can go to another.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError, DataError, DltoolError
from .class_weights import count_classes
from .image_cache import DiskCache, MemoryCache, NoCache, cache_root, listing_fingerprint
from .images import (
    SKIP_HINT,
    FolderListing,
    decode_threads,
    decode_workers,
    in_memory_bytes,
    list_folder,
    physical_memory,
    preprocessing_kind,
    read_image,
    settings_from_config,
    split_by_class,
    unreadable_note,
)
from .labels import regression_targets
from .preprocessing import Preprocessing
from .sources import SplitRows
from .streaming import TEST, TRAIN, VALIDATION, StreamedSplits, quiet_options

STREAM_BUDGET_CAP = 4 * 2**30  # data.stream: auto streams a folder whose pixels would take more than this ...
STREAM_BUDGET_SHARE = 0.25  # ... or more than this share of physical memory, whichever is less
MEMORY_CACHE_SHARE = 0.5  # data.cache: memory is kept while its uint8 pixels take at most this share of memory
STANDARDIZE_SAMPLE = 1000  # data.standardize on a stream: mean and std of this many training images, drawn seeded
PROBE_FILES = 8  # decoded on one thread when the stream opens, to time them (see images.read_images)
READ_AHEAD = 2  # batches queued beyond one per decoding thread
TEST_CHUNK_BYTES = 64 * 2**20  # float32 pixels per chunk of the test split (evaluate's report)
SPLIT_NAMES = {TRAIN: "training", VALIDATION: "validation", TEST: "test"}
MAX_PENDING = 64  # batches remembered while in the tf.data pipeline (a pipeline holds a few)


def stream_budget() -> int:
    """The bytes of pixels a folder may need in memory before ``data.stream: auto`` streams it: a quarter of
    physical memory, at most 4 GiB (4 GiB where the platform does not say)."""
    memory = physical_memory()
    return STREAM_BUDGET_CAP if memory is None else int(min(STREAM_BUDGET_CAP, STREAM_BUDGET_SHARE * memory))


def large_folder(data_config) -> bool:
    """``data.stream: auto`` for an image folder: stream when its decoded pixels, uint8 and then float32 as the
    in-memory path holds them, would pass :func:`stream_budget`. Lists the files; decodes none."""
    try:
        listing = list_folder(data_config)
    except DltoolError:  # the in-memory loader reports it, with its key
        return False
    _LISTED[:] = [data_config, listing]  # prepare_streamed_images takes it: listing a large folder takes seconds
    return in_memory_bytes(len(listing.files), settings_from_config(data_config)) > stream_budget()


_LISTED: list = []  # [the data config large_folder last listed, its listing]


def _listing(data_config) -> FolderListing:
    """The folder's listing: the one :func:`large_folder` just made for this very config, else a new one."""
    if _LISTED and _LISTED[0] is data_config:
        listing = _LISTED[1]
        _LISTED.clear()
        return listing
    return list_folder(data_config)


def _labels(listing: FolderListing, classifier: bool) -> np.ndarray:
    """Each file's target as in memory: class indices as int32, or (n, 1) float32 for a regression loss."""
    if classifier:
        return listing.labels.astype(np.int32)
    return regression_targets(listing.labels, str(listing.root))


class StreamedImages(StreamedSplits):
    """An image folder's splits, decoded batch by batch each epoch (see :meth:`dataset`).

    A training pass shuffles the training files with (seed, epoch); validation and test are read in listing
    order. ``cache`` (a :mod:`.image_cache` cache) holds decoded files. With ``data.on_bad_file: skip`` a file
    that cannot be read is replaced, where it occurs, by the next readable file of its split (in listing order):
    every batch keeps its size, so the steps per epoch and the batches' split over devices and processes stay as
    counted.
    """

    target_width = 1
    tensorflow_reason = "tf.data decodes the streamed image files (data.stream)"

    def __init__(
        self,
        config,
        listing: FolderListing,
        split: SplitRows,
        preprocessing: Preprocessing,
        fingerprint: str,
        cache,
        workers: int = 1,
    ):
        validation = np.array([], dtype=np.int64) if split.validation is None else split.validation
        counts = {TRAIN: len(split.train), VALIDATION: len(validation), TEST: len(split.test)}
        super().__init__(config, counts, preprocessing, fingerprint, f"{split.description}, streamed")
        self.listing, self.cache, self.workers = listing, cache, workers
        self.settings = settings_from_config(config.data)
        self.skip = config.data.on_bad_file == "skip"
        self._rows = {TRAIN: split.train, VALIDATION: validation, TEST: split.test}
        self._train_rows: np.ndarray | None = None  # the training rows after data.resample, repeats included
        self._split_of = np.zeros(len(listing.files), dtype=np.int8)
        for code, rows in self._rows.items():
            self._split_of[rows] = code
        self._labels = _labels(listing, config.is_classifier)
        if config.is_classifier:  # from the paths: a file's class is its folder
            classes = len(preprocessing.class_names or [])
            self.split_class_counts = {
                code: count_classes(self._labels[rows], classes) for code, rows in self._rows.items()
            }
        self._lock = threading.Lock()
        self._unreadable: dict[int, str] = {}  # row: why it cannot be read (on_bad_file: skip)
        self._noted = (0, cache.state)  # what take_notes last said: unreadable files, cache state
        self._notes: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._failure: DltoolError | None = None
        self._pending: dict[int, np.ndarray] = {}  # batches in the tf.data pipeline, by key (see _in_flight)
        self._next_key = 0

    # ------------------------------------------------------------------ the interface
    def sizes(self) -> dict:
        sizes = {**super().sizes(), "cache": self._cache_record()}
        if self._unreadable:
            sizes["unreadable_files"] = len(self._unreadable)
        return sizes

    def _cache_record(self) -> dict:
        record = {"kind": self.cache.kind}
        if isinstance(self.cache, DiskCache):
            record.update(state=self.cache.state, folder=str(self.cache.folder))
        return record

    def keep_share(self, processes: int, process: int, devices: int, batch_size: int) -> str:
        if processes > 1 and self.cache.state == "building":
            # Each process decodes only its share of the files: none would ever fill the whole file.
            self.cache = NoCache()
            self.note("data.cache: disk is built by a run in one process and reused by several; reading without it")
        return super().keep_share(processes, process, devices, batch_size)

    def take_notes(self) -> list[str]:
        with self._lock:
            notes, self._notes = self._notes, []
            unreadable = sorted(self._unreadable)
        if (len(unreadable), self.cache.state) != self._noted:
            if len(unreadable) != self._noted[0]:
                notes.append(
                    unreadable_note(len(unreadable), [self.listing.relative_path(row) for row in unreadable[:3]])
                )
            if self.cache.state != self._noted[1] and self.cache.state in ("built",):
                notes.append(self.cache.describe())
            self._noted = (len(unreadable), self.cache.state)
        return notes

    def iter_split(self, split: int, batch_size: int, shuffle: bool, targets=None):
        return self._batches(self._row_batches(split, batch_size, shuffle, shared=False), targets)

    def _shared(self, split: int, batch_size: int, shuffle: bool, targets):
        # As the base's, but this process decodes only its own rows of each global batch, not the whole batch.
        return self._batches(self._row_batches(split, batch_size, shuffle, shared=True), targets)

    def _row_batches(self, split: int, batch_size: int, shuffle: bool, shared: bool) -> list[np.ndarray]:
        """The rows of each batch of one pass over ``split`` (shuffled with the epoch's seed when ``shuffle``);
        ``shared`` (after keep_share): this process's ``batch_size`` rows of every global batch."""
        rows = self._ordered(split, shuffle)
        if not shared or self._share is None:
            return [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
        processes, process, multiple = self._share
        step, mine = batch_size * processes, []
        for start in range(0, len(rows), step):
            batch = rows[start : start + step]
            part = (len(batch) - len(batch) % multiple) // processes
            if part:
                mine.append(batch[process * part : (process + 1) * part])
        return mine

    def test_chunks(self, limit: int | None = None):
        chunk = max(1, TEST_CHUNK_BYTES // (4 * int(np.prod(self.settings.shape))))
        total = len(self._rows[TEST][:limit])
        if self.skip or not total:
            rows = self._rows[TEST][:limit]
            yield from self._batches([rows[start : start + chunk] for start in range(0, len(rows), chunk)], None)
            return
        seen = 0
        for x, y in self.dataset(TEST, chunk, False, None):  # decoded as in training: TensorFlow's threads
            take = min(len(x), total - seen)
            yield x.numpy()[:take], y.numpy()[:take]
            seen += take
            if seen >= total:
                return

    def validation_chunks(self, chunk: int | None = None):
        # Chunks of decoded pixels as big as the test split's, not the tables' 65,536 rows.
        yield from super().validation_chunks(
            chunk or max(1, TEST_CHUNK_BYTES // (4 * int(np.prod(self.settings.shape))))
        )

    def raw_test_inputs(self, limit: int) -> np.ndarray:
        rows = self._rows[TEST][:limit]
        return self._read_rows(rows)[0] if len(rows) else np.empty((0, *self.settings.shape), np.uint8)

    # ------------------------------------------------------------------ the tf.data pipeline
    def dataset(self, split: int, batch_size: int, shuffle: bool, targets, shared: bool = False):
        """One split's batches for Keras: files decoded in a parallel tf.data map (see :mod:`.image_pipeline`),
        batched in the order :meth:`_row_batches` gives, then scaled by TensorFlow. With on_bad_file: skip,
        the base's pipeline over dltool's Pillow threads: only there can a file be replaced where it occurs."""
        if self.skip:
            return super().dataset(split, batch_size, shuffle, targets, shared)
        from ..backend import import_tensorflow

        tf = import_tensorflow(self.tensorflow_reason)

        from .image_pipeline import file_decoder, scaled

        shared = shared and self._share is not None
        steps = self._steps(split, batch_size, shared)
        paths = tf.constant([str(path) for path in self.listing.files])
        shape = self.settings.shape
        decode = file_decoder(self.settings, self._pillow_row, self._cached_row)
        caching = self.cache.state in ("filling", "building")
        sample_y = self._labels[:1] if targets is None else targets(self._labels[:1])

        def batches_of_rows():
            for rows in self._row_batches(split, batch_size, shuffle, shared):
                yield (
                    np.full(len(rows), self._in_flight(rows), np.int64),
                    rows.astype(np.int64),
                    self.cache.cached(rows),
                )

        def cached_batches():
            for rows in self._row_batches(split, batch_size, shuffle, shared):
                labels = self._labels[rows]
                yield self.cache.read(rows), labels if targets is None else targets(labels)

        def pass_reads_cache():
            # Decided as each pass starts: a pass whose every file is cached reads whole batches from the cache
            # (one read per batch, no per-file stage); any other decodes file by file, filling the cache.
            rows = self._rows[split]
            yield np.int64(bool(len(rows)) and bool(self.cache.cached(rows).all()))

        def one_file(key, row, is_cached):
            return key, row, decode(tf.gather(paths, row), row, is_cached)

        def done(keys, rows, pixels):
            inputs = [keys[0], rows, pixels if caching else tf.zeros([0], tf.uint8)]
            y = tf.numpy_function(
                lambda key, rows, pixels: self._batch_done(key, rows, pixels, targets),
                inputs,
                tf.as_dtype(sample_y.dtype),
                stateful=True,
            )
            y.set_shape((None, *sample_y.shape[1:]))
            return scaled(tf, pixels, self.preprocessing), y

        y_spec = tf.TensorSpec((None, *sample_y.shape[1:]), tf.as_dtype(sample_y.dtype))
        rows_spec = (
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.bool),
        )
        plain = tf.autograph.experimental.do_not_convert  # graph code already: converting it took 0.5 s a run
        decoded = (
            tf.data.Dataset.from_generator(self._recorded(batches_of_rows), output_signature=rows_spec)
            .unbatch()
            .map(plain(one_file), num_parallel_calls=decode_threads(), deterministic=True)
            .batch(batch_size)
            .map(plain(done))
        )
        from_cache = tf.data.Dataset.from_generator(
            self._recorded(cached_batches), output_signature=(tf.TensorSpec((None, *shape), tf.uint8), y_spec)
        ).map(plain(lambda x, y: (scaled(tf, x, self.preprocessing), y)))
        passes = tf.data.Dataset.from_generator(pass_reads_cache, output_signature=tf.TensorSpec((), tf.int64))
        data = (
            passes.flat_map(
                plain(
                    lambda reads_cache: tf.data.Dataset.choose_from_datasets(
                        [decoded, from_cache], tf.data.Dataset.from_tensors(reads_cache).repeat(), True
                    )
                )
            )
            .apply(tf.data.experimental.assert_cardinality(steps))
            .prefetch(2)
        )
        return data.with_options(quiet_options(tf))

    def _in_flight(self, rows: np.ndarray) -> int:
        """Note a batch handed to the pipeline (until :meth:`_batch_done`): where to look for a file TensorFlow
        could not decode. Returns the batch's key."""
        with self._lock:
            self._next_key += 1
            self._pending[self._next_key] = rows
            while len(self._pending) > MAX_PENDING:  # passes Keras leaves early leave their batches behind
                self._pending.pop(next(iter(self._pending)))
            return self._next_key

    def _batch_done(self, key, rows: np.ndarray, pixels: np.ndarray, targets) -> np.ndarray:
        """A batch decoded: forget it, keep its new pixels in the cache, return its targets."""
        with self._lock:
            self._pending.pop(int(key), None)
        if len(pixels):
            new = ~self.cache.cached(rows)
            if new.any():
                self.cache.store(rows[new], pixels[new])
        labels = self._labels[rows]
        return labels if targets is None else targets(labels)

    def _cached_row(self, row) -> np.ndarray:
        return self.cache.read(np.array([int(row)]))[0]

    def _pillow_row(self, row) -> np.ndarray:
        """A file TensorFlow does not decode itself, read by Pillow (and cached) as predict reads it."""
        try:
            return self._readable(int(row))[1]
        except DltoolError as exc:
            self.failure = exc
            raise

    @property
    def failure(self) -> DltoolError | None:
        """What stopped a pass: a file Pillow could not read, or one TensorFlow could not decode (looked for,
        once a pass has stopped, among the batches handed to the pipeline and not yet done)."""
        if self._failure is None and self._pending:
            found = self._undecodable()
            self._failure = self._failure or found  # a file Pillow failed on while looking keeps Pillow's words
        return self._failure

    @failure.setter
    def failure(self, value: DltoolError | None) -> None:
        self._failure = value

    def _undecodable(self) -> DataError | None:
        import tensorflow as tf

        from .image_pipeline import file_decoder

        decode = file_decoder(self.settings, self._pillow_row)
        with self._lock:
            pending = [rows for _, rows in sorted(self._pending.items())]
            self._pending.clear()
        for rows in pending:
            for row in rows:
                path = self.listing.files[int(row)]
                try:
                    decode(tf.constant(str(path)), tf.constant(int(row), tf.int64))
                except tf.errors.OpError as exc:
                    reason = exc.message.strip().splitlines()[0] if exc.message.strip() else type(exc).__name__
                    return DataError(
                        f"{path}: cannot read as an image (TensorFlow: {reason}); expected a PNG, JPEG, BMP, GIF "
                        f"or WebP file; {SKIP_HINT}"
                    )
        return None

    # ------------------------------------------------------------------ reading
    def resample(self, plan) -> None:
        super().resample(plan)
        rows = self._rows[TRAIN]
        self._train_rows = rows[plan.indices(self._labels[rows])]

    def _ordered(self, split: int, shuffle: bool) -> np.ndarray:
        # The training files as data.resample repeats or drops them (each pass the same), else the split's files.
        rows = self._train_rows if split == TRAIN and self._train_rows is not None else self._rows[split]
        return rows[self.next_shuffle().permutation(len(rows))] if shuffle else rows

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dltool-images")
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def _batches(self, batches: list[np.ndarray], targets):
        """Yield (model inputs, targets) of each batch of rows, in order; up to ``workers + READ_AHEAD`` batches
        are decoding at once, one batch per thread (a task per file costs more than a small image's decoding)."""
        pool, pending, queued = self._executor(), deque(), iter(batches)

        def queue_next() -> None:
            rows = next(queued, None)
            if rows is not None:
                pending.append(pool.submit(self._model_batch, rows))

        for _ in range(self.workers + READ_AHEAD):
            queue_next()
        try:
            while pending:
                x, y = pending.popleft().result()
                queue_next()
                yield x, (y if targets is None else targets(y))
        finally:  # a pass left early (Keras makes some) leaves nothing queued behind it
            for future in pending:
                future.cancel()

    def _model_batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels, used = self._read_rows(rows)
        return self.preprocessing.transform(pixels), self._labels[used]

    def _read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 pixels of ``rows`` (from the cache, else decoded and cached) and the rows they are of: with
        on_bad_file: skip, an unreadable file's place goes to the next readable one of its split."""
        out = np.empty((len(rows), *self.settings.shape), dtype=np.uint8)
        used = np.array(rows, copy=True)
        cached = self.cache.cached(rows)
        if cached.any():
            out[cached] = self.cache.read(rows[cached])
        for index in np.flatnonzero(~cached):
            used[index], out[index] = self._readable(int(rows[index]))
        return out, used

    def _readable(self, row: int) -> tuple[int, np.ndarray]:
        """(row, pixels) of ``row``'s file, or of the next readable file of its split when it cannot be read."""
        candidate = row
        while True:
            if candidate not in self._unreadable:
                if self.cache.cached(np.array([candidate]))[0]:
                    return candidate, self.cache.read(np.array([candidate]))[0]
                try:
                    pixels = read_image(self.listing.files[candidate], self.settings)
                except DataError as exc:
                    if not self.skip:
                        raise DataError(f"{exc}; {SKIP_HINT}") from None
                    with self._lock:
                        self._unreadable[candidate] = str(exc)
                    self.cache.unreadable(np.array([candidate]))
                else:
                    self.cache.store(np.array([candidate]), pixels[None])
                    return candidate, pixels
            candidate = self._next_in_split(candidate)
            if candidate == row:
                raise DataError(
                    f"{self.listing.root}: no file of the {SPLIT_NAMES[self._split_of[row]]} split can be read as "
                    f"an image ({len(self._unreadable)} unreadable file(s)); expected PNG, JPEG, BMP, GIF or WebP files"
                )

    def _next_in_split(self, row: int) -> int:
        rows = self._rows[self._split_of[row]]  # in listing order
        return int(rows[(np.searchsorted(rows, row) + 1) % len(rows)])

    # ------------------------------------------------------------------ preparing
    def time_decoding(self) -> float:
        """Seconds per image of the first training files, decoded on this thread (and cached)."""
        rows = self._rows[TRAIN][:PROBE_FILES]
        started = time.perf_counter()
        self._read_rows(rows)
        return (time.perf_counter() - started) / max(len(rows), 1)

    def fit_standardization(self) -> int:
        """Per-channel mean and std of up to STANDARDIZE_SAMPLE training images (drawn with the split seed),
        after scaling, as Preprocessing.fit takes them in memory; returns how many images were used."""
        rows = self._rows[TRAIN]
        if len(rows) > STANDARDIZE_SAMPLE:
            rows = np.sort(
                np.random.default_rng([self.seed, len(rows)]).choice(rows, STANDARDIZE_SAMPLE, replace=False)
            )
        channels = self.settings.shape[-1]
        total, squares, count = np.zeros(channels), np.zeros(channels), 0
        for x, _ in self._batches([rows[start : start + 64] for start in range(0, len(rows), 64)], None):
            flat = x.reshape(-1, channels).astype(np.float64)
            total += flat.sum(axis=0)
            squares += np.square(flat).sum(axis=0)
            count += len(flat)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std[std == 0] = 1.0
        self.preprocessing.mean, self.preprocessing.std = mean.tolist(), std.tolist()
        return len(rows)

    def note(self, text: str) -> None:
        """Add ``text`` to what :meth:`take_notes` gives next."""
        with self._lock:
            self._notes.append(text)


def _open_cache(config, listing: FolderListing, fingerprint: str):
    """The cache ``data.cache`` asks for, or none (with a warning) where it would not fit."""
    data, settings = config.data, settings_from_config(config.data)
    if data.cache == "memory":
        needed, memory = len(listing.files) * int(np.prod(settings.shape)), physical_memory()
        if memory is not None and needed > MEMORY_CACHE_SHARE * memory:
            return NoCache(), (
                f"data.cache: memory would keep {needed / 2**30:.1f} GiB of uint8 pixels, more than half of this "
                f"machine's {memory / 2**30:.1f} GiB; reading without a cache (use data.cache: disk)"
            )
        return MemoryCache(len(listing.files), settings.shape), None
    if data.cache == "disk":
        cache = DiskCache(cache_root() / fingerprint, len(listing.files), settings.shape, settings.to_dict())
        reason = cache.fits()
        return (NoCache(), f"data.cache: disk: {reason}; reading without a cache") if reason else (cache, None)
    return NoCache(), None


def prepare_streamed_images(config) -> StreamedImages:
    """An images config's splits, streamed: list, split and fingerprint the files (nothing decoded but a few to
    time decoding and, with data.standardize, a sample to fit it)."""
    data = config.data
    listing = _listing(data)
    settings = settings_from_config(data)
    if list(config.model.input_shape) != settings.shape:
        raise ConfigError(
            f"expected the data's sample shape, received {list(config.model.input_shape)}: the data has "
            f"{len(listing.files)} images of shape {settings.shape} (data.image_size and color_mode); "
            f"set model.input_shape: {settings.shape}",
            path="model.input_shape",
        )
    seed = data.split_seed if data.split_seed is not None else config.seed
    split = split_by_class(listing, data, seed)
    labels = [listing.classes[label] for label in listing.labels]
    fingerprint = listing_fingerprint(listing.root, listing.files, labels, settings.to_dict())
    cache, warning = _open_cache(config, listing, fingerprint)
    state = Preprocessing(
        input_shape=list(config.model.input_shape),
        task="classification" if config.is_classifier else "regression",
        scale=data.scale,
        class_names=list(listing.classes) if config.is_classifier else None,
        **preprocessing_kind(data),
    )
    images = StreamedImages(config, listing, split, state, fingerprint, cache)
    if warning:
        images.warnings.append(warning)
    if images.skip:  # Pillow on dltool's threads (see StreamedImages.dataset): as many as pay off
        images.workers = decode_workers(images.time_decoding(), len(listing.files))
        how = f"decoded by Pillow on {images.workers} thread(s)"
    else:
        images.workers = decode_threads()
        how = f"decoded on {images.workers} thread(s) by TensorFlow (PNG and JPEG at the model's size) or Pillow"
    images.note(f"streaming {len(listing.files)} images from {listing.root}: {how}, {cache.describe()}")
    if data.standardize:
        used = images.fit_standardization()
        images.note(f"data.standardize: mean and std per channel of {used} training images (seed {seed})")
    return images
