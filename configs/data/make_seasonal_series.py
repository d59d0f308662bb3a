"""Write seasonal_series.csv: the series configs/lstm_forecaster.yaml learns to forecast.

A daily series of 2,000 steps: a slow trend, a 60-step cycle, a weekly (7-step)
cycle and Gaussian noise of std 0.5, generated with a fixed seed so the file
is reproducible: python configs/data/make_seasonal_series.py
"""

from pathlib import Path

import numpy as np

STEPS = 2000
NOISE_STD = 0.5


def seasonal_series(steps: int = STEPS, seed: int = 7) -> np.ndarray:
    """The noisy series: 20 + 0.004 t + 5 sin(2πt/60) + 2 sin(2πt/7) + N(0, 0.5²)."""
    t = np.arange(steps)
    rng = np.random.default_rng(seed)
    return (
        20
        + 0.004 * t
        + 5 * np.sin(2 * np.pi * t / 60)
        + 2 * np.sin(2 * np.pi * t / 7)
        + rng.normal(0, NOISE_STD, steps)
    )


if __name__ == "__main__":
    values = seasonal_series()
    lines = ["day,value"] + [f"{day},{value:.3f}" for day, value in enumerate(values)]
    Path(__file__).with_name("seasonal_series.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
