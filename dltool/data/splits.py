"""Test and validation splits, drawn with the config's seed, and the float32 arrays for training."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from .base import TrainingData, shard_for_process
from .class_weights import count_classes
from .folds import fold_rows, source_config
from .labels import encode_labels, regression_targets
from .preprocessing import Preprocessing
from .sources import RawData, SplitRows, load_source, preprocessing_kind, should_stream, streamer
from .table_files import TEST, TRAIN, VALIDATION, check_weighted_training, split_codes, split_weights

DEFAULT_TEST_FRACTION = 0.2


@dataclass
class ArrayData(TrainingData):
    """Every split an array in memory, ready for ``model.fit``, plus the state predict needs to repeat the
    preprocessing. ``raw_x_test``: the test inputs as the source gave them (what an exported model takes)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: Preprocessing
    fingerprint: str
    test_source: str  # "builtin" or "fraction 0.2 (seed 42)"
    adapted: list[str] = field(default_factory=list)  # preprocessing layers adapted on x_train, for the log
    warnings: list[str] = field(default_factory=list)  # the source's (an id-like feature column), for the run
    left_out: dict[str, int] = field(default_factory=dict)  # samples per split dropped so batches split evenly
    raw_x_test: np.ndarray | None = None
    w_train: np.ndarray | None = None  # data.sample_weight of each training sample (float32), else None
    _whole_validation = None  # (x_val, y_val) before keep_share took this process's share (a class attribute)

    @property
    def validation_is_test(self) -> bool:
        return self.x_val is self.x_test

    def sizes(self) -> dict:
        return {
            "train": len(self.x_train),
            "validation": None if self.x_val is None else len(self.x_val),
            "test": len(self.x_test),
            "validation_is_test": self.validation_is_test,
            "test_split": self.test_source,
        }

    @property
    def target_width(self) -> int:
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    def class_counts(self) -> dict | None:
        if self.preprocessing.task != "classification":
            return None
        classes = len(self.preprocessing.class_names or [])
        return {
            "train": count_classes(self.y_train, classes),
            "validation": None if self.y_val is None else count_classes(self.y_val, classes),
            "test": count_classes(self.y_test, classes),
        }

    def fit_inputs(self, targets, batch_size: int, shuffle: bool) -> dict:
        inputs = {"x": self.x_train, "y": targets(self.y_train), "batch_size": batch_size, "shuffle": shuffle}
        if self.w_train is not None:  # training only: validation and test metrics stay unweighted
            inputs["sample_weight"] = self.w_train
        if self.x_val is not None:
            inputs["validation_data"] = (self.x_val, targets(self.y_val))
        return inputs

    def evaluate_inputs(self, targets, batch_size: int) -> dict:
        return {"x": self.x_test, "y": targets(self.y_test), "batch_size": batch_size}

    def test_chunks(self, limit: int | None = None):
        yield self.x_test[:limit], self.y_test[:limit]

    def validation_chunks(self):
        x_val, y_val = self._whole_validation or (self.x_val, self.y_val)
        if x_val is not None:
            yield x_val, y_val

    def raw_test_inputs(self, limit: int) -> np.ndarray:
        return (self.x_test if self.raw_x_test is None else self.raw_x_test)[:limit]

    def training_arrays(self, needed_by: str, path: str) -> tuple[np.ndarray, np.ndarray]:
        return self.x_train, self.y_train

    def resample(self, plan) -> None:
        keep = plan.indices(self.y_train)
        self.x_train, self.y_train = self.x_train[keep], self.y_train[keep]
        if self.w_train is not None:
            self.w_train = self.w_train[keep]
        self.resampling = plan

    def even_out(self, devices: int, *, test: bool = True) -> dict[str, int]:
        left_out = {}
        validation_is_test = self.validation_is_test
        splits = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val")}
        if test:
            splits["test"] = ("x_test", "y_test")
        for name, (x, y) in splits.items():
            array = getattr(self, x)
            # Validation that is the test split follows it, unless the test split stays whole.
            if array is None or (name == "validation" and validation_is_test and test):
                continue
            extra = len(array) % devices
            if extra:
                setattr(self, x, array[: len(array) - extra])
                setattr(self, y, getattr(self, y)[: len(array) - extra])
                if name == "train" and self.w_train is not None:
                    self.w_train = self.w_train[: len(array) - extra]
                left_out[name] = extra
        if validation_is_test and test:  # one array for both, as before
            self.x_val, self.y_val = self.x_test, self.y_test
        self.left_out = left_out
        return left_out

    def keep_share(self, processes: int, process: int, devices: int, batch_size: int) -> str:
        self.even_out(devices, test=False)
        self._whole_validation = (self.x_val, self.y_val)  # references, not copies: calibration fits on all of it
        self.x_train = shard_for_process(self.x_train, batch_size, processes, process)
        self.y_train = shard_for_process(self.y_train, batch_size, processes, process)
        if self.w_train is not None:
            self.w_train = shard_for_process(self.w_train, batch_size, processes, process)
        if self.x_val is not None:
            self.x_val = shard_for_process(self.x_val, batch_size, processes, process)
            self.y_val = shard_for_process(self.y_val, batch_size, processes, process)
        return f"{len(self.x_train)} training samples per process"


