"""Atomic file writes: every file in a run folder (and every output dltool writes) goes through here; and a file's
SHA-256.

A file is written to a temporary name beside its target, flushed to disk and
renamed over it, so a crash at any instant leaves the old complete file or
the new one, never half of either. The file gets the mode a plain ``open()``
would give it (0666 & ~umask, or the mode of the file it replaces), not the
0600 of a temporary file: a shared runs folder, or a server run by another
user, must be able to read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

PROC_STATUS = "/proc/self/status"  # Linux shows the umask here (since 4.7)
_UMASK_LOCK = threading.Lock()
_umask_read_by_setting: int | None = None


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's /proc/self/status).

    Read there each time (under 0.1 ms, beside an fsync of milliseconds), so a umask changed later is followed. Elsewhere it is read once
    per process, by setting and restoring it under a lock: ``os.umask`` is process-wide, and a file another
    thread created between the two calls would get the stand-in umask.
    """
    global _umask_read_by_setting
    try:
        with open(PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        if _umask_read_by_setting is None:
            _umask_read_by_setting = os.umask(0o022)
            os.umask(_umask_read_by_setting)
        return _umask_read_by_setting


def file_mode(path: Path | None = None) -> int:
    """The mode ``open(path, "w")`` would leave: that of the regular file ``path`` already is, else 0666 & ~umask."""
    if path is not None:
        with suppress(OSError):
            info = os.stat(path)
            if stat.S_ISREG(info.st_mode):
                return stat.S_IMODE(info.st_mode)
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 & ~umask."""
    return 0o777 & ~current_umask()


def apply_default_modes(path: Path) -> None:
    """Give ``path`` and, for a folder, everything in it the modes ``open()`` and ``mkdir`` would: for artifacts
    that libraries write with modes of their own (TensorFlow makes folders 0755 whatever the umask) or in a
    0700 temporary folder."""
    path = Path(path)
    files, folders = file_mode(), folder_mode()
    entries = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for entry in entries:
        if not entry.is_symlink():
            _chmod(entry, folders if entry.is_dir() else files)


def _chmod(path: Path | str, mode: int) -> None:
    # Some filesystems (vfat, some network mounts) refuse chmod; the file is written all the same.
    with suppress(OSError):
        os.chmod(path, mode)


@contextmanager
def atomic_target(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on a clean exit it gets ``path``'s mode (:func:`file_mode`)
    and is renamed over ``path``, on an exception it is removed.

    Whatever writes it (our own code, ``model.save``, a CSV writer) leaves either the old complete file or the new one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    A crash at any instant leaves either the old complete file or the new one.
    """
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """:func:`atomic_write_bytes` for JSON (indented, NaN written as null)."""
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def _json_safe(value):
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def check_output_file(path: str | Path, what: str = "output", option: str = "the output", error=None) -> Path:
    """Refuse, before any work is done, a file path that cannot be written: a missing or unwritable folder, or a
    folder in place of the file. Every command that writes a file the user names follows this one rule.

    ``option`` names where the path came from (``-o``); ``error`` is the DltoolError subclass to raise
    (default UsageError; exit 2 either way).
    """
    from .errors import UsageError

    error = error or UsageError
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name for {option}")
    if not folder.exists():
        raise error(
            f"{path}: the folder {folder} does not exist; create it first (mkdir -p {folder}) "
            f"or write the {what} elsewhere"
        )
    if not folder.is_dir():
        raise error(f"{path}: {folder} is a file, not a folder")
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-")
        probe.close()
    except OSError as exc:
        raise error(f"{path}: cannot write in {folder} ({exc.strerror or exc}); write the {what} elsewhere") from None
    return path


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
