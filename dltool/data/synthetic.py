"""The ``synthetic`` source: generated regression data, reproducible from a seed."""

from __future__ import annotations

import numpy as np

from .sources import RawData


def load(config, seed: int, **_) -> RawData:
    """Generate ``n_samples`` rows: linear (y = x·w + b + noise, x ~ U(0, 1)) or sklearn make_regression."""
    seed = config.seed if config.seed is not None else seed
    names = [f"x{i}" for i in range(config.n_features)]
    if config.generator == "regression":
        from sklearn.datasets import make_regression

        x, y = make_regression(
            n_samples=config.n_samples,
            n_features=config.n_features,
            noise=config.noise.std,
            bias=config.bias,
            random_state=seed,
        )
        return RawData(x=x, y=y.reshape(-1, 1), feature_names=names)
    # The legacy RandomState and this draw order reproduce `np.random.seed(s); X = np.random.rand(n, f)`
    # followed by the noise draw, as hand-written scripts do.
    rng = np.random.RandomState(seed)
    x = rng.rand(config.n_samples, config.n_features)
    weights = np.broadcast_to(np.asarray(config.weights, dtype=np.float64), (config.n_features,))
    if config.noise.distribution == "uniform":
        noise = config.noise.low + (config.noise.high - config.noise.low) * rng.rand(config.n_samples, 1)
    else:
        noise = config.noise.std * rng.randn(config.n_samples, 1)
    y = x @ weights.reshape(-1, 1) + config.bias + noise
    return RawData(x=x, y=y, feature_names=names)