def _split(x, y, fraction: float, seed: int, in_time_order: bool = False):
    """(x_train, x_held_out, y_train, y_held_out): a seeded random split, or the last ``fraction`` in time order."""
    from sklearn.model_selection import train_test_split

    if len(x) < 2 or round(len(x) * fraction) < 1 or round(len(x) * (1 - fraction)) < 1:
        raise DataError(f"cannot hold out a fraction {fraction:g} of {len(x)} samples: each side needs a sample")
    if in_time_order:
        return train_test_split(x, y, test_size=fraction, shuffle=False)
    return train_test_split(x, y, test_size=fraction, random_state=seed)


def _in_time_order(config) -> bool:
    # Windows of a series overlap: a random split would put the future of a test window into training.
    return config.data.source == "timeseries"


def _describe(source: RawData) -> str:
    return f"{len(source.x)} samples of shape {list(np.shape(source.x)[1:])}"


def _check_input_shape(config, raw: RawData) -> bool:
    """True when the model's input shape is the data's plus a trailing channel axis of 1 (preprocessing adds it,
    as keras.io's CNNs take [28, 28, 1] for [28, 28] images); ConfigError for any other mismatch."""
    expected, received = list(config.model.input_shape), list(np.shape(raw.x)[1:])
    if expected == received + [1]:
        return True
    if expected != received:
        raise ConfigError(
            f"expected the data's sample shape, received {expected}: the data has "
            f"{_describe(raw)}; set model.input_shape: {received}"
            # A row id taken as a feature is the usual reason a CSV has one column more than the user counted.
            + "".join(f"; note: {warning.removeprefix('data.path: ')}" for warning in raw.warnings),
            path="model.input_shape",
        )
    return False


def own_split(config, raw: RawData) -> SplitRows | None:
    """The rows of each split where the source decides them, else None (split_raw draws them at random).

    A cv fold (data.fold) gives its rows (see :mod:`dltool.data.folds`); an image folder gives its rows (by path,
    stratified by class); a table read by a glob, a list or with a
    data.split_key gives each row's split id, hashed here with the seed exactly as a streamed read hashes it.
    """
    data = config.data
    if data.fold is not None:  # a cv fold: its rows are the test split, whatever the source's own split
        return fold_rows(config, raw)
    if raw.split is not None or raw.split_ids is None or data.test == "builtin":  # builtin: split_raw refuses it
        return raw.split
    seed = data.split_seed if data.split_seed is not None else config.seed
    fraction = DEFAULT_TEST_FRACTION if data.test == "auto" else data.test
    validation = data.validation if isinstance(data.validation, float) else None
    codes = split_codes(raw.split_ids, seed, fraction, validation)
    where = _data_name(config)
    if not (codes == TEST).any() or not (codes != TEST).any():
        raise DataError(f"{where}: {len(codes)} rows leave no rows for training or testing")
    if validation is not None and (not (codes == VALIDATION).any() or not (codes == TRAIN).any()):
        raise DataError(f"{where}: {int((codes != TEST).sum())} training rows leave no rows for training or validation")
    how = f"split key {data.split_key}" if getattr(data, "split_key", None) else "file name and row"
    return SplitRows(
        train=np.flatnonzero(codes == TRAIN),
        validation=np.flatnonzero(codes == VALIDATION) if validation is not None else None,
        test=np.flatnonzero(codes == TEST),
        description=f"fraction {fraction:g} of the rows (hashed by {how}, seed {seed})",
    )


