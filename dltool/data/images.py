"""The ``images`` source: a folder with one subfolder of images per class; and the image reading predict shares.

Training and predict read images through the same function (Pillow: decode,
convert to the colour mode, resize with the same filter), so a file gives
the model exactly the same pixels in both.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .sources import RawData, SplitRows

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
PROBE_IMAGES = 32  # decoded on one thread first, to time them
THREADED_DECODE_SECONDS = 0.0005  # threads pay off above about this much decoding per image


@dataclass(frozen=True)
class ImageSettings:
    """How a file becomes a sample: [height, width], colour mode, resize filter, and whether it has a channel axis."""

    size: tuple[int, int]
    color_mode: str = "rgb"
    interpolation: str = "bilinear"
    channel_axis: bool = True

    @property
    def shape(self) -> list[int]:
        """The sample shape these settings produce."""
        height, width = self.size
        return [height, width, CHANNELS[self.color_mode]] if self.channel_axis else [height, width]

    def to_dict(self) -> dict:
        """Plain data for preprocessing.json."""
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: dict) -> ImageSettings:
        """Read back what :meth:`to_dict` wrote."""
        return cls(**{**data, "size": tuple(data["size"])})

    @classmethod
    def for_input_shape(cls, shape: list[int]) -> ImageSettings | None:
        """Settings that turn a file into samples of ``shape`` ([h, w] or [h, w, 1|3|4]); None if not image-like."""
        if len(shape) == 2:
            return cls(size=(shape[0], shape[1]), color_mode="grayscale", channel_axis=False)
        if len(shape) == 3 and shape[2] in (1, 3, 4):
            mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[2]]
            return cls(size=(shape[0], shape[1]), color_mode=mode)
        return None


def read_image(path: Path, settings: ImageSettings, error=DataError) -> np.ndarray:
    """One image file as a uint8 array of ``settings.shape``; an unreadable file is an ``error`` naming it."""
    from PIL import Image, UnidentifiedImageError

    resample = getattr(Image.Resampling, settings.interpolation.upper())
    height, width = settings.size
    try:
        with Image.open(path) as image:
            image = image.convert(_PIL_MODES[settings.color_mode])
            if image.size != (width, height):
                image = image.resize((width, height), resample=resample)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise error(
            f"{path}: cannot read as an image ({type(exc).__name__}); expected a PNG, JPEG, BMP, GIF or WebP file"
        ) from None
    if settings.channel_axis and pixels.ndim == 2:
        pixels = pixels[..., None]
    return pixels


def read_images(
    paths: list[Path], settings: ImageSettings, error=DataError, unreadable: list[tuple[int, str]] | None = None
) -> np.ndarray:
    """Many image files as one uint8 array; large images are decoded on several threads.

    ``unreadable`` (default None: an unreadable file raises ``error``): a list that gets (index, message) of each
    file that cannot be read, whose row is left as zeros.

    Pillow releases the GIL while decoding, which pays for big JPEGs (1.9x on 2 cores) but not for small
    PNGs, where threads contend for the GIL (2x slower, measured): the first files, read on one thread,
    decide.
    """
    out = np.zeros([len(paths), *settings.shape], dtype=np.uint8)
    lock = threading.Lock()

    def read(index: int) -> None:
        try:
            out[index] = read_image(paths[index], settings, error)
        except error as exc:
            if unreadable is None:
                raise
            with lock:
                unreadable.append((index, str(exc)))

    probe = min(len(paths), PROBE_IMAGES)
    started = time.perf_counter()
    for index in range(probe):
        read(index)
    per_image = (time.perf_counter() - started) / max(probe, 1)
    workers = decode_workers(per_image, len(paths) - probe)

    def fill(indices: range) -> None:
        for index in indices:
            read(index)

    # One contiguous slice per thread: a task per file costs more than decoding a small image.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, [range(probe + w, len(paths), workers) for w in range(workers)]))
    if unreadable is not None:
        unreadable.sort()
    return out


def decode_threads() -> int:
    """The most threads images are decoded on: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def decode_workers(seconds_per_image: float, images: int) -> int:
    """Threads worth decoding ``images`` files that take ``seconds_per_image`` each on one thread (see read_images)."""
    if seconds_per_image < THREADED_DECODE_SECONDS:
        return 1
    return max(1, min(decode_threads(), images))


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def subfolders(root: Path) -> list[str]:
    """The names of ``root``'s visible subfolders, sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folders(root: Path, classes: list[str] | None, error=DataError) -> list[str]:
    """The class subfolder names of ``root``: ``classes`` in that order, else every subfolder, sorted."""
    if not root.is_dir():
        raise error(
            f"{root}: {'is a file' if root.exists() else 'not found'}; expected a folder with one subfolder per class"
        )
    found = subfolders(root)
    if classes is None:
        if len(found) < 2:
            loose = sum(1 for p in root.iterdir() if is_image_file(p))
            raise error(
                f"{root}: expected one subfolder per class (at least 2), found {len(found)} subfolder(s)"
                + (f" and {loose} loose image(s); move each image into the folder of its class" if loose else "")
            )
        return found
    for name in classes:
        if name not in found:
            raise error(
                f"no class folder '{name}' in {root}{did_you_mean(name, found)}; "
                f"its subfolders are {', '.join(found) or 'none'}"
            )
    return list(classes)


def list_class_images(root: Path, classes: list[str], error=DataError) -> tuple[list[Path], list[str]]:
    """Every image file under each class folder (recursively, sorted) and its class name."""
    files, labels = [], []
    for name in classes:
        found = sorted(p for p in (root / name).rglob("*") if is_image_file(p))
        if not found:
            raise error(f"{root / name}: the class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [name] * len(found)
    return files, labels


def physical_memory() -> int | None:
    """This machine's physical memory in bytes; None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def in_memory_bytes(count: int, settings: ImageSettings) -> int:
    """What loading ``count`` images into memory takes: their uint8 pixels, then the float32 ones for training."""
    return count * int(np.prod(settings.shape)) * (1 + 4)


