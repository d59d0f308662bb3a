"""Image models: image files read as training read them, arrays of pixels, and folders of class folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import images
from ..data.images import ImageSettings
from ..data.preprocessing import Preprocessing
from ..errors import InputError
from .base import ARRAY_SUFFIXES, IMAGE_SUFFIXES, TABLE_SUFFIXES, LabelledFile, Rows, Segment
from .table import TableInputs


class ImageInputs(TableInputs):
    """Image files (read as training read them), or their pixels as arrays; an images run also takes class folders."""

    def __init__(self, state: Preprocessing, settings: ImageSettings):
        super().__init__(state)
        self.settings = settings
        self.class_folders = state.kind == "image"  # its classes are folder names

    def suffixes(self, in_folder: bool = False) -> frozenset[str]:
        return IMAGE_SUFFIXES if in_folder else IMAGE_SUFFIXES | ARRAY_SUFFIXES | TABLE_SUFFIXES

    def describe(self) -> str:
        return f"images, or arrays of shape {list(self.state.input_shape)}"

    def read(self, path: Path) -> Iterator[tuple[Rows, np.ndarray]]:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield range(1), images.read_image(path, self.settings, error=InputError)[None]
        else:
            yield from super().read(path)

    def _raw_batches(self, files: list[Path]) -> Iterator[tuple[list[Segment], np.ndarray]]:
        """Consecutive image files grouped into one model call of up to ``chunk_rows`` images."""
        chunk, group = self.chunk_rows, []
        for path in files + [None]:
            is_image = path is not None and path.suffix.lower() in IMAGE_SUFFIXES
            if is_image and len(group) < chunk:
                group.append(path)
                continue
            if group:
                pixels = np.stack([images.read_image(p, self.settings, error=InputError) for p in group])
                yield [(str(p), range(1)) for p in group], pixels
                group = []
            if is_image:
                group.append(path)
            elif path is not None:
                yield from super()._raw_batches([path])

    def labelled(self, path: Path) -> LabelledFile:
        if self.class_folders and path.is_dir():
            return self._labelled_folder(path)
        if self.class_folders and not path.is_file():
            raise InputError(
                f"{path}: file not found; for an image model give a folder with one subfolder per class, or an .npz"
            )
        return super().labelled(path)

    def _labelled_folder(self, root: Path) -> LabelledFile:
        """A folder with one subfolder per class; images decoded a chunk at a time."""
        class_names = self.state.class_names
        found = images.subfolders(root)
        unknown = [name for name in found if name not in class_names]
        if unknown:
            raise InputError(
                f"{root}: subfolder '{unknown[0]}' is not one of the run's classes ({', '.join(class_names)})"
            )
        if not found:
            raise InputError(f"{root}: expected one subfolder per class ({', '.join(class_names)}), found none")
        files, labels = images.list_class_images(root, found, error=InputError)
        chunk = self.chunk_rows

        def read():
            for start in range(0, len(files), chunk):
                yield (
                    images.read_images(files[start : start + chunk], self.settings, error=InputError),
                    np.array(labels[start : start + chunk], dtype=object),
                )

        return LabelledFile(root, self.state, read)
