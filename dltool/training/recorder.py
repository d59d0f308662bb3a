"""The record of a RUNNING run: history.csv, train.log and the run.json heartbeat, persisted in batches."""

from __future__ import annotations

import csv
import io
import time

from ..runs import Run

FLUSH_SECONDS = 1.0  # history.csv, the heartbeat and train.log are rewritten at most this often


def history_csv(rows: list[dict]) -> str:
    """Rows of per-epoch values as CSV text; columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def split_metrics(row: dict) -> tuple[dict, dict]:
    """Split a history row into (train metrics, validation metrics)."""
    skip = {"epoch", "phase", "learning_rate", "epoch_seconds"}
    train = {k: v for k, v in row.items() if k not in skip and not k.startswith("val_")}
    val = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return train, val


class RunRecorder:
    """Owns a run's per-epoch history, its log lines and its heartbeat while it trains.

    Epochs of tiny models take milliseconds: the files are written at most
    every FLUSH_SECONDS and at the last epoch, and :meth:`flush` writes what
    is pending (called when training stops for any reason).
    """

    def __init__(self, run: Run, epochs: int, history: list[dict] | None = None):
        self.run, self.epochs = run, epochs
        self.rows: list[dict] = list(history or [])
        self._pending_log: list[str] = []
        self._last_flush = 0.0

    def on_epoch_end(self, row: dict) -> None:
        """Record one finished epoch."""
        self.rows.append(row)
        shown = "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "phase"))
        self._pending_log.append(f"epoch {row['epoch']}/{self.epochs}  {shown}")
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS or row["epoch"] == self.epochs:
            self.flush()

    def flush(self) -> None:
        """Write history.csv, the heartbeat and the pending log lines now."""
        if not self.rows:
            return
        self.run.write_text("history.csv", history_csv(self.rows))
        self.run.heartbeat(epochs_done=self.rows[-1]["epoch"])
        if self._pending_log:
            self.run.append_log("\n".join(self._pending_log))
            self._pending_log.clear()
        self._last_flush = time.monotonic()

    def log(self, line: str) -> None:
        """Add a line to train.log now, after any pending epoch lines."""
        if self._pending_log:
            self.run.append_log("\n".join(self._pending_log))
            self._pending_log.clear()
        self.run.append_log(line)

    @property
    def epochs_done(self) -> int:
        return len(self.rows)

    def final_metrics(self, epoch: int | None = None) -> tuple[dict, dict]:
        """(train metrics, validation metrics) of ``epoch`` (default: the last one)."""
        row = next((r for r in self.rows if r["epoch"] == epoch), self.rows[-1])
        return split_metrics(row)

    def best_epoch(self) -> dict | None:
        """The row with the lowest val_loss (or loss, without validation)."""
        key = "val_loss" if self.rows and "val_loss" in self.rows[0] else "loss"
        finite = [r for r in self.rows if r.get(key) is not None]
        return min(finite, key=lambda r: r[key]) if finite else None
