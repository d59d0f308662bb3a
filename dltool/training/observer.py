"""The training observer: what a run tells the code that watches it (a display, a sweep, smoke, a worker's log).

Modelled on ``keras.callbacks.Callback``: every hook does nothing by default
and an observer overrides the ones it uses, so the code that calls them never
asks whether an observer is there or has a hook. Functions that take
``observer=None`` use a plain :class:`Observer` in its place. The hooks are
called in the order they are listed here. Nothing is imported: the module
sits below both the training code and the command line.
"""

from __future__ import annotations


class StopRequested(Exception):
    """Stops a run between batches: raised inside ``fit`` when ``should_stop()`` turns true (a first Ctrl-C or
    SIGTERM), or by an observer's hook (a sweep prunes a trial with ``StopRequested("pruned")``)."""


class Observer:
    """Receives a run's events; each hook is a no-op until a subclass overrides it."""

    def on_run_created(self, run) -> None:
        """The run folder exists and run.json is written (``run``: a :class:`dltool.runs.Run`)."""

    def on_train_begin(self, epochs: int, steps: int | None) -> None:
        """Fitting starts: ``epochs`` planned in all, ``steps`` batches per epoch (None when unknown)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Epoch ``epoch`` (counted from 1) starts."""

    def on_batch_end(self, step: int, logs: dict | None) -> None:
        """Training batch ``step`` (counted from 1) of the epoch is done; ``logs`` holds the running loss."""

    def on_epoch_end(self, row: dict) -> None:
        """An epoch is done and recorded: ``row`` is its history.csv row. Raising StopRequested stops the run."""

    def on_train_end(self) -> None:
        """Fitting ended, whether it finished, stopped or failed."""

    def on_tested(self, run, metrics: dict, expectations: list[dict]) -> None:
        """The trained model is tested and saved, ``metrics`` (metrics.json) written and ``expectations`` checked;
        the plots are still to be drawn and the run to be marked COMPLETED."""

    def on_run_completed(self, run, model, data) -> None:
        """The run is COMPLETED: its trained ``model`` and prepared ``data`` are still in memory."""

    def on_run_failed(self, run, reason: str) -> None:
        """The run ended FAILED (run.json and train.log say so already); ``reason`` is its error."""

    def on_run_interrupted(self, run, reason: str) -> None:
        """The run ended INTERRUPTED (Ctrl-C, SIGTERM, or an observer's StopRequested); ``reason`` says which."""

    def on_worker_finished(self, digest: str) -> None:
        """A process other than process 0 finished training; ``digest`` names its final weights."""


class Observers(Observer):
    """Several observers as one (a display and a tracker): each hook is passed to each, in the order given."""

    def __init__(self, *observers: Observer):
        self.observers = observers

    def on_run_created(self, run) -> None:
        for observer in self.observers:
            observer.on_run_created(run)

    def on_train_begin(self, epochs: int, steps: int | None) -> None:
        for observer in self.observers:
            observer.on_train_begin(epochs, steps)

    def on_epoch_begin(self, epoch: int) -> None:
        for observer in self.observers:
            observer.on_epoch_begin(epoch)

    def on_batch_end(self, step: int, logs: dict | None) -> None:
        for observer in self.observers:
            observer.on_batch_end(step, logs)

    def on_epoch_end(self, row: dict) -> None:
        # Each hears the epoch, even after one asked to stop (a tracker logs the epoch a sweep prunes after):
        # the first one's StopRequested (or error) is raised once all have heard it.
        raised = None
        for observer in self.observers:
            try:
                observer.on_epoch_end(row)
            except Exception as exc:  # noqa: BLE001  (raised below, after the others)
                raised = raised or exc
        if raised is not None:
            raise raised

    def on_train_end(self) -> None:
        for observer in self.observers:
            observer.on_train_end()

    def on_tested(self, run, metrics: dict, expectations: list[dict]) -> None:
        for observer in self.observers:
            observer.on_tested(run, metrics, expectations)

    def on_run_completed(self, run, model, data) -> None:
        for observer in self.observers:
            observer.on_run_completed(run, model, data)

    def on_run_failed(self, run, reason: str) -> None:
        for observer in self.observers:
            observer.on_run_failed(run, reason)

    def on_run_interrupted(self, run, reason: str) -> None:
        for observer in self.observers:
            observer.on_run_interrupted(run, reason)

    def on_worker_finished(self, digest: str) -> None:
        for observer in self.observers:
            observer.on_worker_finished(digest)
