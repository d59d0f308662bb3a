"""Several processes training one model: JAX's distributed runtime under Keras's DataParallel.

Each process runs the same program on the same config: it prepares the same data (the splits are seeded),
builds the same model, and calls ``fit`` with its own share of every batch; Keras joins the shares into the
global batch (``jax.make_array_from_process_local_data``) and gradients are averaged across processes by
XLA's collectives (gloo on CPU, NCCL on GPUs). Process 0 owns the run folder; the others only train.

TensorFlow's MultiWorkerMirroredStrategy fails inside Keras 3's ``fit`` (keras-team/keras#20585), so several
processes need the JAX backend. JAX is imported only by the functions that need it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DltoolError, UsageError

TENSORFLOW_ISSUE = "https://github.com/keras-team/keras/issues/20585"
# A process that sends no heartbeat for this long is taken as dead; the others then stop (see missing_processes).
HEARTBEAT_SECONDS = 15
CONNECT_SECONDS = 120  # how long the processes wait for each other at start-up
SIGN_OF_LIFE_SECONDS = 1.0  # how often the other processes say they are alive, and process 0 looks
RUN_KEY = "dltool/run"  # process 0 tells the others which run folder is theirs under this key


class ProcessGroupError(DltoolError):
    """The processes of a run could not reach each other, or one of them stopped."""

    exit_code = 1


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands among the processes training one run."""

    coordinator: str | None  # HOST:PORT of process 0; None lets JAX find it (Slurm)
    count: int
    index: int
    source: str  # where the settings came from, for messages

    @property
    def is_leader(self) -> bool:
        return self.index == 0


def process_group(
    coordinator: str | None = None, count: int | None = None, index: int | None = None, environ=None
) -> ProcessGroup | None:
    """The process group from the command line, else from the variables ``keras.distribution.initialize`` reads
    (KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID), else from Slurm's (an ``srun`` step of
    several tasks); None when this process trains alone."""
    environ = os.environ if environ is None else environ
    given = [value is not None for value in (coordinator, count, index)]
    if any(given):
        if not all(given):
            raise UsageError(
                "several processes need all three of --coordinator HOST:PORT, --num-processes N and --process-id I "
                "(the same coordinator and N on every process; I from 0 to N-1)"
            )
        return _checked(coordinator, count, index, "the command line")
    if environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        addresses = environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
        try:
            count = int(environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
            index = int(environ.get("KERAS_DISTRIBUTION_PROCESS_ID", ""))
        except ValueError:
            raise UsageError(
                "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID must be whole numbers, "
                f"received {environ.get('KERAS_DISTRIBUTION_NUM_PROCESSES')!r} and "
                f"{environ.get('KERAS_DISTRIBUTION_PROCESS_ID')!r}"
            ) from None
        if count == 1:
            return None
        return _checked(addresses.split(",")[0] or None, count, index, "the KERAS_DISTRIBUTION_* variables")
    tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_STEP_NUM_TASKS")
    if environ.get("SLURM_STEP_ID") is not None and tasks and tasks.isdigit() and int(tasks) > 1:
        return ProcessGroup(None, int(tasks), int(environ.get("SLURM_PROCID", "0")), "Slurm")
    return None


def _checked(coordinator: str | None, count: int, index: int, source: str) -> ProcessGroup:
    if coordinator is None:
        raise UsageError(f"{source}: no coordinator address; expected HOST:PORT of process 0")
    if not re.fullmatch(r"[^\s:,]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", coordinator):
        raise UsageError(f"{source}: coordinator '{coordinator}' is not HOST:PORT (e.g. 10.0.0.1:1234)")
    if count < 1 or not 0 <= index < count:
        raise UsageError(
            f"{source}: process id {index} is out of range for {count} processes; expected 0 to {count - 1}"
        )
    return ProcessGroup(coordinator, count, index, source)


def refuse_backend(backend: str, source: str = "backend") -> None:
    """Several processes train on JAX only: TensorFlow's multi-worker strategy fails in Keras 3's fit."""
    if backend != "jax":
        raise ConfigError(
            f"backend {backend} cannot train in several processes: "
            + (
                f"Keras 3's fit fails under TensorFlow's MultiWorkerMirroredStrategy ({TENSORFLOW_ISSUE}); "
                if backend == "tensorflow"
                else "Keras distributes across processes on JAX only; "
            )
            + "set backend: jax (or --backend jax)",
            path=source,
        )


def join(group: ProcessGroup) -> None:
    """Connect this process to the others, before anything runs on JAX (Keras is imported, nothing computed).

    Collectives on CPU go over gloo. Tasks are recoverable, so a process that dies makes the collectives of
    the others raise (the peer's socket closes) instead of JAX aborting them: process 0 can still mark the
    run FAILED, naming the process that died.
    """
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_recoverability", True)
    try:
        jax.distributed.initialize(
            coordinator_address=group.coordinator,
            num_processes=group.count if group.coordinator else None,
            process_id=group.index if group.coordinator else None,
            initialization_timeout=CONNECT_SECONDS,
            heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        )
        _first_collective()
    except Exception as exc:  # noqa: BLE001  (JAX raises RuntimeError or XlaRuntimeError, with gRPC's text)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProcessGroupError(
            f"process {group.index} of {group.count} could not join the others at {group.coordinator or 'Slurm'} "
            f"within {CONNECT_SECONDS} s ({first}); start every process with the same --coordinator and "
            "--num-processes, and check that process 0 can be reached on that port"
        ) from None


