"""The ``sklearn`` source: scikit-learn's built-in datasets that ship with it (no download)."""

from __future__ import annotations

from .sources import RawData


def load(config, **_) -> RawData:
    """Load iris, digits, wine, breast_cancer or diabetes."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{config.name}")()
    class_names = [str(n) for n in bunch.target_names] if hasattr(bunch, "target_names") else None
    feature_names = [str(n) for n in bunch.feature_names] if hasattr(bunch, "feature_names") else None
    return RawData(x=bunch.data, y=bunch.target, class_names=class_names, feature_names=feature_names)
