"""Decoded images kept between epochs and between runs (``data.cache``), and the fingerprint that keys them.

A cache's rows are the files of an image folder's listing, in the listing's order, as the resized uint8 pixels
:func:`dltool.data.images.read_image` gives: a cached file gives the model the same pixels as a decoded one.
``memory`` keeps them in this process, filled as files are first decoded; ``disk`` fills a .npy file in one
folder per fingerprint under :func:`cache_root`, renamed into place once every row is in, which later runs and
sweep trials read instead of decoding. The fingerprint covers the files' relative paths, sizes, modification times
and labels and the image settings: a changed, added or removed file, or another image size, colour mode or
filter, gives a new folder (old folders stay until removed by hand).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np

from ..fileio import atomic_target, atomic_write_json

CACHE_DIR_ENV = "DLTOOL_CACHE_DIR"
PIXELS = "pixels.npy"  # written last: a folder holds a complete cache exactly when this file exists
LISTING = "listing.json"  # what the rows are: count, sample shape, settings, the rows no file could fill
PARTIAL_SUFFIX = ".partial"


def cache_root() -> Path:
    """Where disk caches live: ``$DLTOOL_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/dltool/images``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dltool" / "images"


def listing_fingerprint(root: Path, files: list[Path], labels: list[str], settings: dict) -> str:
    """A short sha256 of the files' relative paths, sizes, modification times and labels, and the image settings.

    Nothing is decoded: a stat per file. The same listing of unchanged files gives the same fingerprint.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path, label in zip(files, labels):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()[:16]


class NoCache:
    """``data.cache: none``: nothing is kept, every pass decodes every file."""

    kind = "none"
    state = "none"

    def cached(self, rows: np.ndarray) -> np.ndarray:
        """A bool per row: whether its pixels are in the cache."""
        return np.zeros(len(rows), dtype=bool)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The cached pixels of ``rows`` (each of them cached)."""
        raise KeyError("nothing is cached")

    def store(self, rows: np.ndarray, pixels: np.ndarray) -> None:
        """Keep the decoded ``pixels`` of ``rows``."""

    def unreadable(self, rows: np.ndarray) -> None:
        """``rows`` are files that cannot be read (data.on_bad_file: skip): there is nothing to keep of them."""

    def describe(self) -> str:
        """The run log's phrase for this cache."""
        return "no cache"


class MemoryCache(NoCache):
    """``data.cache: memory``: the pixels of every file decoded so far, in this process's memory."""

    kind = "memory"
    state = "filling"

    def __init__(self, count: int, shape: list[int]):
        # np.empty takes address space only: the memory of a row is used once it is filled.
        self.pixels = np.empty((count, *shape), dtype=np.uint8)
        self.filled = np.zeros(count, dtype=bool)

    def cached(self, rows: np.ndarray) -> np.ndarray:
        return self.filled[rows]

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.pixels[rows]

    def store(self, rows: np.ndarray, pixels: np.ndarray) -> None:
        self.pixels[rows] = pixels
        self.filled[rows] = True

    def describe(self) -> str:
        return f"memory cache ({_size(self.pixels.nbytes)} of uint8 pixels once every file is read)"