def _first_collective() -> None:
    """Run one collective now, with gloo's "[Gloo] Rank 0 is connected to 1 peer ranks" line (written straight
    to the process's stdout) kept out of the training display."""
    from jax.experimental import multihost_utils

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            multihost_utils.sync_global_devices("dltool: every process joined")
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _client():
    if "jax" not in sys.modules:
        return None
    from jax._src import distributed

    return distributed.global_state.client


def count() -> int:
    """How many processes train this run (1 when this process trains alone)."""
    return _jax_or(lambda jax: jax.process_count(), 1)


def index() -> int:
    """This process's number among them (0: the one that owns the run folder)."""
    return _jax_or(lambda jax: jax.process_index(), 0)


def _jax_or(ask, default):
    if _client() is None:
        return default
    import jax

    return ask(jax)


def share_run(run_id: str | None = None, *, failure: str | None = None) -> str:
    """Process 0 tells the others its run id (or that it failed before creating one); they get it back."""
    client = _client()
    if index() == 0:
        client.key_value_set(RUN_KEY, run_id if failure is None else "!" + failure)
        return run_id or ""
    try:
        value = client.blocking_key_value_get(RUN_KEY, CONNECT_SECONDS * 1000)
    except Exception as exc:  # noqa: BLE001
        raise ProcessGroupError(f"process 0 did not create the run within {CONNECT_SECONDS} s ({exc})") from None
    if value.startswith("!"):
        raise ProcessGroupError(f"process 0 could not start the run: {value[1:]}")
    return value


def shard_for_process(array: np.ndarray, batch_size: int, processes: int, process: int) -> np.ndarray:
    """This process's part of every global batch of ``array``: batch k's rows [k*B + p*B/N, k*B + (p+1)*B/N).

    ``len(array)`` must be a multiple of ``processes`` (the last, shorter batch splits evenly too). Without
    shuffling, the N processes' batches put together are exactly one process's batches.
    """
    starts = np.arange(0, len(array), batch_size)
    sizes = np.minimum(batch_size, len(array) - starts) // processes
    rows = np.concatenate([start + process * size + np.arange(size) for start, size in zip(starts, sizes)])
    return array[rows]


def keep_own_share(data, batch_size: int) -> None:
    """Replace the training and validation splits of in-memory ``data`` by this process's share of each batch.

    The test split stays whole: process 0 tests the trained model alone (see :func:`make_local`).
    Call it after :func:`dltool.session.even_splits` has made every split a multiple of the device count.
    """
    processes, process = count(), index()
    if processes == 1:
        return
    data.x_train = shard_for_process(data.x_train, batch_size, processes, process)
    data.y_train = shard_for_process(data.y_train, batch_size, processes, process)
    if data.x_val is not None:
        data.x_val = shard_for_process(data.x_val, batch_size, processes, process)
        data.y_val = shard_for_process(data.y_val, batch_size, processes, process)


