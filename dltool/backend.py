"""The TensorFlow-specific corner: log silencing, versions, device. Everything else uses ``keras``."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .config.schema import device_count

STOP_POLL_SECONDS = 0.05  # how often a stop request is looked for while TensorFlow runs


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide TensorFlow's C++ and absl log noise unless ``verbose`` (must run before TF is imported)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")  # absl's "All log messages before InitializeLog" line
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


BACKENDS = {  # Keras backend -> (the module that must be importable, dltool's extra that installs it)
    "tensorflow": ("tensorflow", None),  # a dependency of dltool itself
    "jax": ("jax", "jax"),
    "torch": ("torch", "torch"),
}


def backend_install_hint(name: str) -> str:
    """The pip command that installs backend ``name`` for the running dltool (how it was installed decides)."""
    from .installation import pip_install

    module, extra = BACKENDS[name]
    if extra is None:
        return f"{pip_install()}  (TensorFlow is a dependency of dltool)"
    return f"{pip_install(extra)}  (or: pip install {module})"


def select_backend(name: str | None) -> str:
    """Make ``name`` (default: KERAS_BACKEND, else tensorflow) the Keras backend of this process; return it.

    Keras reads its backend once, when it is first imported, so this must run before that. A backend that
    is not installed, or a process whose Keras already runs on another one, is an exit-2 error.
    """
    import importlib.util
    import sys

    from .errors import UsageError

    name = name or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        raise UsageError(f"unknown backend '{name}'; expected one of {', '.join(BACKENDS)}")
    module, _ = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"backend {name} is not installed: {backend_install_hint(name)}")
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise UsageError(
                f"backend {name} was asked for, but Keras already runs on {running} in this process (Keras picks "
                f"its backend once, at import); run it in a process of its own: KERAS_BACKEND={name} or "
                f"`backend: {name}` in the config"
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    if name == "jax":  # JAX takes the whole GPU's memory at start-up unless told not to; TF shares the process
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return name


def running_backend() -> dict:
    """The Keras backend this process runs on, with its version: {"name": "jax", "version": "0.10.2"}."""
    import importlib.metadata

    import keras

    name = keras.backend.backend()
    package = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(name, name)
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"name": name, "version": version}


def versions() -> dict:
    """Versions of everything that shapes a result (the Keras backend and its version included)."""
    import importlib.metadata

    import keras
    import numpy

    from ._version import __version__

    backend = running_backend()
    try:  # read from the installed package: a JAX or torch run never imports TensorFlow for it
        tensorflow_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow_version = None
    return {
        "dltool": __version__,
        "keras": keras.__version__,
        "backend": backend["name"],
        **({backend["name"]: backend["version"]} if backend["name"] != "tensorflow" else {}),
        "tensorflow": tensorflow_version,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def gpu_names() -> list[str]:
    """Names of the GPUs the running Keras backend sees (empty on a CPU-only machine)."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]


BFLOAT16_CPU_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}  # /proc/cpuinfo's names, and ours
BFLOAT16_GPU_CAPABILITY = (8, 0)  # NVIDIA Ampere and newer compute bfloat16 on their tensor cores


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux's /proc/cpuinfo names them (empty where there is no such file)."""
    return set(_cpuinfo_field("flags").split())


