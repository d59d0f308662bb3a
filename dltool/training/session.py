"""The Keras session a run trains in: its backend, dtype policy, seeds and determinism."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from ..backend import device_count
from ..config import ExperimentConfig
from ..distributed import LOCAL, ProcessGroup
from ..errors import ConfigError


def fresh_session(seed: int, deterministic: bool, precision: str = "float32") -> None:
    """A clean Keras session (fresh layer names dense, dense_1, ... and memory for every run), seeded, with the
    run's dtype policy (process-wide in Keras: set for every run, so one run's policy never leaks into the next)."""
    import keras

    from ..backend import set_determinism, set_random_seed

    keras.backend.clear_session()
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)  # a global in Keras: one run's devices never reach the next
    set_random_seed(seed)
    keras.config.set_dtype_policy(precision)
    set_determinism(deterministic)


def check_precision(config: ExperimentConfig) -> None:
    """Refuse a precision this machine cannot use well (mixed_float16 without a GPU)."""
    from ..backend import gpu_names

    if config.train.precision == "mixed_float16" and not gpu_names():
        raise ConfigError(
            "mixed_float16 needs a GPU, and none is visible: on a CPU it runs slower than float32 and gains nothing; "
            "use precision: mixed_bfloat16 (CPUs with bfloat16 support) or float32",
            path="train.precision",
        )


def resolve_precision(config: ExperimentConfig) -> tuple[ExperimentConfig, dict | None]:
    """``config`` with ``train.precision: auto`` replaced by what it picks on this machine and backend, and the
    choice for run.json (``{"policy", "asked": "auto", "reason"}``); a config without auto comes back as it is,
    with None."""
    from ..backend import auto_precision

    if config.train.precision != "auto":
        return config, None
    policy, reason = auto_precision(config.train.devices)
    train = config.train.model_copy(update={"precision": policy})
    return config.model_copy(update={"train": train}), {"policy": policy, "asked": "auto", "reason": reason}


def on_running_backend(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with ``backend`` set to the one this process's Keras runs on; a config naming another is refused."""
    from ..backend import running_backend

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
    train = config.train
    # Keras's multi-batch loop fails under tf.distribute.MirroredStrategy, and torch runs one batch per call:
    # there the default steps_per_execution of 32 becomes 1 (an explicit value above 1 was refused at validation).
    one_batch = running == "torch" or (running == "tensorflow" and device_count(train.devices) > 1)
    if one_batch and train.steps_per_execution > 1:
        train = train.model_copy(update={"steps_per_execution": 1})
    return config.model_copy(update={"backend": running, "train": train})


def _device_pool(backend: str) -> tuple[list, str]:
    """The devices several-device training takes from (GPUs if any, else CPUs), and their kind."""
    if backend == "jax":
        import jax

        devices = jax.devices()
        return devices, devices[0].platform
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return (gpus, "gpu") if gpus else (tf.config.list_logical_devices("CPU"), "cpu")


def _named_device(backend: str, name: str):
    kind, index = name.split(":")
    if backend == "jax":
        import jax

        try:
            found = jax.devices(kind)
        except RuntimeError:
            found = []
    else:
        import tensorflow as tf

        found = tf.config.list_logical_devices(kind.upper())
    if int(index) >= len(found):
        raise ConfigError(
            f"device {name} does not exist: this machine has {len(found)} {kind.upper()} device(s) "
            f"for {backend}; `dltool info` lists them",
            path="train.devices",
        )
    return found[int(index)]


def _devices_of_every_process(devices, count: int, group: ProcessGroup) -> list:
    """``train.devices`` applied on each process (``auto``: its first device; N: its first N; a list: those)."""
    import jax

    chosen = []
    for process in range(group.size):
        own = [d for d in jax.devices() if d.process_index == process]
        pool = [d for d in own if d.platform == "gpu"] or own
        if isinstance(devices, list):
            wanted = [int(name.split(":")[1]) for name in devices]
            if max(wanted) >= len(pool):
                raise ConfigError(
                    f"process {process} has {len(pool)} device(s), and train.devices names {devices}",
                    path="train.devices",
                )
            chosen += [pool[i] for i in wanted]
        elif count > len(pool):
            raise ConfigError(
                f"train.devices asks for {count} devices per process, and process {process} has {len(pool)}",
                path="train.devices",
            )
        else:
            chosen += pool[:count]
    return chosen


def training_devices(config: ExperimentConfig, group: ProcessGroup = LOCAL) -> AbstractContextManager:
    """The scope a run's model is built and compiled in, for ``train.devices``.

    One device: the backend's default (``auto``; ``cpu`` hid the GPUs when Keras was imported). Several:
    synchronous data parallel, ``keras.distribution.DataParallel`` on JAX (set here, process-wide, until the
    next run's :func:`fresh_session`) and ``tf.distribute.MirroredStrategy`` on TensorFlow (its scope is
    returned). ``batch_size`` is the global batch, split evenly across the devices. Several processes (``group``,
    default one alone) put the same devices of each of them into one mesh.
    """
    import keras

    from ..backend import gpu_names

    devices, backend = config.train.devices, keras.backend.backend()
    if devices == "gpu" and not gpu_names():
        raise ConfigError(
            "train.devices is gpu, but no GPU is visible (`dltool info` lists the devices)", path="train.devices"
        )
    count = device_count(devices)
    processes = group.size
    if count == 1 and not isinstance(devices, list) and processes == 1:
        return nullcontext()
    if backend == "torch":
        raise ConfigError(
            "several devices need the tensorflow or jax backend; torch trains on one", path="train.devices"
        )
    if processes > 1:  # the same devices on every process; the mesh spans them all
        chosen = _devices_of_every_process(devices, count, group)
    elif isinstance(devices, list):
        chosen = [_named_device(backend, name) for name in devices]
    else:
        pool, kind = _device_pool(backend)
        if count > len(pool):
            raise ConfigError(
                f"train.devices asks for {count} devices, and {backend} sees {len(pool)} {kind.upper()} device(s)",
                path="train.devices",
            )
        chosen = pool[:count]
    if config.train.batch_size % len(chosen):
        raise ConfigError(
            f"batch_size {config.train.batch_size} does not split evenly over {len(chosen)} devices"
            + (f" of {processes} processes; " if processes > 1 else "; ")
            + f"expected a multiple of {len(chosen)}",
            path="train.batch_size",
        )
    if backend == "jax":
        # Several processes each pass their own share of every batch (TrainingData.keep_share): Keras must not
        # shard the data again.
        distribution = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=processes == 1)
        keras.distribution.set_distribution(distribution)
        return nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=[d.name for d in chosen]).scope()
