"""One interface for training data, whatever its source: arrays in memory, or files read batch by batch.

Keras's data adapters are the model (``keras/src/trainers/data_adapters``): one class per kind of input behind a
single base, so that train, resume, evaluate, export, smoke and several processes never ask which kind they
hold. :class:`~dltool.data.splits.ArrayData` holds every split in memory;
:class:`~dltool.data.streaming.StreamedSplits` is the base of the sources read from disk each epoch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import ConfigError
from .preprocessing import Preprocessing

Targets = Callable[[np.ndarray], np.ndarray]  # shapes the labels for the model's loss (see training.fitting)


class TrainingData(ABC):
    """A dataset split into train, validation and test, with what predict needs to repeat its preprocessing.

    Attributes every kind sets: ``preprocessing`` (fitted on the training split), ``fingerprint`` (a short hash
    of the data: the same data gives the same one), ``test_source`` (how the test split was drawn, for the
    log), ``warnings`` (what looks wrong but does not stop training), ``adapted`` (preprocessing layers adapted
    on the training split) and ``left_out`` (samples per split dropped so batches split evenly over devices).
    """

    streamed = False  # True: the splits are read from disk batch by batch, each epoch
    tensorflow_reason: str | None = None  # why these data need TensorFlow (tf.data) on a JAX or torch run
    failure = None  # a DltoolError that stopped a pass over a streamed split (TensorFlow reports it wrapped)
    class_weight = None  # the run's ClassWeights (see .class_weights), set once the classes are known; fit uses it
    resampling = None  # the run's ResamplePlan (see .resampling) once data.resample is applied to the training split
    preprocessing: Preprocessing
    fingerprint: str
    test_source: str

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.adapted: list[str] = []
        self.left_out: dict[str, int] = {}

    @property
    @abstractmethod
    def validation_is_test(self) -> bool:
        """Whether the validation split is the test split (``data.validation: test``)."""

    @property
    @abstractmethod
    def target_width(self) -> int:
        """Values per target: 1 for class labels, k for (n, k) regression targets."""

    def class_counts(self) -> dict | None:
        """Samples per class index in each split: ``{"train": [...], "validation": [...] or None, "test": [...]}``
        (validation: the test split's counts where it is the test split). None for regression targets."""
        return None

    @abstractmethod
    def sizes(self) -> dict:
        """Sample counts of each split and how the test split was drawn, as recorded in run.json."""

    @abstractmethod
    def fit_inputs(self, targets: Targets, batch_size: int, shuffle: bool) -> dict:
        """Keyword arguments for ``model.fit``: the training split (and validation data, if any).

        ``batch_size`` is this process's batch: after :meth:`keep_share`, its share of the global batch.
        """

    @abstractmethod
    def evaluate_inputs(self, targets: Targets, batch_size: int) -> dict:
        """Keyword arguments for ``model.evaluate`` on the test split."""

    @abstractmethod
    def test_chunks(self, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (preprocessed inputs, targets) of the test split in bounded chunks, up to ``limit`` samples."""

    @abstractmethod
    def validation_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (preprocessed inputs, targets) of the whole validation split in bounded chunks (none without one),
        on any process: all of it, also after :meth:`keep_share` (what calibration fits on)."""

    @abstractmethod
    def raw_test_inputs(self, limit: int) -> np.ndarray:
        """Up to ``limit`` test inputs as the source gives them, before preprocessing (what an export takes)."""

    @abstractmethod
    def even_out(self, devices: int, *, test: bool = True) -> dict[str, int]:
        """Make every batch, the last one included, split evenly over ``devices`` (JAX needs it; so
        does TensorFlow's MirroredStrategy for a split that is one batch).

        Leaves out fewer than ``devices`` samples per split and records them in ``left_out``; returns them.
        ``test=False`` keeps the test split whole (several processes: process 0 tests alone).
        """

    @abstractmethod
    def keep_share(self, processes: int, process: int, devices: int, batch_size: int) -> str:
        """From now on, training and validation batches are process ``process`` of ``processes``'s share.

        Each global batch of ``batch_size`` gives each process ``batch_size // processes`` rows; ``devices``
        counts every process's devices, and each batch must split evenly over them (see :meth:`even_out`). The
        test split stays whole. Returns a phrase for the run log ("100 training samples per process").
        """

    def resample(self, plan) -> None:
        """Repeat or drop training rows by class as ``plan`` (a :class:`~dltool.data.resampling.ResamplePlan`)
        says, from now on; validation and test stay as they are. Called once, before :meth:`keep_share`."""
        raise ConfigError(
            f"these data ({type(self).__name__}) cannot be resampled; remove data.resample", path="data.resample"
        )

    def start_epoch(self, epoch: int) -> None:
        """Training epoch ``epoch`` (counted from 1) starts. A streamed split shuffles its files with (seed, epoch),
        so a resumed run repeats the epochs it missed as the uninterrupted run would have; in memory, Keras
        shuffles and nothing is needed."""
        return None

    def take_notes(self) -> list[str]:
        """What the run log should say about the data since the last call (a cache built or reused, unreadable
        files left out), oldest first; each note is given once."""
        return []

    def training_arrays(self, needed_by: str, path: str) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of the whole training split in memory, for ``needed_by`` (adapting layers, target
        scaling); a streamed dataset has none, which is a ConfigError at ``path``."""
        raise ConfigError(
            f"{needed_by} need(s) the training split in memory, but data.stream reads it from disk batch by "
            "batch; set data.stream: false (with enough memory) or remove it",
            path=path,
        )


def shard_for_process(array: np.ndarray, batch_size: int, processes: int, process: int) -> np.ndarray:
    """This process's part of every global batch of ``array``: batch k's rows [k*B + p*B/N, k*B + (p+1)*B/N).

    ``len(array)`` must be a multiple of ``processes`` (the last, shorter batch splits evenly too). Without
    shuffling, the N processes' batches put together are exactly one process's batches.
    """
    starts = np.arange(0, len(array), batch_size)
    sizes = np.minimum(batch_size, len(array) - starts) // processes
    rows = np.concatenate([start + process * size + np.arange(size) for start, size in zip(starts, sizes)])
    return array[rows]