def make_local(model) -> None:
    """Turn the model's variables, replicated over every process's devices, into this process's own copies.

    Afterwards this process can test, predict and save without the others (a computation on the shared
    variables is a collective every process must join). Keras has no public call for it: each variable
    forgets its layout and keeps its local replica (``np.asarray`` of a replicated array reads it locally).
    """
    import jax
    import keras

    keras.distribution.set_distribution(None)
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    for metric in getattr(model, "metrics", []):
        variables += list(metric.variables)
    for variable in variables:
        value = getattr(variable, "_value", None)
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            variable._layout = None
            variable._value = jax.device_put(np.asarray(value))


def weights_digest(model) -> str:
    """A short SHA-256 of the model's weights: equal on every process when they trained in step."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.value)).tobytes())
    return digest.hexdigest()[:16]


def missing_processes(timeout: float = HEARTBEAT_SECONDS + 10) -> list[int] | None:
    """The processes that stopped sending heartbeats, after a collective failed; None if it cannot be told.

    JAX's coordination service answers once every live process has asked or the dead ones' heartbeats have
    timed out (at most HEARTBEAT_SECONDS): process 0 calls this while the others are stuck or gone.
    """
    client = _client()
    if client is None:
        return None
    everyone = list(range(count()))
    found: dict = {}

    def ask():
        try:
            found["live"] = client.get_live_nodes(everyone)
        except Exception as exc:  # noqa: BLE001  (the coordinator itself is gone)
            found["error"] = exc

    asking = threading.Thread(target=ask, name="dltool-live-processes", daemon=True)
    asking.start()
    asking.join(timeout)
    if "live" not in found:
        return [0] if "error" in found else None
    return [process for process in everyone if process not in found["live"]]


def looks_like_lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process went away."""
    text = str(exc)
    return any(marker in text for marker in ("Gloo", "Connection closed", "Connection reset", "UNAVAILABLE", "NCCL"))


def _alive_key(process: int) -> str:
    return f"dltool/alive/{process}"


def give_signs_of_life() -> Callable[[], None]:
    """Processes 1 to N-1, while they train: a thread tells process 0 every second that this one is alive.

    Returns ``done``, to call once training ended well here (process 0 then stops expecting signs).
    """
    client, process, stop = _client(), index(), threading.Event()

    def beat():
        count_ = 0
        while not stop.wait(SIGN_OF_LIFE_SECONDS):
            count_ += 1
            try:
                client.key_value_set(_alive_key(process), str(count_), allow_overwrite=True)
            except Exception:  # noqa: BLE001  (process 0 is gone: this process's collectives fail too)
                return

    threading.Thread(target=beat, name="dltool-signs-of-life", daemon=True).start()

    def done() -> None:
        stop.set()
        try:
            client.key_value_set(_alive_key(process), "done", allow_overwrite=True)
        except Exception:  # noqa: BLE001
            pass

    return done


def watch_the_others(on_silent: Callable[[list[int]], None]) -> Callable[[], None]:
    """Process 0, while it trains: call ``on_silent(processes)`` from a thread when other processes have given
    no sign of life for HEARTBEAT_SECONDS (stopped, hung, or cut off from this machine).

    A process that dies closes its sockets and the next collective fails at once; one that stops answering
    without closing them would leave this process waiting in that collective for ever, which only a thread
    can notice. Returns ``stop``.
    """
    client, stop = _client(), threading.Event()

    def look():
        start = time.monotonic()
        last = {process: (None, start) for process in range(1, count())}
        while not stop.wait(SIGN_OF_LIFE_SECONDS):
            now = time.monotonic()
            for process, (seen, _since) in list(last.items()):
                try:
                    value = client.key_value_try_get(_alive_key(process))
                except Exception:  # noqa: BLE001  (no sign yet)
                    value = None
                if value == "done":
                    del last[process]
                elif value != seen:
                    last[process] = (value, now)
            silent = sorted(process for process, (_, since) in last.items() if now - since > HEARTBEAT_SECONDS)
            if silent and not stop.is_set():
                on_silent(silent)
                return

    threading.Thread(target=look, name="dltool-watch-workers", daemon=True).start()
    return stop.set