def split_raw(config, raw: RawData, rows: SplitRows | None = None):
    """Return (x_train, y_train, x_test, y_test, description of the test split); ``rows``: the source's own
    split (:func:`own_split`), if any."""
    data = config.data
    seed = data.split_seed if data.split_seed is not None else config.seed
    if rows is not None:  # the source split itself (an image folder by its paths, a table by its split ids)
        return raw.x[rows.train], raw.y[rows.train], raw.x[rows.test], raw.y[rows.test], rows.description
    has_builtin = raw.x_test is not None
    if data.test == "builtin" and not has_builtin:
        raise ConfigError(
            f"data source '{data.source}' has no test split of its own; set data.test to a fraction such as 0.2",
            path="data.test",
        )
    if data.test in ("builtin", "auto") and has_builtin:
        return raw.x, raw.y, raw.x_test, raw.y_test, "builtin"
    fraction = DEFAULT_TEST_FRACTION if data.test == "auto" else data.test
    x_train, x_test, y_train, y_test = _split(raw.x, raw.y, fraction, seed, _in_time_order(config))
    if _in_time_order(config):
        return x_train, y_train, x_test, y_test, f"the last {fraction:g} of the series, in time order"
    return x_train, y_train, x_test, y_test, f"fraction {fraction:g} of the data (seed {seed})"


def _targets(config, splits: list, class_names, where: str):
    if config.is_classifier:
        return encode_labels(splits, class_names, where)
    return [regression_targets(y, where) for y in splits], None


def _keep_random(x, y, count: int | None, seed: int):
    """A random ``count`` of the samples (all of them when there are no more), in their original order."""
    if count is None or len(x) <= count:
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))
    return x[keep], y[keep]


def prepare_data(config, *, samples: int | None = None) -> TrainingData:
    """Load the configured data, split, encode targets and fit preprocessing on the training split.

    A source that is streamed (``data.stream``) is scanned once instead and
    read from disk batch by batch while training (see :mod:`dltool.data.streaming`).
    ``samples`` (smoke runs; default None: all) keeps a random ``samples`` of
    the training split and at most as many test samples, drawn with the split
    seed after the labels are numbered, so the classes are those of the whole
    data. A streamed source is read whole.
    """
    from .resampling import resample_training

    data = streamer(config.data)(config) if _streams(config) else _in_memory(config, samples)
    resample_training(config, data)  # the training split only, split off already
    return data


def _in_memory(config, samples: int | None) -> ArrayData:
    """prepare_data for a source loaded into memory."""
    raw = load_source(source_config(config.data), seed=config.seed, classification=config.is_classifier)
    add_channel_axis = _check_input_shape(config, raw)
    # Of the data as loaded (4x fewer bytes than float32 pixels); the seeded splits follow from it and the config.
    data_fingerprint = _fingerprint_of(raw)
    weighted = raw.sample_weight is not None
    if weighted:  # the weights travel through every split as the last column, and are taken off after
        raw.x = np.column_stack([raw.x, raw.sample_weight])
    where = _data_name(config)
    rows = own_split(config, raw)
    x_train, y_train, x_test, y_test, test_source = split_raw(config, raw, rows)
    own_validation = rows is not None and rows.validation is not None
    y_val = raw.y[rows.validation] if own_validation else None
    encoded, class_names = _targets(
        config, [y_train, y_test] + ([y_val] if own_validation else []), raw.class_names, where
    )
    y_train, y_test = encoded[:2]
    seed = config.data.split_seed if config.data.split_seed is not None else config.seed
    x_train, y_train = _keep_random(x_train, y_train, samples, seed)
    x_test, y_test = _keep_random(x_test, y_test, samples, seed + 1)
    x_val = None
    validation = config.data.validation
    if own_validation:
        x_val, y_val = _keep_random(raw.x[rows.validation], encoded[2], samples, seed + 2)
    elif validation == "test":
        pass
    elif validation is not None:
        x_train, x_val, y_train, y_val = _split(x_train, y_train, validation, seed, _in_time_order(config))
    w_train = None
    if weighted:
        x_train, w_train = split_weights(x_train, True)
        x_test = split_weights(x_test, True)[0]
        x_val = None if x_val is None else split_weights(x_val, True)[0]
        check_weighted_training(float(w_train.sum()), where, config.data.sample_weight)
    state = Preprocessing.fit(
        x_train,
        input_shape=config.model.input_shape,
        scale=config.data.scale,
        standardize=config.data.standardize,
        task="classification" if config.is_classifier else "regression",
        class_names=class_names,
        feature_names=raw.feature_names,
        target_names=_target_names(config.data),
        per_channel=config.data.source in ("timeseries", "images"),
        add_channel_axis=add_channel_axis,
        **preprocessing_kind(source_config(config.data)),
    )
    raw_x_test = x_test
    x_train, x_test = state.transform(x_train), state.transform(x_test)
    if validation == "test":
        x_val, y_val = x_test, y_test
    elif x_val is not None:
        x_val = state.transform(x_val)
    return ArrayData(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        preprocessing=state,
        fingerprint=data_fingerprint,
        test_source=test_source,
        warnings=raw.warnings,
        raw_x_test=raw_x_test,
        w_train=w_train,
    )


