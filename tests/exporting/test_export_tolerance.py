"""The tolerance `dltool export` verifies with: numpy.allclose's test, its figures, and --rtol/--atol checks.

No model here (NumPy arrays only): the exports themselves are tested in tests/exporting/test_export.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from dltool.errors import UsageError
from dltool.exporting.verify import Tolerance, compare, tolerance_for

runner = CliRunner()


def test_defaults_are_1e_5_each_and_1e_4_for_recurrent_layers_or_backbones_and_flags_override_one_at_a_time():
    assert tolerance_for(False) == Tolerance(rtol=1e-5, atol=1e-5)
    assert tolerance_for(True) == Tolerance(rtol=1e-4, atol=1e-4)
    assert tolerance_for(True, atol=0) == Tolerance(rtol=1e-4, atol=0.0)
    assert str(tolerance_for(False, rtol=1e-3)) == "rtol 0.001, atol 1e-05"


@pytest.mark.parametrize("flag, value", [("rtol", -1e-6), ("atol", float("nan")), ("rtol", float("inf"))])
def test_a_negative_or_non_finite_figure_is_refused(flag, value):
    with pytest.raises(UsageError) as caught:
        tolerance_for(False, **{flag: value})
    assert str(caught.value).startswith(f"--{flag}: expected a number >= 0 (0 demands equal outputs), received ")
    assert str(caught.value).endswith(
        "the defaults are rtol 1e-05, atol 1e-05 (0.0001 each for recurrent layers and backbones)"
    )


def test_the_allowed_difference_grows_with_the_expected_value_as_numpy_allclose():
    expected = np.array([[0.5], [150.0], [346.0]], dtype=np.float32)
    tolerance = tolerance_for(False)
    ulps = np.spacing(expected) * 2  # two float32 rounding steps, what another summation order gives
    passed = compare(expected + ulps, expected, tolerance, "onnx")
    assert passed.passed and passed.max_abs_diff == pytest.approx(2 * 2**-15)  # 6.1e-5 at 346, as measured
    assert np.allclose(expected + ulps, expected, rtol=1e-5, atol=1e-5)  # the same verdict as NumPy's
    off = expected.copy()
    off[1] += 0.01  # over 1e-5 + 1e-5 * 150 = 1.51e-3
    failed = compare(off, expected, tolerance, "onnx")
    assert not failed.passed and (failed.sample, failed.output) == (1, 0)
    assert failed.allowed == pytest.approx(1.51e-3) and failed.used == pytest.approx(0.01 / 1.51e-3, rel=1e-2)
    assert not np.allclose(off, expected, rtol=1e-5, atol=1e-5)


def test_nan_never_passes_and_a_zero_tolerance_names_the_largest_difference():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    nan = expected.copy()
    nan[1, 0] = np.nan
    found = compare(nan, expected, Tolerance(rtol=1.0, atol=1.0), "litert")
    assert not found.passed and found.max_abs_diff == float("inf") and (found.sample, found.output) == (1, 0)
    exact = compare(expected + [[0, 1e-9], [2e-9, 0]], expected, Tolerance(0.0, 0.0), "onnx")
    assert not exact.passed and (exact.sample, exact.output) == (1, 0)
    assert compare(expected, expected, Tolerance(0.0, 0.0), "onnx").passed


def test_cli_refuses_a_bad_tolerance_with_exit_2_before_looking_for_the_run():
    from dltool.cli.app import app

    result = runner.invoke(app, ["export", "no-such-run", "-f", "onnx", "--atol", "-0.5"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --atol: expected a number >= 0 (0 demands equal outputs), received -0.5")
