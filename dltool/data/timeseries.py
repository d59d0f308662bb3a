"""The ``timeseries`` source: windows of a CSV series, each with the value(s) ``horizon`` steps after it.

Sample i holds rows [i*stride, i*stride + window) of the feature columns; its
target is the target column(s) at row i*stride + window - 1 + horizon. This is
what ``keras.utils.timeseries_dataset_from_array`` yields, built here as one
NumPy array so the run's splits, preprocessing and predict share it. Splits
are taken in time order (see :mod:`dltool.data.splits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError
from .csv_source import iter_csv_chunks, open_csv, require_columns
from .sources import RawData, require_data_file


def window_count(steps: int, window: int, horizon: int = 1, stride: int = 1) -> int:
    """How many (window, target) samples a series of ``steps`` rows gives."""
    span = window + horizon  # rows one sample covers, its target included
    return 0 if steps < span else (steps - span) // stride + 1


def make_windows(series: np.ndarray, window: int, stride: int = 1, count: int | None = None) -> np.ndarray:
    """The first ``count`` windows of ``series`` (steps, features) as an array (count, window, features)."""
    views = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)[::stride]  # (n, features, window)
    if count is not None:
        views = views[:count]
    return np.ascontiguousarray(views.transpose(0, 2, 1))


def window_targets(targets: np.ndarray, window: int, horizon: int, stride: int, count: int) -> np.ndarray:
    """The target rows that belong to the first ``count`` windows."""
    first = window - 1 + horizon
    return targets[first : first + (count - 1) * stride + 1 : stride]


def read_series(path: str | Path, columns: list[str], delimiter: str = ",", error=DataError) -> np.ndarray:
    """The chosen numeric columns of a CSV as float64 (steps, columns), in file order."""
    chunks = [x for _, x in iter_csv_chunks(path, columns, 65536, delimiter, error)]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(columns)))


def _overlapping_chunks(
    path: Path, columns: list[str], overlap: int, chunk: int, error=DataError
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (data row of its first row, rows): the CSV's ``columns`` in chunks, each after the first led by
    the previous chunk's last ``overlap`` rows, so a window spanning two chunks is whole in the later one.
    """
    carry = np.zeros((0, len(columns)))
    seen = 0
    for _, rows in iter_csv_chunks(path, columns, max(chunk, overlap + 1), error=error):
        series = np.concatenate([carry, rows])
        yield seen - len(carry), series
        carry = series[max(0, len(series) - overlap) :]
        seen += len(rows)


def iter_window_chunks(
    path: Path, columns: list[str], window: int, chunk: int, error=DataError
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (row of each window's last step, first chunk) with every window of ``window`` consecutive rows.

    Reads the CSV in chunks and carries the last ``window - 1`` rows over, so a
    long file needs bounded memory. Row numbers are data rows counted from 0.
    """
    steps = 0
    for start, series in _overlapping_chunks(path, columns, window - 1, chunk, error):
        steps = start + len(series)
        if len(series) >= window:
            windows = make_windows(series, window)
            for first in range(0, len(windows), chunk):
                yield start + window - 1 + first, windows[first : first + chunk]
    if steps < window:
        raise error(f"{path}: expected at least {window} rows (one window of the model), received {steps}")


def iter_labelled_windows(
    path: Path, features: list[str], targets: list[str], window: int, horizon: int, chunk: int, error=DataError
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (windows of ``features``, their ``targets`` rows) in chunks: series_windows in bounded memory."""
    columns = list(dict.fromkeys(features + targets))
    inputs, outputs = [columns.index(f) for f in features], [columns.index(t) for t in targets]
    steps = 0
    for start, series in _overlapping_chunks(path, columns, window + horizon - 1, chunk, error):
        steps = start + len(series)
        count = window_count(len(series), window, horizon)
        if not count:
            continue
        x = make_windows(series[:, inputs], window, 1, count)
        y = window_targets(series[:, outputs], window, horizon, 1, count)
        for first in range(0, count, chunk):
            yield x[first : first + chunk], y[first : first + chunk]
    if steps < window + horizon:
        raise error(
            f"{path}: {steps} rows give no window of {window} steps with a target {horizon} "
            f"step(s) ahead; expected at least {window + horizon} rows"
        )


def series_windows(
    path: Path,
    features: list[str],
    targets: list[str],
    window: int,
    horizon: int = 1,
    stride: int = 1,
    delimiter: str = ",",
    error=DataError,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(windows of ``features``, their ``targets`` rows, rows in the file) of a CSV series, in time order."""
    columns = list(dict.fromkeys(features + targets))
    series = read_series(path, columns, delimiter, error)
    count = window_count(len(series), window, horizon, stride)
    x = make_windows(series[:, [columns.index(f) for f in features]], window, stride, count)
    y = window_targets(series[:, [columns.index(t) for t in targets]], window, horizon, stride, count)
    return x, y, len(series)


def load(config, **_) -> RawData:
    """Windows of the feature columns as x (n, window, features), the target column(s) as y, in time order."""
    path = Path(config.path)
    require_data_file(path, expected="a CSV file with one row per time step")
    features = config.features or list(config.target)
    handle, _, header = open_csv(path, config.delimiter)
    handle.close()
    require_columns(header, config.target, path, keys={name: "data.target" for name in config.target})
    require_columns(header, features, path, keys={name: "data.features" for name in features})
    x, y, steps = series_windows(
        path, features, list(config.target), config.window, config.horizon, config.stride, config.delimiter
    )
    if len(x) < 2:
        raise DataError(
            f"{path}: {steps} rows give {len(x)} window(s) of {config.window} steps with a target "
            f"{config.horizon} step(s) ahead; expected many more rows, or a shorter data.window"
        )
    return RawData(x=x, y=y[:, 0] if y.shape[1] == 1 else y, feature_names=features)


def preprocessing_kind(config) -> dict:
    """Preprocessing's kind and extra for a time-series config: predict cuts new series into the same windows."""
    return {
        "kind": "timeseries",
        "extra": {"timeseries": {"window": config.window, "horizon": config.horizon, "stride": config.stride}},
    }
