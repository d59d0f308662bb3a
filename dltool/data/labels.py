"""Targets: class labels to indices 0..K-1, regression targets to float32."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def flat_labels(y: np.ndarray, where: str) -> np.ndarray:
    """One label per sample: (n, 1) is squeezed and one-hot rows become indices."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and y.shape[1] > 1 and np.issubdtype(y.dtype, np.number) and set(np.unique(y)) <= {0, 1}:
        return y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{where}: expected one class label per sample, received targets of shape {list(y.shape)}")
    return y


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _numeric(values: np.ndarray) -> np.ndarray | None:
    try:
        return values.astype(np.float64)
    except (ValueError, TypeError):
        return None


def encode_labels(labels: list[np.ndarray], source_names: list[str] | None, where: str):
    """Map the labels of every split to indices 0..K-1 with one shared mapping.

    Returns (encoded splits as int32 arrays, class names). Integer labels
    0..K-1 keep their values (and the source's names, when it has them); any
    other labels (strings, 1-based ints) are sorted, numerically where they all
    are numbers, and numbered in that order.
    """
    flat = [flat_labels(y, where) for y in labels]
    everything = np.concatenate(flat)
    numeric = _numeric(everything)
    if numeric is not None and np.all(numeric == np.round(numeric)) and numeric.min() >= 0:
        count = int(numeric.max()) + 1
        present = np.unique(numeric)
        if len(present) == count or (source_names and count <= len(source_names)):
            names = source_names if source_names and len(source_names) >= count else [str(i) for i in range(count)]
            return [_numeric(y).astype(np.int32) for y in flat], list(names)
    if numeric is not None:
        values = np.unique(numeric)
        lookup = {v: i for i, v in enumerate(values)}
        encoded = [np.array([lookup[v] for v in _numeric(y)], dtype=np.int32) for y in flat]
        return encoded, [_label_text(v) for v in values]
    values = sorted({str(v) for v in everything})
    if "" in values:
        raise DataError(f"{where}: a class label is empty; every row needs a label")
    lookup = {v: i for i, v in enumerate(values)}
    return [np.array([lookup[str(v)] for v in y], dtype=np.int32) for y in flat], values


def regression_targets(y: np.ndarray, where: str) -> np.ndarray:
    """Targets as float32 of shape (n, k); a non-numeric value is named."""
    y = np.asarray(y)
    try:
        out = y.astype(np.float32)
    except (ValueError, TypeError):
        bad = next(v for v in y.ravel() if _numeric(np.array([v])) is None)
        raise DataError(
            f"{where}: expected numeric targets for a regression loss, received {str(bad)!r} "
            "(use a classification loss such as sparse_categorical_crossentropy for class labels)"
        ) from None
    if not np.isfinite(out).all():
        raise DataError(f"{where}: targets contain NaN or infinite values")
    return out.reshape(len(out), -1)


def labels_to_indices(y: np.ndarray, class_names: list[str], where: str) -> np.ndarray:
    """Map labels of a new file to the indices of a trained run's ``class_names``.

    A label is matched by its text ('cat', '3'); integers 0..K-1 that are not
    class names are taken as indices. An unknown label is an error naming it.
    """
    flat = flat_labels(y, where)
    lookup = {name: i for i, name in enumerate(class_names)}
    texts = [_label_text(v) for v in flat]
    if all(t in lookup for t in texts):
        return np.array([lookup[t] for t in texts], dtype=np.int32)
    numeric = _numeric(flat)
    if (
        numeric is not None
        and np.all(numeric == np.round(numeric))
        and numeric.min() >= 0
        and numeric.max() < len(class_names)
    ):
        return numeric.astype(np.int32)
    if numeric is not None and np.all(numeric == np.round(numeric)):
        unknown = next(t for t, v in zip(texts, numeric) if t not in lookup and not 0 <= v < len(class_names))
    else:
        unknown = next(t for t in texts if t not in lookup)
    raise DataError(f"{where}: label {unknown!r} is not one of the run's classes ({', '.join(class_names[:20])})")