def _cpuinfo_field(name: str) -> str:
    """The first CPU's ``name`` line of Linux's /proc/cpuinfo ('flags', 'model name'); empty where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def gpu_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability of each GPU the running Keras backend sees, in its order (empty: none)."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jax

        found = []
        for device in jax.devices():
            capability = getattr(device, "compute_capability", None) if device.platform == "gpu" else None
            if capability:
                major, minor = str(capability).split(".")[:2]
                found.append((int(major), int(minor)))
        return found
    if name == "torch":
        import torch

        return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def choose_precision(backend: str, flags: set[str], capabilities: list[tuple[int, int]]) -> tuple[str, str]:
    """What ``train.precision: auto`` becomes, and why: mixed_bfloat16 where the training device computes
    bfloat16 natively (an NVIDIA GPU of compute capability 8.0 or newer; a CPU with AVX512-BF16 or AMX, on
    TensorFlow or torch, whose oneDNN kernels use them), else float32. ``capabilities``: the GPUs training uses
    (empty: it trains on the CPU)."""
    if capabilities:
        major, minor = capabilities[0]
        if (major, minor) >= BFLOAT16_GPU_CAPABILITY:
            return "mixed_bfloat16", f"the GPU (compute capability {major}.{minor}) computes bfloat16 natively"
        return "float32", (
            f"the GPU's compute capability {major}.{minor} is under 8.0: no native bfloat16 (mixed_float16 may pay "
            "there; auto does not choose it)"
        )
    found = [name for flag, name in BFLOAT16_CPU_FLAGS.items() if flag in flags]
    if not found:
        return "float32", "the CPU has no bfloat16 instructions (AVX512-BF16 or AMX)"
    if backend == "jax":
        return "float32", (
            f"the CPU has {' and '.join(found)}, but XLA's CPU backend does not use them: a convnet in "
            "mixed_bfloat16 fitted 1.3x slower than in float32 on JAX (docs/speed.md)"
        )
    return "mixed_bfloat16", f"the CPU has {' and '.join(found)}, which {backend}'s CPU kernels (oneDNN) use"


def auto_precision(devices="auto") -> tuple[str, str]:
    """:func:`choose_precision` for this machine and the running Keras backend; ``devices`` (``train.devices``)
    says whether training uses the GPUs."""
    import keras

    capabilities = [] if devices == "cpu" else gpu_capabilities()
    return choose_precision(keras.backend.backend(), cpu_flags(), capabilities)


def device_description() -> str:
    """'GPU: <name>' for the first GPU the Keras backend sees, else 'CPU (<n> cores)'."""
    gpus = gpu_names()
    if gpus:
        return f"GPU: {gpus[0]}" + (f" (+{len(gpus) - 1})" if len(gpus) > 1 else "")
    return f"CPU ({os.cpu_count()} cores)"


def set_determinism(enabled: bool) -> None:
    """Make TensorFlow's ops deterministic, or not, for the runs that follow in this process.

    With the seeds Keras sets, deterministic ops make two runs of a config give identical
    results, at some cost in speed (benchmarks/RESULTS.md). It is a process-wide switch:
    a run that does not ask for it turns it back off (one smoke process trains many configs).
    """
    import sys

    if "tensorflow" not in sys.modules:  # JAX and torch without tf.data: nothing of TensorFlow's runs
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    if enabled:
        tf.config.experimental.enable_op_determinism()
    elif getattr(tf_config, "is_op_determinism_enabled", lambda: False)():
        tf_config.disable_op_determinism()


JAX_CACHE_ENV = "DLTOOL_JAX_CACHE"  # "off", or the folder of JAX's compilation cache


def jax_compilation_cache_folder() -> Path | None:
    """Where JAX keeps the programs it compiled, across runs (None: the cache is off).

    JAX's own ``JAX_COMPILATION_CACHE_DIR`` if set; None without the ``filelock`` package (JAX needs it to bound
    the cache's size); ``$DLTOOL_JAX_CACHE`` (a folder, or ``off``); else
    ``${XDG_CACHE_HOME:-~/.cache}/dltool/jax/<machine>``. ``<machine>`` is a digest of the CPU's model and
    feature flags and of jaxlib's version: a cache folder shared between machines (a home folder on a network
    drive) never hands one of them code compiled for another's instructions (SIGILL), or for another jaxlib.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    if importlib.util.find_spec("filelock") is None:
        # JAX bounds a cache's size only with filelock, and without it warns at every entry it reads back.
        # dltool[jax] installs it; a JAX installed without it runs with the cache off.
        return None
    chosen = os.environ.get(JAX_CACHE_ENV, "")
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "dltool" / "jax" / _machine_digest()


