"""``data.resample``: the training split's rows repeated (oversample) or dropped (undersample) by class.

A plan is drawn once per run from the training split's class counts and the run's seed, before a process keeps
its share: in memory it becomes an index array over the training rows; a streamed table or image folder repeats
or drops each training row as it is read, by its class and its place among its class's rows, so every epoch and
every process reads the same resampled split (only its shuffle changes with the epoch). Validation and test are
never touched: they are split off first, so a repeated row cannot reach them.

Each class of ``before`` rows that should have ``after`` rows keeps every row ``after // before`` times, and
``after % before`` of its rows, drawn without replacement, once more: with fewer repeats of the same row than
imbalanced-learn's RandomOverSampler, which draws all ``after - before`` extra rows with replacement, and the
same counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, did_you_mean
from .class_weights import SHOWN_CLASSES

OVERSAMPLE, UNDERSAMPLE = "oversample", "undersample"


@dataclass
class ResamplePlan:
    """How many training rows each class has (``before``) and gets (``after``), and which rows are repeated."""

    mode: str  # oversample | undersample
    setting: str | dict  # minority, majority, or {label: factor}
    class_names: list[str]
    before: list[int]
    after: list[int]
    seed: int
    _extra: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # class: rows taken once more

    def __post_init__(self) -> None:
        for index, (have, want) in enumerate(zip(self.before, self.after)):
            extra = want - (want // have) * have if have else 0
            if extra:
                rng = np.random.default_rng([self.seed, index])
                mask = np.zeros(have, dtype=bool)
                mask[rng.choice(have, size=extra, replace=False)] = True
                self._extra[index] = mask

    def repeats(self, labels: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
        """How often each training row of ``labels`` (class indices, in the split's order) is kept: 0, 1 or more.

        ``seen`` (a streamed pass, read chunk by chunk): per class, the rows of that class read before this chunk;
        updated in place. None: ``labels`` is the whole training split.
        """
        labels = np.asarray(labels).ravel()
        seen = np.zeros(len(self.before), dtype=np.int64) if seen is None else seen
        out = np.zeros(len(labels), dtype=np.int64)
        for index in np.unique(labels):
            rows = np.flatnonzero(labels == index)
            have, want = self.before[index], self.after[index]
            place = seen[index] + np.arange(len(rows))
            out[rows] = want // have
            if index in self._extra:
                out[rows] += self._extra[index][place]
            seen[index] += len(rows)
        return out

    def indices(self, labels: np.ndarray) -> np.ndarray:
        """Indices into the training split's ``labels`` giving the resampled split, in the split's order."""
        return np.repeat(np.arange(len(labels)), self.repeats(labels))

    @property
    def size(self) -> int:
        """Training rows after resampling."""
        return int(sum(self.after))

    def record(self) -> dict:
        """What run.json keeps: mode, setting, seed, and the training rows per class before and after."""
        return {
            "mode": self.mode,
            "setting": self.setting if isinstance(self.setting, str) else dict(self.setting),
            "seed": self.seed,
            "before": dict(zip(self.class_names, self.before)),
            "after": dict(zip(self.class_names, self.after)),
        }

    def describe(self) -> str:
        """'oversample minority: 120 -> 200 training samples (benign 100 -> 100, malignant 20 -> 100)', for the log."""
        return describe_record(self.record())


def describe_record(record: dict, limit: int = 10) -> str:
    """A run.json resample record in words, as the run log, the train display and `runs show` give it."""
    setting = record["setting"] if isinstance(record["setting"], str) else "by factor"
    before, after = record["before"], record["after"]
    classes = [f"{name} {before[name]} -> {after[name]}" for name in list(before)[:limit]]
    more = len(before) - limit
    return (
        f"{record['mode']} {setting}: {sum(before.values())} -> {sum(after.values())} training samples ("
        + ", ".join(classes)
        + (f", ... ({more} more)" if more > 0 else "")
        + ")"
    )


def plan_resample(config, class_names: list[str] | None, train_counts: list[int]) -> ResamplePlan | None:
    """``data.resample`` as a plan over the training split's ``train_counts`` (samples per class index), seeded
    with the run's seed; None when the config sets none. An unknown label is a ConfigError with a did-you-mean."""
    resample = getattr(config.data, "resample", None)
    if resample is None:
        return None
    names = list(class_names or [])
    before = [int(n) for n in train_counts]
    present = [n for n in before if n]
    mode = OVERSAMPLE if resample.oversample is not None else UNDERSAMPLE
    setting = resample.oversample if mode == OVERSAMPLE else resample.undersample
    if isinstance(setting, str):  # minority: all up to the largest class; majority: all down to the smallest
        target = max(present) if mode == OVERSAMPLE else min(present)
        after = [target if n else 0 for n in before]
    else:
        _check_labels(setting, names, f"data.resample.{mode}")
        factors = [setting.get(name, 1.0) for name in names]
        # Undersampling never empties a class: at least one of its rows stays.
        after = [max(1, round(n * f)) if n else 0 for n, f in zip(before, factors)]
    return ResamplePlan(mode=mode, setting=setting, class_names=names, before=before, after=after, seed=config.seed)


def _check_labels(setting: dict, names: list[str], key: str) -> None:
    for label in setting:
        if label not in names:
            shown = ", ".join(names[:SHOWN_CLASSES]) + (", ..." if len(names) > SHOWN_CLASSES else "")
            path = f"{key}.{label}" if re.fullmatch(r"[A-Za-z0-9_-]+", label) else key
            raise ConfigError(
                f"unknown class '{label}' (the run's classes: {shown}){did_you_mean(label, names)}", path=path
            )


DOUBLE_CORRECTION = (
    "data.resample and train.class_weight both correct the class balance: class_weight: balanced is counted on the "
    "resampled training split (near 1 for every class after a full rebalance), and weights given by label multiply "
    "on top of the resampling; use one of the two unless you mean both"
)


def resample_training(config, data) -> None:
    """Apply ``data.resample`` to ``data``'s training split (a no-op without it): the plan from the split's class
    counts, the rows repeated or dropped, a warning where train.class_weight corrects the balance as well."""
    if getattr(config.data, "resample", None) is None:
        return
    counts = data.class_counts()
    if counts is None:
        raise ConfigError(
            "data.resample needs the classes of the training split, and these data have none", path="data.resample"
        )
    plan = plan_resample(config, data.preprocessing.class_names, counts["train"])
    data.resample(plan)
    if config.train.class_weight is not None:
        data.warnings.append(DOUBLE_CORRECTION)
