"""dltool: train Keras 3 models from YAML experiments; every run a self-contained folder.

The public API is imported lazily, so `import dltool` stays fast and
TensorFlow is loaded only by what needs it::

    import dltool
    run = dltool.train("configs/digits_mlp.yaml", ["train.epochs=5"])
    dltool.evaluate(run)
"""

from __future__ import annotations

from ._version import __version__

__all__ = [
    "ConfigError",
    "DltoolError",
    "ExperimentConfig",
    "Run",
    "__version__",
    "evaluate",
    "load_config",
    "predict",
    "train",
]

_LAZY = {
    "train": ("commands.train", "train"),
    "evaluate": ("commands.evaluate", "evaluate"),
    "predict": ("commands.predict", "predict"),
    "load_config": ("config", "load_config"),
    "ExperimentConfig": ("config", "ExperimentConfig"),
    "Run": ("runs", "Run"),
    "DltoolError": ("errors", "DltoolError"),
    "ConfigError": ("errors", "ConfigError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'dltool' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
