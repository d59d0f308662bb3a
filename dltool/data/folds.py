"""k-fold cross-validation splits (``data.fold``): which rows are a fold's test split, by scikit-learn's splitters.

A classifier's folds are stratified (StratifiedKFold), a regression's are not (KFold); with a group column the
rows of a group stay in one fold (StratifiedGroupKFold, GroupKFold). Every splitter shuffles with the fold seed
plus the repeat less one, so repeat 1 of seed 42 is StratifiedKFold(shuffle=True, random_state=42) and each
repeat is another reshuffle, as RepeatedStratifiedKFold does. The folds partition the source's labelled data:
a source with a builtin test split is cut over its training split and the builtin test split is left out, so
cross-validation never sees the data a final model is judged on.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from ..errors import DataError
from .sources import RawData, SplitRows


def splitter(folds: int, *, seed: int, stratified: bool, grouped: bool):
    """The scikit-learn splitter for ``folds`` shuffled folds (its random_state: ``seed``)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    kind = {
        (True, True): StratifiedGroupKFold,
        (True, False): StratifiedKFold,
        (False, True): GroupKFold,
        (False, False): KFold,
    }[(stratified, grouped)]
    return kind(n_splits=folds, shuffle=True, random_state=seed)


def fold_indices(
    y: np.ndarray,
    *,
    folds: int,
    number: int,
    repeat: int = 1,
    seed: int = 0,
    stratified: bool = False,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(training rows, test rows, warnings) of fold ``number`` (from 1) of ``folds`` in repeat ``repeat`` (from 1).

    Raises DataError when the data cannot be cut into ``folds`` folds (fewer rows, groups or members of every
    class than folds); scikit-learn's warnings (a class with fewer members than folds) are returned.
    """
    if not 1 <= number <= folds:
        raise DataError(f"fold {number} does not exist: expected a fold from 1 to {folds}")
    labels = y if stratified else None
    cutter = splitter(folds, seed=(seed + repeat - 1) % 2**32, stratified=stratified, grouped=groups is not None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            splits = cutter.split(np.zeros(len(y)), labels, groups)
            train, test = next(itertools.islice(splits, number - 1, None))
        except ValueError as exc:
            of = f"{len(np.unique(groups))} groups" if groups is not None else f"{len(y)} rows"
            raise DataError(f"cannot cut {of} into {folds} folds: {exc}; use fewer folds (--folds)") from None
    return train, test, [str(w.message) for w in caught]


def _stratify_labels(y: np.ndarray) -> np.ndarray | None:
    """The class of each row for stratifying: labels as they are, a one-hot row's column; None for other 2-D."""
    if y.ndim == 1:
        return np.asarray([str(v) for v in y]) if y.dtype == object else y
    if y.ndim == 2 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return np.argmax(y, axis=1)
    return None


def fold_rows(config, raw: RawData) -> SplitRows:
    """The rows of ``raw`` (a source's training split, its builtin test split left out) in each split of the
    fold ``config.data.fold``; the validation split is left to the caller (drawn from the training rows)."""
    data = config.data
    fold = data.fold
    seed = fold.seed if fold.seed is not None else data.split_seed if data.split_seed is not None else config.seed
    labels = _stratify_labels(np.asarray(raw.y)) if config.is_classifier else None
    groups = raw.split_ids if fold.group is not None else None
    train, test, notes = fold_indices(
        labels if labels is not None else np.asarray(raw.y),
        folds=fold.of,
        number=fold.number,
        repeat=fold.repeat,
        seed=seed,
        stratified=labels is not None,
        groups=groups,
    )
    raw.warnings.extend(f"data.fold: {note}" for note in notes)
    how = ("stratified, " if labels is not None else "") + (f"grouped by {fold.group}, " if groups is not None else "")
    left_out = ", builtin test split left out" if raw.x_test is not None else ""
    return SplitRows(
        train=train,
        validation=None,
        test=test,
        description=f"fold {fold.number} of {fold.of}, repeat {fold.repeat} ({how}seed {seed}{left_out})",
    )


def source_config(data_config):
    """The data config a source is loaded with: with a fold group, the group column is read as the split key
    (each row's split id is a hash of its group's text, so equal ids are one group, and the column is no
    feature)."""
    fold = getattr(data_config, "fold", None)
    if fold is None or fold.group is None:
        return data_config
    return data_config.model_copy(update={"split_key": fold.group})
