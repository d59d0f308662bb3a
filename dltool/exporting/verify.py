"""Comparing an exported model's outputs with the run's model.keras: the figure every export is judged by.

The test is numpy.allclose's, element by element: ``|got - expected| <= atol + rtol * |expected|``, NaN
failing. A fixed absolute tolerance alone fails honest exports of regression models: float32 keeps 24
bits, so an output near 300 is only held to 3e-5, and a runtime that sums in another order is a few of
those steps off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError, VerificationError

# float32's machine epsilon is 1.2e-7: RTOL allows about 80 rounding steps of the output itself, room for a
# few layers summed in another order or with fused multiply-adds, yet a hundred times tighter than any
# difference that changes a prediction. ATOL covers outputs near 0 (probabilities, centred values), where a
# relative figure alone would demand exact equality; it is the absolute figure dltool always used.
RTOL = 1e-5
ATOL = 1e-5
# Recurrent loops sum over every time step in a different order in each runtime, and a pretrained backbone's
# hundred-odd layers each round their sums their own way (MobileNetV3Small's softmax outputs: up to 1.5e-5 apart in
# ONNX Runtime): ten times looser, still far from changing a prediction.
RECURRENT_RTOL = 1e-4
RECURRENT_ATOL = 1e-4
MAX_SAMPLES = 256  # samples compared


@dataclass(frozen=True)
class Tolerance:
    """Outputs pass when ``|got - expected| <= atol + rtol * |expected|`` elementwise (numpy.allclose)."""

    rtol: float
    atol: float

    def allowed(self, expected):
        """The largest difference accepted for each expected value."""
        return self.atol + self.rtol * np.abs(expected)

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


def tolerance_for(loose: bool, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The tolerance an export is held to: ``rtol``/``atol`` where given, else the defaults above (the looser ones
    where ``loose``: models with recurrent layers or a backbone). Raises UsageError for a negative or non-finite
    figure."""
    for flag, value in (("--rtol", rtol), ("--atol", atol)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise UsageError(
                f"{flag}: expected a number >= 0 (0 demands equal outputs), received {value:g}; "
                f"the defaults are rtol {RTOL:g}, atol {ATOL:g} ({RECURRENT_RTOL:g} each for recurrent layers and "
                "backbones)"
            )
    return Tolerance(
        rtol=float(rtol if rtol is not None else RECURRENT_RTOL if loose else RTOL),
        atol=float(atol if atol is not None else RECURRENT_ATOL if loose else ATOL),
    )


@dataclass(frozen=True)
class Comparison:
    """How far an artifact's outputs are from model.keras's, and where the worst element is."""

    max_abs_diff: float  # the largest |got - expected| (inf when an output is NaN in one of them)
    used: float  # the worst element's difference as a fraction of its allowed difference (<= 1 passes)
    sample: int  # where the worst element is: its sample and its index among that sample's outputs
    output: int
    got: float
    expected: float
    allowed: float

    @property
    def passed(self) -> bool:
        return self.used <= 1.0


def compare(got: np.ndarray, expected: np.ndarray, tolerance: Tolerance, fmt: str) -> Comparison:
    """Compare two output arrays of the same samples element by element against ``tolerance``."""
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    if got.shape != expected.shape:
        raise VerificationError(
            f"{fmt}: the exported model gives outputs of shape {list(got.shape)}; model.keras gives "
            f"{list(expected.shape)}"
        )
    if not got.size:
        return Comparison(0.0, 0.0, 0, 0, 0.0, 0.0, tolerance.atol)
    difference = np.abs(got - expected)
    allowed = tolerance.allowed(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(difference == 0, 0.0, difference / allowed)  # x / 0 is inf: any difference fails
    used = np.where(np.isnan(difference), np.inf, used)  # NaN on one side (or both) never passes
    # The worst element: the largest share of its allowed difference, and among equals (every difference is
    # infinitely over a zero tolerance) the largest difference.
    ties = np.where(used == used.max(), np.where(np.isnan(difference), np.inf, difference), -1.0)
    worst = np.unravel_index(int(np.argmax(ties)), used.shape)
    return Comparison(
        max_abs_diff=float("inf") if np.isnan(difference).any() else float(difference.max()),
        used=float(used[worst]),
        sample=int(worst[0]),
        output=int(worst[1]),
        got=float(got[worst]),
        expected=float(expected[worst]),
        allowed=float(allowed[worst]),
    )