def _target_names(data) -> list[str] | None:
    target = getattr(data, "target", None)
    return None if target is None else (list(target) if isinstance(target, list) else [target])


def open_test_split(config, preprocessing: Preprocessing) -> TrainingData:
    """A run's test split rebuilt from its saved config and given its saved preprocessing (not refitted).

    In memory, only the test split is kept (the training split comes back empty); a streamed source is scanned
    and its test split read batch by batch, as in training.
    """
    if _streams(config):
        data = streamer(config.data)(config)
        data.preprocessing = preprocessing  # what the model was trained with, not a refit
        return data
    raw = load_source(source_config(config.data), seed=config.seed, classification=config.is_classifier)
    _check_input_shape(config, raw)
    x_train, y_train, x_test, y_test, test_source = split_raw(config, raw, own_split(config, raw))
    (_, y_test), _ = _targets(config, [y_train, y_test], raw.class_names, _data_name(config))
    x = preprocessing.transform(x_test)
    return ArrayData(
        x_train=x[:0],
        y_train=y_test[:0],
        x_val=None,
        y_val=None,
        x_test=x,
        y_test=y_test,
        preprocessing=preprocessing,
        fingerprint=_fingerprint_of(raw),
        test_source=test_source,
        warnings=raw.warnings,
        raw_x_test=x_test,
    )


def raw_test_inputs(config, limit: int) -> np.ndarray:
    """Up to ``limit`` of a run's test inputs as its source gives them, nothing preprocessed (what an exported
    model takes, for export's verification): a streamed source reads them from disk, in memory only the source
    is loaded and split."""
    if _streams(config):
        return streamer(config.data)(config).raw_test_inputs(limit)
    raw = load_source(source_config(config.data), seed=config.seed, classification=config.is_classifier)
    _check_input_shape(config, raw)
    return split_raw(config, raw, own_split(config, raw))[2][:limit]


def check_folds(config) -> list[str]:
    """Load the source of a config with data.fold set and cut its folds, as a fold's run will; return the
    source's warnings. Raises DataError or ConfigError before any fold trains (a streamed source, too few rows
    or members of a class for the folds, a group column the file lacks)."""
    _streams(config)
    raw = load_source(source_config(config.data), seed=config.seed, classification=config.is_classifier)
    _check_input_shape(config, raw)
    own_split(config, raw)
    return list(raw.warnings)


def _streams(config) -> bool:
    """Whether the source is streamed (see should_stream); a cv fold of a streamed source is a DataError."""
    if not should_stream(config.data):
        return False
    if config.data.fold is not None:
        raise DataError(
            f"{_data_name(config)}: cross-validation needs the data in memory, and this source is streamed "
            "(over 1 GiB, or data.stream: true); set data.stream: false if it fits in memory"
        )
    return True


def _data_name(config) -> str:
    data = config.data
    path = getattr(data, "path", None)
    if isinstance(path, list):
        path = ", ".join(path)
    return path or getattr(data, "y", None) or f"{data.source} {getattr(data, 'name', '')}".strip()


def _fingerprint_of(raw: RawData) -> str:
    # A source's own split rows and split ids count too: an image run of a version that split by scikit-learn is
    # not resumed on another split of the same pixels, and a renamed file (or key) moves rows between splits.
    own = [raw.split.test] if raw.split is not None else []
    ids = [raw.split_ids] if raw.split_ids is not None else []
    weights = [raw.sample_weight] if raw.sample_weight is not None else []  # other weights: another run
    return fingerprint(raw.x, raw.y, raw.x_test, raw.y_test, *own, *ids, *weights)


def fingerprint(*arrays) -> str:
    """A short sha256 of the arrays' shapes, dtypes and bytes: the same data gives the same fingerprint."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.asarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        if array.dtype == object:
            digest.update("\x00".join(map(str, array.ravel().tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]
