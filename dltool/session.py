"""The Keras session a run trains in: its backend, dtype policy, seeds and determinism."""

from __future__ import annotations

from .config import ExperimentConfig
from .errors import ConfigError


def fresh_session(seed: int, deterministic: bool, precision: str = "float32") -> None:
    """A clean Keras session (fresh layer names dense, dense_1, ... and memory for every run), seeded, with the
    run's dtype policy (process-wide in Keras: set for every run, so one run's policy never leaks into the next)."""
    import keras

    from .backend import set_determinism

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy(precision)
    set_determinism(deterministic)


def check_precision(config: ExperimentConfig) -> None:
    """Refuse a precision this machine cannot use well (mixed_float16 without a GPU)."""
    from .backend import gpu_names

    if config.train.precision == "mixed_float16" and not gpu_names():
        raise ConfigError(
            "mixed_float16 needs a GPU, and none is visible: on a CPU it runs slower than float32 and gains nothing; "
            "use precision: mixed_bfloat16 (CPUs with bfloat16 support) or float32",
            path="train.precision",
        )


def on_running_backend(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with ``backend`` set to the one this process's Keras runs on; a config naming another is refused."""
    from .backend import running_backend

    running = running_backend()["name"]
    if config.backend not in (None, running):
        raise config.locate(
            ConfigError(
                f"this config trains on backend {config.backend}, but Keras runs on {running} in this process "
                f"(Keras picks its backend once, at import): train it with `dltool train`, or set "
                f"KERAS_BACKEND={config.backend} before Python imports keras",
                path="backend",
            )
        )
    return config.model_copy(update={"backend": running})
