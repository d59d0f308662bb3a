"""The disk cache of decoded images: where it lives, what an unfinished one leaves behind."""

from __future__ import annotations

import gc
import os
import socket

import numpy as np

from dltool.data.image_cache import DiskCache, cache_root

SHAPE = [2, 3, 1]


def test_the_cache_lives_in_dltool_cache_dir_else_the_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("DLTOOL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dltool" / "images"


def test_an_unfinished_cache_is_removed_when_let_go_and_a_dead_process_file_by_the_next_run(tmp_path):
    folder = tmp_path / "0123456789abcdef"
    folder.mkdir()
    dead = folder / f".pixels.npy.abc123.{socket.gethostname()}.{2**22 + 12345}.partial"  # beyond pid_max
    alive = folder / f".pixels.npy.def456.{socket.gethostname()}.{os.getpid()}.partial"
    elsewhere = folder / ".pixels.npy.ghi789.otherhost.1.partial"
    for path in (dead, alive, elsewhere):
        path.write_bytes(b"")
    cache = DiskCache(folder, 3, SHAPE, {"size": [2, 3]})
    cache.store(np.array([0]), np.ones([1, *SHAPE], np.uint8))  # the first row opens its own unfinished file
    names = sorted(path.name for path in folder.iterdir())
    assert dead.name not in names and alive.name in names and elsewhere.name in names
    assert len(names) == 3
    del cache
    gc.collect()
    assert sorted(path.name for path in folder.iterdir()) == sorted([alive.name, elsewhere.name])


def test_a_complete_cache_is_renamed_into_place_and_read_back(tmp_path):
    folder = tmp_path / "fedcba9876543210"
    cache = DiskCache(folder, 3, SHAPE, {"size": [2, 3]})
    pixels = np.arange(3 * 6, dtype=np.uint8).reshape(3, *SHAPE)
    cache.store(np.array([2, 0]), pixels[[2, 0]])
    cache.unreadable(np.array([1]))  # a file that cannot be read counts as done, and is listed
    assert cache.state == "built" and sorted(os.listdir(folder)) == ["listing.json", "pixels.npy"]
    again = DiskCache(folder, 3, SHAPE, {"size": [2, 3]})
    assert again.state == "reused" and again.cached(np.arange(3)).tolist() == [True, False, True]
    assert np.array_equal(again.read(np.array([0, 2])), pixels[[0, 2]])
    assert DiskCache(folder, 4, SHAPE, {"size": [2, 3]}).state == "building"  # another listing: not this file