class DiskCache(NoCache):
    """``data.cache: disk``: ``folder/pixels.npy`` holds every file's pixels once complete.

    A complete cache is read from the first pass on (``state`` "reused"). Otherwise the rows are
    written into a temporary .npy beside it as files are decoded (train in the first epoch, validation after it,
    test when the run is tested), and the file is renamed to ``pixels.npy`` when the last row is in (``state``
    "built"). An unfinished file (the run stopped, or only the test split was read) is removed when this
    process lets the cache go; one left by a killed process is removed by the next run that opens the folder.
    """

    kind = "disk"

    def __init__(self, folder: Path, count: int, shape: list[int], settings: dict):
        self.folder, self.count, self.shape, self.settings = Path(folder), count, list(shape), settings
        self._lock = threading.Lock()
        self._partial: Path | None = None
        self._unreadable: set[int] = set()
        self.pixels = self._complete()
        if self.pixels is not None:
            self.state = "reused"
            self.filled = np.ones(count, dtype=bool)
            for row in self._listing().get("unreadable_rows", []):  # decoded again: to fail or be skipped
                self.filled[row] = False
            self._remaining = 0
        else:
            self.state = "building"
            self.filled = np.zeros(count, dtype=bool)
            self._remaining = count

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape))

    def _listing(self) -> dict:
        try:
            return json.loads((self.folder / LISTING).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _complete(self) -> RowFile | None:
        """The complete cache's file; None when there is none of this shape."""
        try:
            rows = RowFile.open(self.folder / PIXELS)
        except (OSError, ValueError):
            return None
        if rows.shape != (self.count, *self.shape) or rows.dtype != np.uint8:
            rows.close()
            return None
        return rows

    def fits(self) -> str | None:
        """Why this cache cannot be built here (not enough free disk space, a folder that cannot be made), or None."""
        if self.state == "reused":
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.folder).free
        except OSError as exc:
            return f"cannot make the cache folder {self.folder} ({exc.strerror or exc})"
        needed = self.count * self.row_bytes
        if needed > free:
            return f"the cache needs {needed / 2**30:.1f} GiB, {self.folder} has {free / 2**30:.1f} GiB free"
        return None

    def cached(self, rows: np.ndarray) -> np.ndarray:
        return self.filled[rows]

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.pixels.read(rows)

    def read_all(self) -> np.ndarray:
        """Every row of a complete cache (an image folder loaded into memory)."""
        return self.pixels.read_all()

    def store(self, rows: np.ndarray, pixels: np.ndarray) -> None:
        if self.state != "building":
            return
        with self._lock:
            if self.pixels is None:
                self.pixels = self._open_partial()
            new = ~self.filled[rows]
            self.pixels.write(rows[new], pixels[new])
            self.filled[rows[new]] = True
            self._remaining -= int(new.sum())
            if self._remaining == 0:
                self._finish()

    def unreadable(self, rows: np.ndarray) -> None:
        if self.state != "building":
            return
        with self._lock:
            new = [int(row) for row in rows if row not in self._unreadable and not self.filled[row]]
            self._unreadable.update(new)
            self._remaining -= len(new)
            if self._remaining == 0 and self.pixels is not None:
                self._finish()

    def save_all(self, pixels: np.ndarray, unreadable_rows: list[int]) -> None:
        """Write a whole cache at once (an image folder loaded into memory): atomically, as ``pixels.npy``."""
        if self.state != "building":
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / LISTING, self._listing_data(unreadable_rows))
        with atomic_target(self.folder / PIXELS) as tmp, open(tmp, "wb") as handle:
            np.save(handle, pixels)
            handle.flush()
            os.fsync(handle.fileno())
        self.state = "built"

    def _listing_data(self, unreadable_rows) -> dict:
        return {
            "files": self.count,
            "shape": self.shape,
            "settings": self.settings,
            "unreadable_rows": sorted(int(row) for row in unreadable_rows),
        }

    def _open_partial(self) -> np.ndarray:
        self.folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(self.folder)
        # host and pid in the name: a later run removes the file of a process that was killed (see above)
        fd, name = tempfile.mkstemp(
            prefix=f".{PIXELS}.", suffix=f".{socket.gethostname()}.{os.getpid()}{PARTIAL_SUFFIX}", dir=self.folder
        )
        os.close(fd)
        self._partial = Path(name)
        self._cleanup = weakref.finalize(self, Path(name).unlink, missing_ok=True)
        return RowFile.create(Path(name), (self.count, *self.shape))

    def _finish(self) -> None:
        """Every row is in: flush the file and rename it into place (the listing first: pixels.npy marks done)."""
        self.pixels.sync()
        atomic_write_json(self.folder / LISTING, self._listing_data(self._unreadable))
        with atomic_target(self.folder / PIXELS) as tmp:
            os.replace(self._partial, tmp)
        self._cleanup.detach()
        self.state = "built"

    def describe(self) -> str:
        if self.state == "reused":
            return f"disk cache {self.folder} reused"
        if self.state == "built":
            return f"disk cache {self.folder} built"
        return f"disk cache {self.folder} built as files are first read"


class RowFile:
    """A .npy file of uint8 rows read and written row by row with pread and pwrite.

    Not memory-mapped: a mapped file's pages count in the process's resident memory as they are touched, so a
    30,000-photo cache read through a map showed 6.4 GB of RSS (benchmarks/RESULTS-input.md); rows read into
    fresh arrays count only while the arrays live, and the file's pages stay in the kernel's page cache.
    """

    def __init__(self, path: Path, fd: int, shape: tuple, dtype, offset: int):
        self.path, self.shape, self.dtype, self.offset = path, tuple(shape), np.dtype(dtype), offset
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path) -> RowFile:
        """An existing .npy file, read-only."""
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        if fortran or len(shape) < 1:
            raise ValueError(f"{path}: not a C-ordered array of rows")
        return cls(path, os.open(path, os.O_RDONLY), shape, dtype, offset)

    @classmethod
    def create(cls, path: Path, shape: tuple) -> RowFile:
        """A new .npy file of uint8 rows of ``shape`` (zeros until written; sparse where the filesystem allows)."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            offset = handle.tell()
            handle.truncate(offset + int(np.prod(shape)))
        return cls(path, os.open(path, os.O_RDWR), shape, np.uint8, offset)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, as a new array."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        view = memoryview(out.reshape(len(rows), -1)).cast("B")
        for index, row in enumerate(rows):
            start = index * self.row_bytes
            if os.preadv(self._fd, [view[start : start + self.row_bytes]], self.offset + int(row) * self.row_bytes) != (
                self.row_bytes
            ):
                raise OSError(f"{self.path}: row {int(row)} is cut short")
        return out

    def read_all(self) -> np.ndarray:
        """Every row, as a new array."""
        return np.fromfile(self.path, dtype=self.dtype, count=int(np.prod(self.shape)), offset=self.offset).reshape(
            self.shape
        )

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (one per row) at ``rows``."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        for row, value in zip(rows, values):
            os.pwrite(self._fd, value.tobytes(), self.offset + int(row) * self.row_bytes)

    def sync(self) -> None:
        """Flush what was written to the disk."""
        os.fsync(self._fd)

    def close(self) -> None:
        self._closer()


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def _remove_stale_partials(folder: Path) -> None:
    """Remove the unfinished cache files of processes on this host that no longer run."""
    host = socket.gethostname()
    for path in folder.glob(f".{PIXELS}.*{PARTIAL_SUFFIX}"):
        owner_host, _, pid = path.name[: -len(PARTIAL_SUFFIX)].rpartition(".")
        if not owner_host.endswith("." + host) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # alive, under another user
            pass
