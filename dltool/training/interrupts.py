"""Ctrl-C and SIGTERM during training: the first stops training and lets the run be saved, a second stops at once."""

from __future__ import annotations

import signal
import socket
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGuard:
    """Turns the first Ctrl-C or SIGTERM into a request to stop training; a second one stops at once.

    The request is known the moment the signal arrives, even while TensorFlow
    holds the main thread for a whole ``steps_per_execution`` call: Python runs
    signal handlers only between two bytecodes of the main thread, so a watcher
    thread reads the signal from the wakeup file descriptor instead
    (``signal.set_wakeup_fd``), and :meth:`requested` turns true at once.

    Only the main thread can receive signals; elsewhere this guard does nothing.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._handled = 0  # signals seen by the Python handler: the second one stops at once
        self._previous: dict = {}
        self._previous_wakeup_fd: int | None = None
        self._wakeup: tuple[socket.socket, socket.socket, threading.Thread] | None = None

    def requested(self) -> bool:
        """Whether a stop was asked for (safe to call from any thread)."""
        return self.signal_name is not None

    def _handle(self, signum, frame):
        self._handled += 1
        if self._handled > 1:
            raise KeyboardInterrupt  # the second signal: stop now; every file is written atomically anyway
        self.signal_name = self.signal_name or signal.Signals(signum).name

    def _watch(self, reader: socket.socket) -> None:
        while True:
            try:
                received = reader.recv(64)
            except OSError:
                return
            if not received:  # the guard closed the writing end
                return
            for signum in received:
                if signum in STOP_SIGNALS and self.signal_name is None:
                    self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            reader, writer = socket.socketpair()
            writer.setblocking(False)  # the C-level signal handler must never block on it
            self._previous_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            watcher = threading.Thread(target=self._watch, args=(reader,), name="dltool-interrupt-watch", daemon=True)
            watcher.start()
            self._wakeup = (reader, writer, watcher)
        return self

    def __exit__(self, *exc) -> None:
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            reader, writer, watcher = self._wakeup
            self._wakeup = None
            writer.close()  # the watcher reads end-of-file and returns
            watcher.join(timeout=1.0)
            reader.close()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
