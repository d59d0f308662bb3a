"""`dltool info`'s report: versions, the Keras backend, the devices it sees, XLA, the optional packages."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .backend import auto_precision, running_backend, versions

_IMPORTED = time.perf_counter()

OPTIONAL_PACKAGES = {  # what each extra brings, for `dltool info`
    "jax": "jax",
    "torch": "torch",
    "optuna": "sweep",
    "psycopg2": "sweep (PostgreSQL storage)",
    "onnxruntime": "export",
    "tf2onnx": "export",
    "ai_edge_litert": "export",
    "starlette": "serve",
    "uvicorn": "serve",
    "orjson": "serve",
    "pyarrow": "parquet",
    "keras_hub": "hub",
    "mlflow": "tracking",
}


def installation_report(optional: dict[str, str | None]) -> dict:
    """How dltool was installed, and the pip command that adds the extras whose packages are missing."""
    from .installation import current

    installed = current()
    # psycopg2 is in no extra (pip install psycopg2-binary, for a PostgreSQL sweep storage only)
    missing = sorted({OPTIONAL_PACKAGES[m] for m, version in optional.items() if not version and m != "psycopg2"})
    return {
        "kind": installed.kind,
        "version": installed.version,
        "from": installed.describe(),
        "missing_extras": missing,
        "install_missing": installed.pip_install(*missing) if missing else None,
    }


def process_age() -> float:
    """Seconds since this process started: from /proc on Linux (the interpreter's start included), else since
    dltool was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22
        with open("/proc/uptime", encoding="ascii") as uptime:
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


class PhaseClock:
    """Seconds per phase of a run, in the order they ran: run.json's ``phase_seconds`` (start_up, data, model,
    run_folder, fit, test, save, plots). With ``start_up``, it starts with the process's age, for the first run of a
    process only: a sweep worker's or smoke's later runs start up for free."""

    _first = True

    def __init__(self, start_up: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        if start_up and PhaseClock._first:
            PhaseClock._first = False
            self.seconds["start_up"] = round(process_age(), 3)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the block's seconds to phase ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)


def _package_version(module: str) -> str | None:
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return None
    distribution = {"psycopg2": "psycopg2-binary", "ai_edge_litert": "ai-edge-litert"}.get(module, module)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        try:
            return importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            return "installed"


def _cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _devices(backend: str) -> list[dict]:
    """The devices the running backend sees: kind, name and (GPUs) memory in MB where the backend tells."""
    if backend == "jax":
        import jax

        devices = []
        for device in jax.devices():
            stats = device.memory_stats() if device.platform == "gpu" else None
            memory = round(stats["bytes_limit"] / 2**20) if stats and "bytes_limit" in stats else None
            kind = device.platform.upper()
            devices.append(
                {"kind": kind, "name": _cpu_name() if kind == "CPU" else device.device_kind, "memory_mb": memory}
            )
        return devices
    if backend == "torch":
        import torch

        devices = [{"kind": "CPU", "name": _cpu_name(), "memory_mb": None}]
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"kind": "GPU", "name": props.name, "memory_mb": round(props.total_memory / 2**20)})
        return devices
    import tensorflow as tf

    devices = []
    for device in tf.config.list_physical_devices():
        if device.device_type not in ("CPU", "GPU", "TPU"):
            continue
        details = tf.config.experimental.get_device_details(device) if device.device_type == "GPU" else {}
        name = details.get("device_name") or _cpu_name()
        devices.append({"kind": device.device_type, "name": name, "memory_mb": None})
    return devices


def system_info() -> dict:
    """What a bug report needs: versions, the Keras backend, the devices it sees, XLA, optional packages."""
    import keras

    backend = running_backend()
    name = backend["name"]
    devices = _devices(name)
    if name == "tensorflow":
        import tensorflow as tf

        xla = "on for models that allow it (train.jit_compile: auto); TensorFlow's global auto-JIT " + (
            "on" if tf.config.optimizer.get_jit() else "off"
        )
    elif name == "jax":
        # Set before JAX started (backend._use_jax_compilation_cache), unless off or unwritable.
        cache = os.environ.get("JAX_COMPILATION_CACHE_DIR")
        xla = "always (JAX compiles every function with XLA); " + (
            f"compiled programs kept in {cache}"
            if cache
            else "no compilation cache (DLTOOL_JAX_CACHE=off, its folder cannot be written, or no filelock package: "
            "pip install filelock)"
        )
    else:
        xla = "off (torch runs eagerly)"
    optional = {module: _package_version(module) for module in OPTIONAL_PACKAGES}
    return {
        "versions": versions(),
        "backend": name,
        "backend_version": backend["version"],
        "devices": devices,
        "cpu_cores": os.cpu_count(),
        "xla": xla,
        "mixed_precision_policy": keras.config.dtype_policy().name,
        "precision_auto": dict(zip(("policy", "reason"), auto_precision())),
        "optional": optional,
        "installation": installation_report(optional),
        "platform": platform.platform(),
    }
