"""The ``images`` source: a folder with one subfolder of images per class; and the image reading predict shares.

Training and predict read images through the same function (Pillow: decode,
convert to the colour mode, resize with the same filter), so a file gives
the model exactly the same pixels in both.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .sources import RawData

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


def read_images(paths: list[Path], settings: ImageSettings, error=DataError) -> np.ndarray:
    """Many image files as one uint8 array; large images are decoded on several threads.

    Pillow releases the GIL while decoding, which pays for big JPEGs (1.9x on 2 cores) but not for small
    PNGs, where threads contend for the GIL (2x slower, measured): the first files, read on one thread,
    decide.
    """
    out = np.empty([len(paths), *settings.shape], dtype=np.uint8)
    probe = min(len(paths), PROBE_IMAGES)
    started = time.perf_counter()
    for index in range(probe):
        out[index] = read_image(paths[index], settings, error)
    per_image = (time.perf_counter() - started) / max(probe, 1)
    workers = min(8, os.cpu_count() or 1, max(1, len(paths) - probe))
    if workers == 1 or per_image < THREADED_DECODE_SECONDS:
        workers = 1

    def fill(indices: range) -> None:
        for index in indices:
            out[index] = read_image(paths[index], settings, error)

    # One contiguous slice per thread: a task per file costs more than decoding a small image.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, [range(probe + w, len(paths), workers) for w in range(workers)]))
    return out


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


def _check_fits_in_memory(count: int, settings: ImageSettings, root: Path) -> None:
    """Refuse, before decoding, a folder whose pixels (uint8, then float32 for training) would not fit in RAM."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every platform reports it
        return
    needed = count * int(np.prod(settings.shape)) * (1 + 4)
    if needed > 0.8 * memory:
        raise DataError(
            f"{root}: {count:,} images of {settings.shape} need about {needed / 2**30:.1f} GiB in memory "
            f"(uint8, then float32), more than this machine's {memory / 2**30:.1f} GiB allows; "
            "use a smaller data.image_size or fewer images"
        )


def settings_from_config(config) -> ImageSettings:
    return ImageSettings(
        size=tuple(config.image_size), color_mode=config.color_mode, interpolation=config.interpolation
    )


def load(config, **_) -> RawData:
    """Read every image of every class folder, resized to ``image_size``, as uint8."""
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
    files, labels = list_class_images(root, classes)
    settings = settings_from_config(config)
    _check_fits_in_memory(len(files), settings, root)
    x = read_images(files, settings)
    label_index = {name: i for i, name in enumerate(classes)}
    y = np.array([label_index[name] for name in labels], dtype=np.int64)
    return RawData(x=x, y=y, class_names=classes)


def preprocessing_kind(config) -> dict:
    """Preprocessing's kind and extra for an images config: predict reads new files with the same settings."""
    return {"kind": "image", "extra": {"image": settings_from_config(config).to_dict()}}