def _machine_digest() -> str:
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    try:
        jaxlib = version("jaxlib")
    except PackageNotFoundError:
        jaxlib = "unknown"
    model, flags = _cpuinfo_field("model name"), " ".join(sorted(cpu_flags()))
    described = "\n".join([platform.machine(), platform.processor(), model, flags, jaxlib])
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _use_jax_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache (see :func:`jax_compilation_cache_folder`) for this process and
    the processes it starts, before JAX is imported.

    A run compiles its train, test and predict steps and its initializers anew in every process: 1.7 s of
    configs/mnist_mlp.yaml's 13 s, and again in every sweep trial. Every program is kept (JAX keeps only those
    that took a second or more by default: here they take 0.1 to 0.4 s each), the folder at most 1 GiB (least
    recently used first out). A folder that cannot be created or written leaves the cache off.
    """
    folder = jax_compilation_cache_folder()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # JAX would warn at every program it cannot read back: the run goes on without the cache
    if not os.access(folder, os.W_OK | os.X_OK):
        return
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(1024**3))


def _before_import(backend: str, devices) -> None:
    """What must be said before a backend starts: JAX's platform, its count of CPU devices, its compilation
    cache."""
    if backend != "jax":
        return
    _use_jax_compilation_cache()
    if devices == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    count = device_count(devices)
    if count > 1:  # on a machine without GPUs, the CPU split into as many devices (harmless where GPUs exist)
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={count}"])


def _after_import(backend: str, devices) -> None:
    """TensorFlow's devices, set before its runtime starts: GPUs hidden where TensorFlow only reads data (or
    ``devices: cpu``), and the CPU split into N logical devices when N are asked for and there is no GPU."""
    import tensorflow as tf

    try:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and (backend != "tensorflow" or devices == "cpu"):
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        count = device_count(devices)
        if backend == "tensorflow" and count > 1 and not gpus:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # the runtime already started in this process (a library user): devices stay as they are


_SESSION: dict = {"backend": "tensorflow", "devices": "auto", "verbose": False}
TENSORFLOW_REASONS: list[str] = []  # why a JAX or torch process imported TensorFlow, for the run log


def import_keras(verbose: bool = False, backend: str | None = None, devices="auto"):
    """Import Keras on ``backend`` (see :func:`select_backend`), with the backend's start-up chatter on stderr
    hidden unless ``verbose``. ``devices`` (``train.devices``) sets what must be set before the backend starts
    (see :func:`_before_import`, :func:`_after_import`).

    TensorFlow is imported only on the tensorflow backend; on JAX or torch it comes later, and only where
    tf.data is needed (streamed data, texts), through :func:`import_tensorflow`: it costs seconds and
    hundreds of MB a JAX run on arrays never uses.
    """
    backend = select_backend(backend)
    _SESSION.update(backend=backend, devices=devices, verbose=verbose, tensorflow_ready=False)
    _before_import(backend, devices)
    quiet_tensorflow(verbose)
    with _start_up_chatter_hidden(verbose):
        import keras
    if backend == "tensorflow":
        import_tensorflow()
    else:
        _tensorflow_available_once_imported()
        _freeze_imported_objects()
    return keras


def _tensorflow_available_once_imported() -> None:
    """Keras asks ``tf.available`` (a lazy module's property, which imports TensorFlow to answer) in places where
    only TensorFlow's own objects matter: whether a value is a ``tf.TensorShape`` when a model is saved, for one.
    No such object exists in a process that has not imported TensorFlow, so there the answer is "not available";
    code that uses TensorFlow (TextVectorization, tf.data) still imports it through the same lazy module."""
    import sys

    try:
        from keras.src.utils import module_utils
    except ImportError:
        return
    lazy = module_utils.tensorflow

    class ImportedOnly(type(lazy)):
        @property
        def available(self):
            return "tensorflow" in sys.modules

    if type(lazy).__name__ != "ImportedOnly":
        lazy.__class__ = ImportedOnly


def import_tensorflow(reason: str | None = None):
    """Import TensorFlow (once) quietly, with the devices :func:`import_keras` was told; return the module.

    ``reason`` says why a JAX or torch process needs it (``"tf.data streams data.path"``): it is kept in
    :data:`TENSORFLOW_REASONS` for the run log.
    """
    import sys

    if _SESSION.get("tensorflow_ready"):
        tf = sys.modules["tensorflow"]
    else:  # (on the tensorflow backend, importing Keras imported it already: its devices are still to be set)
        quiet_tensorflow(_SESSION["verbose"])
        with _start_up_chatter_hidden(_SESSION["verbose"]):
            import tensorflow as tf

            # Python-side warnings such as "5 out of the last 6 calls ... triggered tf.function retracing", which
            # `dltool smoke` meets by design (a new model per config), are noise unless asked for with -v.
            if not _SESSION["verbose"]:
                logging.getLogger("tensorflow").setLevel(logging.ERROR)
        _after_import(_SESSION["backend"], _SESSION["devices"])
        _seed_tensorflow(tf)
        _freeze_imported_objects()
        _SESSION["tensorflow_ready"] = True
    if reason and _SESSION["backend"] != "tensorflow" and reason not in TENSORFLOW_REASONS:
        TENSORFLOW_REASONS.append(reason)
    return tf


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow where the process has not (it seeds
    TensorFlow's generator for tf.data's shuffles, and imports TensorFlow to do it): :func:`import_tensorflow`
    seeds it when it comes."""
    import random
    import sys

    import keras

    if "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils
    except ImportError:  # another Keras layout: its own function, TensorFlow and all
        keras.utils.set_random_seed(seed)
        return
    import numpy as np

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _seed_tensorflow(tf) -> None:
    """TensorFlow imported after :func:`set_random_seed`: its generator gets the run's seed as Keras's would."""
    try:
        from keras.src.utils.rng_utils import get_random_seed
    except ImportError:
        return
    seed = get_random_seed()
    if seed is not None:
        tf.random.set_seed(seed)


def tensorflow_note(backend: str) -> str:
    """For the run log's first line: "; TensorFlow imported: WHY" on a JAX or torch run that needed it."""
    import sys

    if backend == "tensorflow" or "tensorflow" not in sys.modules:
        return ""
    return "; TensorFlow imported: " + ("; ".join(TENSORFLOW_REASONS) or "by Keras, for a layer of the model")


@contextmanager
def _start_up_chatter_hidden(verbose: bool) -> Iterator[None]:
    """TensorFlow's and XLA's C++ sides write a few lines straight to file descriptor 2 while they load, before
    any Python setting can silence them: captured, and shown only if the import fails."""
    if verbose:
        yield
        return
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _freeze_imported_objects() -> None:
    """Move what importing Keras and its backend created out of the garbage collector's sight.

    TensorFlow's import leaves a few million long-lived objects, and every full collection rescans them:
    ``keras.backend.clear_session()``, which each run and sweep trial calls, spent 0.2 s in ``gc.collect()``
    doing so. Frozen, they are never collected, which they would not be anyway (module-level state).
    No collection first: it found 5 unreachable objects among them and cost 0.12 s of a JAX run's start-up
    (0.18 s on TensorFlow).
    """
    import gc

    gc.freeze()


@contextmanager
def cancelled_when(should_stop: Callable[[], bool]) -> Iterator[None]:
    """TensorFlow function calls made inside the block abort soon after ``should_stop()`` turns true.

    One call of Keras's train function runs ``steps_per_execution`` batches
    (32 by default: 1 to 2 s for a small CNN on 2 cores, minutes for a large
    model) without coming back to Python, so a stop asked for between two
    calls would wait for the whole group. A helper thread polls
    ``should_stop`` and cancels the running call, which raises
    ``tf.errors.CancelledError`` (see :func:`is_cancellation`); the caller
    must then treat the in-memory weights as lost (a step may be half-applied)
    and keep only what its last checkpoint holds. Without TensorFlow's
    cancellation API (a private module) the block runs as it is.
    """
    import sys

    if "tensorflow" not in sys.modules:  # a JAX or torch call: not cancellable this way; it ends on its own
        yield
        return
    try:
        from tensorflow.python.eager import cancellation
    except ImportError:  # pragma: no cover  (the module has been there since TensorFlow 2.0)
        yield
        return
    manager = cancellation.CancellationManager()
    finished = threading.Event()

    def watch():
        while not finished.wait(STOP_POLL_SECONDS):
            if should_stop():
                manager.start_cancel()
                return

    watcher = threading.Thread(target=watch, name="dltool-stop-watch", daemon=True)
    watcher.start()
    try:
        with cancellation.CancellationManagerContext(manager):
            yield
    finally:
        finished.set()
        watcher.join()


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is TensorFlow's error for a call aborted by :func:`cancelled_when`."""
    import sys

    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(exc, tf.errors.CancelledError)
