"""The processes that train one run: a ``ProcessGroup`` passed to whatever needs it, never asked "am I alone?".

``LocalGroup`` is the null object (size 1, rank 0, every share the whole data, nothing to watch);
``JaxProcessGroup`` is JAX's distributed runtime under Keras's DataParallel.

Each process runs the same program on the same config: it prepares the same data (the splits are seeded),
builds the same model, and calls ``fit`` with its own share of every batch; Keras joins the shares into the
global batch (``jax.make_array_from_process_local_data``) and gradients are averaged across processes by
XLA's collectives (gloo on CPU, NCCL on GPUs). Process 0 owns the run folder; the others only train.

TensorFlow's MultiWorkerMirroredStrategy fails inside Keras 3's ``fit`` (keras-team/keras#20585), so several
processes need the JAX backend. JAX is imported only by the functions that need it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable

from ..errors import DltoolError
from .settings import GroupSettings

# A process that sends no heartbeat for this long is taken as dead; the others then stop (see missing_processes).
HEARTBEAT_SECONDS = 15
CONNECT_SECONDS = 120  # how long the processes wait for each other at start-up
SIGN_OF_LIFE_SECONDS = 1.0  # how often the other processes say they are alive, and process 0 looks
RUN_KEY = "dltool/run"  # process 0 tells the others which run folder is theirs under this key


class ProcessGroupError(DltoolError):
    """The processes of a run could not reach each other, or one of them stopped."""

    exit_code = 1


class ProcessGroup:
    """The processes training one run, as the training code sees them. This base is one process alone:
    every method does what a single process needs (nothing, mostly); :class:`JaxProcessGroup` overrides them."""

    size = 1  # how many processes train the run
    rank = 0  # this process's number among them (0: the one that owns the run folder)

    @property
    def is_leader(self) -> bool:
        """Whether this process owns the run folder (records, checkpoints, tests and saves)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process has come here."""

    def share_run(self, run_id: str | None = None, *, failure: str | None = None) -> str:
        """Process 0 tells the others its run id (or that it failed before creating one); they get it back."""
        return run_id or ""

    def batch_share(self, batch_size: int) -> int:
        """How many rows of every global batch of ``batch_size`` this process passes to ``fit``."""
        return batch_size // self.size

    def make_local(self, model) -> None:
        """From here on this process works on its own copy of ``model`` (alone: it already does)."""

    def missing_processes(self, timeout: float | None = None) -> list[int] | None:
        """The processes that stopped sending heartbeats, after a collective failed; None if it cannot be told."""
        return None

    def looks_like_lost_peer(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a collective that failed because another process went away."""
        return False

    def give_signs_of_life(self) -> Callable[[], None]:
        """Processes 1 to N-1, while they train: tell process 0 this one is alive; returns ``done``."""
        return lambda: None

    def watch_the_others(self, on_silent: Callable[[list[int]], None]) -> Callable[[], None]:
        """Process 0, while it trains: ``on_silent(processes)`` when others fall silent; returns ``stop``."""
        return lambda: None


class LocalGroup(ProcessGroup):
    """One process training alone: size 1, rank 0, its share is all the data, nobody to wait for or watch."""


LOCAL = LocalGroup()


