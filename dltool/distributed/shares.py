"""Every batch, the last one included, splits evenly over the devices: the splits made multiples of the device
count. (Each process's share of a batch is its :class:`~dltool.distributed.ProcessGroup`'s.)"""

from __future__ import annotations


def even_splits(data, count: int, *, test: bool = True) -> dict[str, int]:
    """Leave out the last few samples of each in-memory split so its size is a multiple of ``count`` devices.

    On JAX every batch, the last one included, must split evenly over the devices; with batch_size a multiple
    of ``count`` that holds once the split's size is. At most ``count - 1`` samples per split; returns how many.
    ``test=False`` keeps the test split whole (several processes: process 0 tests alone).
    """
    left_out = {}
    validation_is_test = getattr(data, "x_val", None) is not None and data.x_val is data.x_test
    for name, (x, y) in {
        "train": ("x_train", "y_train"),
        "validation": ("x_val", "y_val"),
        "test": ("x_test", "y_test"),
    }.items():
        array = getattr(data, x, None)
        # Validation that is the test split follows it, unless the test split stays whole.
        if array is None or (name == "validation" and validation_is_test and test) or (name == "test" and not test):
            continue
        extra = len(array) % count
        if extra:
            setattr(data, x, array[: len(array) - extra])
            setattr(data, y, getattr(data, y)[: len(array) - extra])
            left_out[name] = extra
    if validation_is_test and test:  # one array for both, as before
        data.x_val, data.y_val = data.x_test, data.y_test
    return left_out


def even_batches(data, devices: int) -> dict[str, int]:
    """One process on several JAX devices: every batch, the last one included, splits evenly over them.

    In-memory splits lose their last few samples (:func:`even_splits`); a streamed CSV, the last rows of each
    split's last batch. Returns how many, per split.
    """
    if data.in_memory:
        return even_splits(data, devices)
    return data.share_batches(1, 0, devices)
