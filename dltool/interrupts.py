"""Ctrl-C and SIGTERM during training: the first asks to stop between two batches, a second stops at once."""

from __future__ import annotations

import signal
import threading


class InterruptGuard:
    """Turns the first Ctrl-C or SIGTERM into a request to stop between batches; a second one stops at once.

    Only the main thread can receive signals; elsewhere this guard does nothing.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt  # the second signal: stop now; every file is written atomically anyway
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
