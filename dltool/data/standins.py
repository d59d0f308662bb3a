"""Stand-in data for smoke runs: whether a config's data is at hand, and random files of the shapes it declares.

`dltool smoke --fake-data` gives each config random data of the shapes, dtypes
and classes it declares, written as the files its source reads (a Keras-layout
.npz, a CSV, Parquet files, class folders of PNGs, ...), so that source's own loader, the
splits and the preprocessing run as they would on the real data. Sources that
need neither a file nor a download (sklearn, synthetic) keep their own data.
"""

from __future__ import annotations

import glob as globbing
import json
import math
import os
from pathlib import Path

import numpy as np

from ..config import layer_name_and_args
from .table_files import import_pyarrow, is_pattern

# keras.datasets: (sample shape, dtype, classes (None: regression), what the Keras cache holds once downloaded)
KERAS_LAYOUTS = {
    "mnist": ((28, 28), np.uint8, 10, ["mnist.npz"]),
    "fashion_mnist": ((28, 28), np.uint8, 10, ["fashion-mnist"]),
    "cifar10": ((32, 32, 3), np.uint8, 10, ["cifar-10-batches-py"]),
    "cifar100": ((32, 32, 3), np.uint8, 100, ["cifar-100-python"]),
    "boston_housing": ((13,), np.float64, None, ["boston_housing.npz"]),
}
IMDB_CACHE = ["imdb.npz", "imdb_word_index.json"]
FILE_KEYS = ("path", "x", "y")  # data keys that name files
TEST_SHARE = 4  # a stand-in's test split has a quarter as many samples as its training split (at least MIN_TEST)
MIN_TEST = 8
MAX_IMAGES = 160  # stand-in PNGs written per images config: decoding them is most of such a smoke run
WORDS = (
    "the a film movie plot actor scene story great awful fun boring loved hated music slow fast brilliant dull "
    "funny sad long short ending start character director script camera light dark good bad"
).split()


def keras_cache() -> Path:
    """Where keras.datasets keeps its downloads: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def missing_data(config) -> str | None:
    """Why this config's data is not at hand (a download not in the Keras cache, a file that is missing), or None."""
    data = config.data
    if data.source == "keras" and not data.path:
        if not all((keras_cache() / name).exists() for name in KERAS_LAYOUTS[data.name][3]):
            return (
                f"keras dataset '{data.name}' needs a download (not in {keras_cache()}); set data.path to a "
                "local copy, or use --fake-data"
            )
    if data.source == "text" and data.dataset == "imdb":
        if not all((keras_cache() / name).exists() for name in IMDB_CACHE):
            return f"keras dataset 'imdb' needs a download (not in {keras_cache()}); use --fake-data"
    for key in FILE_KEYS:
        value = getattr(data, key, None)
        for entry in [value] if isinstance(value, str) else (value if isinstance(value, list) else []):
            found = (
                globbing.glob(str(Path(entry).expanduser())) if is_pattern(entry) else Path(entry).expanduser().exists()
            )
            if not found:
                return f"data.{key}: {entry} {'matches no file' if is_pattern(entry) else 'not found'}; use --fake-data"
    return None


def _last_layer_units(config) -> int | None:
    name, args = layer_name_and_args(config.model.layers[-1])
    units = args.get("units")
    return int(units) if isinstance(units, int) and not isinstance(units, bool) else None


def class_count(config) -> int:
    """How many classes a classifier's last layer is built for (a single sigmoid output: 2)."""
    units = _last_layer_units(config)
    if getattr(config.data, "classes", None):
        return len(config.data.classes)
    return 2 if units in (None, 1) else units


def _labels(config, count: int, rng) -> np.ndarray:
    """Class indices that use every class (classifiers), or float targets of the model's output width."""
    if config.is_classifier:
        return rng.permutation(np.arange(count) % class_count(config))
    width = _last_layer_units(config) or 1
    return rng.normal(size=(count, width)) if width > 1 else rng.normal(size=count)