def _check_fits_in_memory(count: int, settings: ImageSettings, root: Path) -> None:
    """Refuse, before decoding, a folder whose pixels (uint8, then float32 for training) would not fit in RAM."""
    memory = physical_memory()
    if memory is None:
        return
    needed = in_memory_bytes(count, settings)
    if needed > 0.8 * memory:
        raise DataError(
            f"{root}: {count:,} images of {settings.shape} need about {needed / 2**30:.1f} GiB in memory "
            f"(uint8, then float32), more than this machine's {memory / 2**30:.1f} GiB allows; "
            "set data.stream: true (or auto) to read them from disk batch by batch, or use a smaller "
            "data.image_size or fewer images"
        )


def settings_from_config(config) -> ImageSettings:
    return ImageSettings(
        size=tuple(config.image_size), color_mode=config.color_mode, interpolation=config.interpolation
    )


@dataclass
class FolderListing:
    """An image folder's files, found without decoding any: the class names, each file and its class index."""

    root: Path
    classes: list[str]
    files: list[Path]  # class by class, each class's files sorted
    labels: np.ndarray  # int64 class index per file

    def relative_path(self, row: int) -> str:
        """File ``row``'s path below the root, with / separators."""
        return self.files[row].relative_to(self.root).as_posix()


def list_folder(config) -> FolderListing:
    """List an images config's class folders and files; a missing folder or class is a ConfigError at its key."""
    root = Path(config.path)
    if not root.is_dir():
        raise ConfigError(
            f"image folder {'is a file' if root.exists() else 'not found'}: {root}; "
            "expected a folder with one subfolder per class",
            path="data.path",
        )
    try:
        classes = class_folders(root, config.classes, error=ConfigError)
    except ConfigError as exc:
        raise ConfigError(exc.detail, path="data.classes" if config.classes else "data.path") from None
    files, names = list_class_images(root, classes)
    label_index = {name: i for i, name in enumerate(classes)}
    return FolderListing(root, classes, files, np.array([label_index[name] for name in names], dtype=np.int64))


def _rounded(value: float) -> int:
    return int(np.floor(value + 0.5))  # half up: Python's round(2.5) is 2


def _apportion(fraction: float, sizes: np.ndarray) -> np.ndarray:
    """How many of each class's ``sizes`` files to hold out: round(fraction x all files) in all, each class its
    share rounded down and then one more for the largest remainders (the first class on a tie), as scikit-learn's
    stratified splits do; each class keeps at least one file."""
    room = np.maximum(sizes - 1, 0)
    exact = fraction * sizes
    counts = np.minimum(np.floor(exact).astype(np.int64), room)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    total = min(_rounded(fraction * sizes.sum()), int(room.sum()))
    while counts.sum() < total:
        for index in order:
            if counts.sum() < total and counts[index] < room[index]:
                counts[index] += 1
    return counts