class JaxProcessGroup(ProcessGroup):
    """The processes joined by JAX's distributed runtime (:func:`join`); its key-value store carries the run id
    and the signs of life. ``client``, ``size`` and ``rank`` default to JAX's (given: tests)."""

    def __init__(self, client=None, size: int | None = None, rank: int | None = None):
        if client is None or size is None or rank is None:
            import jax

            client = _client() if client is None else client
            size = jax.process_count() if size is None else size
            rank = jax.process_index() if rank is None else rank
        self.client, self.size, self.rank = client, size, rank

    def barrier(self) -> None:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("dltool: barrier")

    def share_run(self, run_id: str | None = None, *, failure: str | None = None) -> str:
        if self.is_leader:
            self.client.key_value_set(RUN_KEY, run_id if failure is None else "!" + failure)
            return run_id or ""
        try:
            value = self.client.blocking_key_value_get(RUN_KEY, CONNECT_SECONDS * 1000)
        except Exception as exc:  # noqa: BLE001
            raise ProcessGroupError(f"process 0 did not create the run within {CONNECT_SECONDS} s ({exc})") from None
        if value.startswith("!"):
            raise ProcessGroupError(f"process 0 could not start the run: {value[1:]}")
        return value

    def make_local(self, model) -> None:
        """Turn the model's variables, replicated over every process's devices, into this process's own copies.

        Afterwards this process can test, predict and save without the others (a computation on the shared
        variables is a collective every process must join). Keras has no public call for it: each variable
        forgets its layout and keeps its local replica (``np.asarray`` of a replicated array reads it locally).
        """
        import jax
        import keras
        import numpy as np

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

    def missing_processes(self, timeout: float | None = None) -> list[int] | None:
        """JAX's coordination service answers once every live process has asked or the dead ones' heartbeats
        have timed out (at most HEARTBEAT_SECONDS): process 0 calls this while the others are stuck or gone."""
        timeout = HEARTBEAT_SECONDS + 10 if timeout is None else timeout
        client = self.client
        everyone = list(range(self.size))
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

    def looks_like_lost_peer(self, exc: BaseException) -> bool:
        text = str(exc)
        return any(
            marker in text for marker in ("Gloo", "Connection closed", "Connection reset", "UNAVAILABLE", "NCCL")
        )

    def give_signs_of_life(self) -> Callable[[], None]:
        """A thread tells process 0 every second that this one is alive. Returns ``done``, to call once training
        ended well here (process 0 then stops expecting signs)."""
        client, process, stop = self.client, self.rank, threading.Event()

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

    def watch_the_others(self, on_silent: Callable[[list[int]], None]) -> Callable[[], None]:
        """``on_silent(processes)`` is called from a thread when other processes have given no sign of life for
        HEARTBEAT_SECONDS (stopped, hung, or cut off from this machine).

        A process that dies closes its sockets and the next collective fails at once; one that stops answering
        without closing them would leave this process waiting in that collective for ever, which only a thread
        can notice. Returns ``stop``.
        """
        client, stop = self.client, threading.Event()

        def look():
            start = time.monotonic()
            last = {process: (None, start) for process in range(1, self.size)}
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


def _alive_key(process: int) -> str:
    return f"dltool/alive/{process}"


def _client():
    if "jax" not in sys.modules:
        return None
    from jax._src import distributed

    return distributed.global_state.client


def current_group() -> ProcessGroup:
    """The group this process joined (:func:`join`), else :data:`LOCAL`: the default of library calls made
    without one."""
    return JaxProcessGroup() if _client() is not None else LOCAL


def join(settings: GroupSettings) -> JaxProcessGroup:
    """Connect this process to the others and return their group, before anything runs on JAX (Keras is imported, nothing computed).

    Collectives on CPU go over gloo. Tasks are recoverable, so a process that dies makes the collectives of
    the others raise (the peer's socket closes) instead of JAX aborting them: process 0 can still mark the
    run FAILED, naming the process that died.
    """
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_recoverability", True)
    try:
        jax.distributed.initialize(
            coordinator_address=settings.coordinator,
            num_processes=settings.count if settings.coordinator else None,
            process_id=settings.index if settings.coordinator else None,
            initialization_timeout=CONNECT_SECONDS,
            heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        )
        _first_collective()
    except Exception as exc:  # noqa: BLE001  (JAX raises RuntimeError or XlaRuntimeError, with gRPC's text)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProcessGroupError(
            f"process {settings.index} of {settings.count} could not join the others at {settings.coordinator or 'Slurm'} "
            f"within {CONNECT_SECONDS} s ({first}); start every process with the same --coordinator and "
            "--num-processes, and check that process 0 can be reached on that port"
        ) from None
    return JaxProcessGroup()


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


def weights_digest(model) -> str:
    """A short SHA-256 of the model's weights: equal on every process when they trained in step."""
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.value)).tobytes())
    return digest.hexdigest()[:16]
