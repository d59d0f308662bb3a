"""The ``text`` source: a CSV with a text column and a label column, or the Keras IMDB reviews as text.

Texts stay raw strings, one per sample (shape (n, 1)): the model's own
TextVectorization layer turns them into tokens, so the saved model takes raw
text at predict time.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .csv_source import open_csv, read_rows, require_columns
from .sources import RawData, require_data_file

# A review can be longer than the csv module's default 128 KiB field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_text_column(
    path: Path, column: str, delimiter: str = ",", error=DataError, label: str | None = None, keys: dict | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """The texts of ``column`` (and labels of ``label``) of a CSV, with the file line of each row.

    ``keys`` ({column: config key}) makes a missing column a ConfigError at that key (see require_columns).
    """
    handle, reader, header = open_csv(path, delimiter, error)
    with handle:
        require_columns(header, [column] + ([label] if label is not None else []), path, error, keys)
        rows, lines = read_rows(reader, path, error)
    text_index = header.index(column)
    label_index = header.index(label) if label is not None else None
    needed = max(text_index, label_index or 0)
    for row, line in zip(rows, lines):
        if len(row) <= needed:
            raise error(f"{path}:{line}: expected at least {needed + 1} fields, received {len(row)}")
    texts = np.array([row[text_index] for row in rows], dtype=object)
    labels = None if label_index is None else np.array([row[label_index].strip() for row in rows], dtype=object)
    return texts, labels, lines


def load(config, **_) -> RawData:
    """Texts as an (n, 1) object array of str, labels as text (mapped to classes later)."""
    if config.dataset == "imdb":
        return _imdb()
    path = Path(config.path)
    require_data_file(path, expected="a CSV file with a text column and a label column")
    if config.text == config.target:
        raise ConfigError(f"the text column and the target column are both '{config.text}'", path="data.target")
    texts, labels, lines = read_text_column(
        path,
        config.text,
        config.delimiter,
        label=config.target,
        keys={config.text: "data.text", config.target: "data.target"},
    )
    if not len(texts):
        raise DataError(f"{path}: no data rows after the header")
    empty = [line for text, line in zip(texts, lines) if not text.strip()]
    if len(empty) == len(texts):
        raise DataError(f"{path}: column '{config.text}' is empty on every row")
    return RawData(x=texts.reshape(-1, 1), y=labels, feature_names=[config.text])


def decode_imdb(sequences, word_index: dict[str, int], index_from: int = 3) -> np.ndarray:
    """Word-index sequences of keras.datasets.imdb back to text (start, padding and unknown markers dropped)."""
    words = {index + index_from: word for word, index in word_index.items()}
    return np.array([[" ".join(words[i] for i in sequence if i in words)] for sequence in sequences], dtype=object)


def _imdb() -> RawData:
    import keras

    try:
        (x, y), (x_test, y_test) = keras.datasets.imdb.load_data()
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as exc:  # noqa: BLE001  (any download/cache failure gets the same advice)
        raise DataError(
            f"could not load keras dataset 'imdb': the download failed ({type(exc).__name__}: {exc}). Without "
            "internet, copy imdb.npz and imdb_word_index.json into ~/.keras/datasets/, or give a CSV with data.path"
        ) from None
    return RawData(
        x=decode_imdb(x, word_index),
        y=np.asarray(y),
        x_test=decode_imdb(x_test, word_index),
        y_test=np.asarray(y_test),
        class_names=["negative", "positive"],
    )


def preprocessing_kind(config) -> dict:
    """Preprocessing's kind for a text config: the model takes raw strings."""
    return {"kind": "text"}