def _sizes(samples: int) -> tuple[int, int]:
    """(training, test) sample counts of a stand-in: enough for ``samples`` after a held-out fraction."""
    test = max(MIN_TEST, samples // TEST_SHARE)
    return samples + test, test


def _set(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: a quoted path survives spaces and colons


def write_stand_in(config, folder: Path, samples: int, seed: int = 0) -> list[str]:
    """Write random data shaped as ``config`` declares into ``folder``; return the ``--set`` overrides that use it.

    About ``samples`` training samples plus a test split of a quarter as many.
    Returns [] for sources that need no stand-in (sklearn, synthetic).
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = config.data
    total, test = _sizes(samples)
    writer = _WRITERS.get(data.source)
    return [] if writer is None else writer(config, folder, total, test, rng)


def _keras(config, folder, total, test, rng) -> list[str]:
    shape, dtype, classes, _ = KERAS_LAYOUTS[config.data.name]

    def inputs(count):
        if dtype == np.uint8:
            return rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        return rng.uniform(0, 100, (count, *shape))

    def targets(count):
        return rng.permutation(np.arange(count) % classes).astype(np.uint8) if classes else rng.uniform(5, 50, count)

    path = folder / f"{config.data.name}.npz"
    np.savez(
        path, x_train=inputs(total - test), y_train=targets(total - test), x_test=inputs(test), y_test=targets(test)
    )
    return [_set("data.path", str(path))]


def _arrays(config, count, rng) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(count, *config.model.input_shape)).astype(np.float32), _labels(config, count, rng)


def _npz(config, folder, total, test, rng) -> list[str]:
    (x, y), (x_test, y_test) = _arrays(config, total - test, rng), _arrays(config, test, rng)
    path = folder / "stand-in.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    return [_set("data.path", str(path))]


def _npy(config, folder, total, test, rng) -> list[str]:
    x, y = _arrays(config, total, rng)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return [_set("data.x", str(folder / "x.npy")), _set("data.y", str(folder / "y.npy"))]


def _label_texts(config, count, rng) -> list[str]:
    labels = _labels(config, count, rng)
    if config.is_classifier:
        return [f"class_{label}" for label in labels]
    return [f"{value:.6g}" for value in labels.reshape(count, -1)[:, 0]]


def _write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _csv(config, folder, total, test, rng) -> list[str]:
    data = config.data
    features = data.features or [f"x{i}" for i in range(math.prod(config.model.input_shape))]
    values = rng.normal(size=(total, len(features)))
    labels = _label_texts(config, total, rng)
    ids = _id_columns(data, features)  # excluded columns, the split key and the sample weight: row numbers
    path = folder / "stand-in.csv"
    _write_csv(
        path,
        features + ids + [data.target],
        [
            [f"{v:.6g}" for v in row] + [str(n)] * len(ids) + [label]
            for n, (row, label) in enumerate(zip(values, labels, strict=True))
        ],
        data.delimiter,
    )
    return [_set("data.path", str(path))]


def _id_columns(data, features: list[str]) -> list[str]:
    names = [*data.exclude, *([data.split_key] if data.split_key else [])]
    names += [data.sample_weight] if getattr(data, "sample_weight", None) else []  # row numbers weigh >= 0, not all 0
    return [name for name in dict.fromkeys(names) if name not in features]


def _parquet(config, folder, total, test, rng) -> list[str]:
    """Two Parquet files (as a glob reads them), with the features as float32, the labels as strings (or
    float targets), and the split key, sample weight and excluded columns as integers."""
    pa = import_pyarrow("a Parquet stand-in (--fake-data)")
    data = config.data
    features = data.features or [f"x{i}" for i in range(math.prod(config.model.input_shape))]
    values = rng.normal(size=(total, len(features))).astype(np.float32)
    labels = _labels(config, total, rng)
    target = [f"class_{label}" for label in labels] if config.is_classifier else labels.reshape(total, -1)[:, 0]
    columns = {name: values[:, j] for j, name in enumerate(features)}
    columns.update({name: np.arange(total) for name in _id_columns(data, features)})
    columns[data.target] = target
    table = pa.table(columns)
    half = total // 2
    pa.parquet.write_table(table.slice(0, half), folder / "stand-in-0.parquet")
    pa.parquet.write_table(table.slice(half), folder / "stand-in-1.parquet")
    return [_set("data.path", str(folder / "stand-in-*.parquet"))]


def _text(config, folder, total, test, rng) -> list[str]:
    data = config.data
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 30)))) for _ in range(total)]
    path = folder / "stand-in.csv"
    _write_csv(
        path,
        [data.text, data.target],
        [[t, label] for t, label in zip(texts, _label_texts(config, total, rng), strict=True)],
        data.delimiter,
    )
    return [_set("data.dataset", None), _set("data.path", str(path))]


def _timeseries(config, folder, total, test, rng) -> list[str]:
    data = config.data
    columns = list(dict.fromkeys((data.features or []) + list(data.target)))
    steps = total * data.stride + data.window + data.horizon
    step = np.arange(steps)[:, None]
    series = np.sin(step / 7.0 + rng.uniform(0, 6, len(columns))) + rng.normal(0, 0.1, (steps, len(columns)))
    path = folder / "stand-in.csv"
    _write_csv(path, columns, [[f"{v:.5g}" for v in row] for row in series], data.delimiter)
    return [_set("data.path", str(path))]


def _images(config, folder, total, test, rng) -> list[str]:
    from PIL import Image

    data = config.data
    names = data.classes or [f"class_{i}" for i in range(class_count(config))]
    height, width = data.image_size
    count = max(len(names) * 2, min(total, MAX_IMAGES))
    root = folder / "images"
    for index in range(count):
        target = root / names[index % len(names)]
        target.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(target / f"{index:04d}.png")
    return [_set("data.path", str(root))]


_WRITERS = {
    "keras": _keras,
    "npz": _npz,
    "npy": _npy,
    "csv": _csv,
    "parquet": _parquet,
    "text": _text,
    "timeseries": _timeseries,
    "images": _images,
}
