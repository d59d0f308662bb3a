"""Run folders: atomic creation, atomic file writes, status lifecycle, lookup and listing.

A run folder is ``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>-<4 hex>/``. Its
``run.json`` holds the status (RUNNING -> COMPLETED | FAILED | INTERRUPTED),
times, versions, pid and heartbeat. No Keras import here: ``dltool runs`` must
start instantly.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import DltoolError, RunNotFoundError
from .fileio import atomic_write_json, atomic_write_text

RUNS_DIR_ENV = "DLTOOL_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{4}$")

RUNNING, COMPLETED, FAILED, INTERRUPTED = "RUNNING", "COMPLETED", "FAILED", "INTERRUPTED"
DIED = "DIED"  # shown for a RUNNING run whose process is gone; never written
AMBIGUOUS_SHOWN = 5  # run ids listed when a prefix matches several


def runs_dir(explicit: str | Path | None = None) -> Path:
    """The runs folder: ``explicit``, else $DLTOOL_RUNS_DIR, else ./runs."""
    return Path(explicit or os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def log_time() -> str:
    """The local time train.log and the workers' logs start their lines with."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a live run from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False  # killed, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    return start is None or process_start(pid) in (None, start)


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One run folder."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the run folder."""
        return self.path / name

    # ---- creation and lookup
    @classmethod
    def create(cls, root: Path, name: str) -> Run:
        """Create a new, empty run folder atomically (a unique id even for runs started in the same second)."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-", delete=True)
            probe.close()
        except OSError as exc:
            raise DltoolError(
                f"runs folder {root} is not writable ({exc.strerror or exc}); "
                f"choose another with --runs-dir or ${RUNS_DIR_ENV}"
            ) from None
        for _ in range(100):
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = root / f"{stamp}-{name}-{secrets.token_hex(2)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path)
        raise DltoolError(f"could not create a unique run folder in {root}")

    @classmethod
    def resolve(cls, ref: str, root: Path) -> Run:
        """Find a run by id, unique id prefix, 'latest', path to a run folder, or name (the newest of that name).

        An id or prefix never leaves ``root`` (no '..', no symlink out); a
        path must be a folder holding run.json.
        """
        root = Path(root)
        ref = ref.strip()
        if ref == "latest":
            runs = list_runs(root)
            if not runs:
                raise RunNotFoundError(f"no runs in {root}; train one with `dltool train CONFIG`")
            return runs[-1]
        looks_like_path = os.sep in ref or ref.startswith(".") or (os.altsep and os.altsep in ref)
        if looks_like_path:
            path = Path(ref)
            if not path.is_dir():
                raise RunNotFoundError(f"{ref}: no such run folder")
            if not (path / "run.json").is_file():
                raise RunNotFoundError(f"{ref}: not a run folder (it has no run.json)")
            return cls(path)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", ref):
            raise RunNotFoundError(f"'{ref}' is not a run id, prefix, 'latest' or path")
        runs = list_runs(root)
        matches = [run for run in runs if run.id.startswith(ref)]
        exact = [run for run in matches if run.id == ref]
        if exact:
            return exact[0]
        if not matches:
            # A run name stands for the newest run of that name (`dltool runs show wine`).
            named = [run for run in runs if _recorded_name(run) == ref]
            if named:
                return named[-1]
            raise RunNotFoundError(f"no run matches '{ref}' in {root} (by id prefix or name); `dltool runs` lists them")
        if len(matches) > 1:
            shown = ", ".join(run.id for run in matches[:AMBIGUOUS_SHOWN])
            more = f" and {len(matches) - AMBIGUOUS_SHOWN} more" if len(matches) > AMBIGUOUS_SHOWN else ""
            raise RunNotFoundError(
                f"'{ref}' matches {len(matches)} runs ({shown}{more}); give more of the id, "
                "or `dltool runs` to list them"
            )
        return matches[0]

    # ---- files
    def write_text(self, name: str, text: str) -> None:
        """Write a text file in the run folder atomically."""
        atomic_write_text(self.file(name), text)

    def write_json(self, name: str, data: Any) -> None:
        """Write a JSON file in the run folder atomically."""
        atomic_write_json(self.file(name), data)

    def read_json(self, name: str) -> Any:
        """Read a JSON file of the run; a missing or corrupt file is a clear error."""
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunNotFoundError(f"{self.path}: {name} is missing") from None
        except (OSError, ValueError) as exc:
            raise RunNotFoundError(f"{self.path}: {name} cannot be read ({exc})") from None

    def append_log(self, line: str) -> None:
        """Add a line to train.log (rewritten atomically: the log stays small)."""
        log = self.file("train.log")
        old = log.read_text(encoding="utf-8") if log.exists() else ""
        atomic_write_text(log, old + line.rstrip("\n") + "\n")

    # ---- run.json and status
    @property
    def info(self) -> dict:
        """The contents of run.json."""
        return self.read_json("run.json")

    def update_info(self, **changes) -> dict:
        """Merge ``changes`` into run.json (atomically) and return the new contents."""
        try:
            info = self.info
        except RunNotFoundError:
            info = {}
        info.update(changes)
        self.write_json("run.json", info)
        return info

    def start(self, **fields) -> dict:
        """Write the first run.json: status RUNNING, this process's pid and a heartbeat."""
        return self.update_info(
            id=self.id, created=now_iso(), started=now_iso(), started_ts=time.time(), **self._running_fields(), **fields
        )

    def restart(self, **fields) -> dict:
        """Mark a stopped run RUNNING again in this process (resume); its start time is kept."""
        return self.update_info(**self._running_fields(), **fields)

    @staticmethod
    def _running_fields() -> dict:
        pid = os.getpid()
        return {
            "status": RUNNING,
            "ended": None,
            "error": None,
            "pid": pid,
            "pid_start": process_start(pid),
            "host": socket.gethostname(),
            "heartbeat": time.time(),
        }

    def heartbeat(self, **fields) -> dict:
        """Mark the run alive now (called once per epoch), with progress fields."""
        return self.update_info(heartbeat=time.time(), **fields)

    def finish(self, status: str, error: str | None = None, **fields) -> dict:
        """Set the final status and end time."""
        started = self.info.get("started_ts")
        duration = round(time.time() - started, 2) if started else None
        return self.update_info(status=status, ended=now_iso(), duration_s=duration, error=error, **fields)

    @property
    def status(self) -> str:
        """The status, with DIED for a RUNNING run whose process is gone."""
        return effective_status(self.info)


def effective_status(info: dict) -> str:
    """run.json's status, except a RUNNING run whose process on this host is gone is DIED."""
    status = info.get("status", "UNKNOWN")
    if status == RUNNING and info.get("host") == socket.gethostname() and info.get("pid"):
        if not _process_alive(int(info["pid"]), info.get("pid_start")):
            return DIED
    return status


def config_file_of(ref: str, runs_root: Path | None) -> Path:
    """The resolved config.yaml of run ``ref`` (to train it again, or further with ``--from``)."""
    return Run.resolve(ref, runs_dir(runs_root)).file("config.yaml")


def list_runs(root: Path) -> list[Run]:
    """Every run folder in ``root`` (those with run.json), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / "run.json").is_file()]
    return sorted(runs, key=_start_order)


def _recorded_name(run: Run) -> str | None:
    try:
        return json.loads(run.file("run.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def _start_order(run: Run) -> tuple:
    """Ids sort by second; runs started in the same second are ordered by their recorded start."""
    try:
        started = float(json.loads(run.file("run.json").read_text(encoding="utf-8")).get("started_ts") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        started = 0.0
    return run.id[:15], started, run.id


def remove_run(run: Run) -> None:
    """Delete a run folder and everything in it."""
    shutil.rmtree(run.path)