def split_by_class(listing: FolderListing, data_config, seed: int) -> SplitRows:
    """The train, validation and test rows of an image folder, from its files' paths alone, stratified by class.

    Each class's files are put in a random order seeded with (``seed``, the class's name); its first files are
    test files and the next ones validation files, as many as :func:`_apportion` gives the class (test of all
    files, validation of those left). A class's order does not change when another class gains or loses files.
    The rows of each split are in listing order. In-memory and streamed image folders both split here, so a file
    is in the same split either way.
    """
    if data_config.test == "builtin":
        raise ConfigError(
            "data source 'images' has no test split of its own; set data.test to a fraction such as 0.2",
            path="data.test",
        )
    test = 0.2 if data_config.test == "auto" else data_config.test
    validation = data_config.validation if isinstance(data_config.validation, float) else None
    by_class = [np.flatnonzero(listing.labels == index) for index in range(len(listing.classes))]
    by_class = [
        rows[np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(len(rows))]
        for rows, name in zip(by_class, listing.classes)
    ]
    sizes = np.array([len(rows) for rows in by_class])
    n_test = _apportion(test, sizes)
    n_val = _apportion(validation, sizes - n_test) if validation else np.zeros_like(sizes)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for rows, tests, vals in zip(by_class, n_test, n_val):
        parts["test"].append(rows[:tests])
        parts["validation"].append(rows[tests : tests + vals])
        parts["train"].append(rows[tests + vals :])
    train, val, held_out = (np.sort(np.concatenate(parts[name])) for name in ("train", "validation", "test"))
    if len(held_out) == 0:
        raise DataError(
            f"{listing.root}: cannot hold out a fraction {test:g} of each class's files: the classes are too small "
            f"({len(listing.files)} files in {len(listing.classes)} classes) to give the test split a file; "
            "add images or raise data.test"
        )
    if validation and len(val) == 0:
        raise DataError(
            f"{listing.root}: cannot hold out a fraction {validation:g} of each class's training files for "
            f"validation: the classes are too small ({len(listing.files)} files in {len(listing.classes)} classes); "
            "add images, raise data.validation, or set it to test or null"
        )
    return SplitRows(
        train=train,
        validation=val if validation else None,
        test=held_out,
        description=f"fraction {test:g} of each class (seed {seed})",
    )


SKIP_HINT = "or set data.on_bad_file: skip to leave such files out"


def unreadable_note(count: int, examples: list[str]) -> str:
    """The run's note on the files that were left out (data.on_bad_file: skip): how many, and the first few
    (``examples``: their paths below the folder)."""
    shown = "; ".join(examples[:3]) + ("; ..." if count > 3 else "")
    return f"data.on_bad_file: skip left out {count} unreadable image file(s): {shown}"


def _drop_rows(split: SplitRows, keep: np.ndarray) -> SplitRows:
    """``split`` for the rows that ``keep`` keeps, renumbered."""
    renumbered = np.cumsum(keep) - 1

    def remap(rows):
        return None if rows is None else renumbered[rows[keep[rows]]]

    return SplitRows(remap(split.train), remap(split.validation), remap(split.test), split.description)


def load(config, *, seed: int = 0, **_) -> RawData:
    """Read every image of every class folder, resized to ``image_size``, as uint8, and its stratified splits.

    ``data.cache: disk`` reads the folder's disk cache instead of decoding when it is complete, and writes it
    when not; ``data.on_bad_file: skip`` leaves unreadable files out (a warning names them).
    """
    from .image_cache import DiskCache, cache_root, listing_fingerprint

    listing = list_folder(config)
    settings = settings_from_config(config)
    split = split_by_class(listing, config, config.split_seed if config.split_seed is not None else seed)
    _check_fits_in_memory(len(listing.files), settings, listing.root)
    skip = config.on_bad_file == "skip"
    unreadable: list[tuple[int, str]] = []
    cache = None
    if config.cache == "disk":
        key = listing_fingerprint(
            listing.root, listing.files, [listing.classes[i] for i in listing.labels], settings.to_dict()
        )
        cache = DiskCache(cache_root() / key, len(listing.files), settings.shape, settings.to_dict())
    try:
        if cache is not None and cache.state == "reused":
            x = cache.read_all()
            again = np.flatnonzero(~cache.filled)  # files no run could read: read (and fail, or skip) again
            for row, pixels in zip(
                again, read_images([listing.files[r] for r in again], settings, unreadable=unreadable if skip else None)
            ):
                x[row] = pixels
            unreadable = [(int(again[i]), message) for i, message in unreadable]
        else:
            x = read_images(listing.files, settings, unreadable=unreadable if skip else None)
            if cache is not None and cache.fits() is None:
                cache.save_all(x, [row for row, _ in unreadable])
    except DataError as exc:
        raise DataError(f"{exc}; {SKIP_HINT}") from None
    warnings = []
    if unreadable:
        keep = np.ones(len(listing.files), dtype=bool)
        keep[[row for row, _ in unreadable]] = False
        x, split = x[keep], _drop_rows(split, keep)
        listing.labels = listing.labels[keep]
        warnings.append(unreadable_note(len(unreadable), [listing.relative_path(row) for row, _ in unreadable[:3]]))
    return RawData(x=x, y=listing.labels, class_names=listing.classes, split=split, warnings=warnings)


def preprocessing_kind(config) -> dict:
    """Preprocessing's kind and extra for an images config: predict reads new files with the same settings."""
    return {"kind": "image", "extra": {"image": settings_from_config(config).to_dict()}}
