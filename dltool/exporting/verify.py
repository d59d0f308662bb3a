"""Comparing an exported model's outputs with the run's model.keras: the figure every export is judged by."""

from __future__ import annotations

import numpy as np

from ..errors import VerificationError

TOLERANCE = 1e-5  # max abs difference accepted between the artifact's outputs and model.keras's
RECURRENT_TOLERANCE = 1e-4  # recurrent loops sum in a different order in each runtime
MAX_SAMPLES = 256  # samples compared


def tolerance_for(recurrent: bool) -> float:
    """The accepted max abs difference: RECURRENT_TOLERANCE for models with recurrent layers, else TOLERANCE."""
    return RECURRENT_TOLERANCE if recurrent else TOLERANCE


def max_abs_difference(got: np.ndarray, expected: np.ndarray, fmt: str) -> float:
    """The largest absolute difference between two output arrays of the same samples (NaN counts as infinite)."""
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    if got.shape != expected.shape:
        raise VerificationError(
            f"{fmt}: the exported model gives outputs of shape {list(got.shape)}; model.keras gives "
            f"{list(expected.shape)}"
        )
    if not len(got):
        return 0.0
    difference = np.abs(got - expected)
    return float("inf") if np.isnan(difference).any() else float(difference.max())
