"""The keras-io way to train on a folder of images: image_dataset_from_directory, prefetch, fit, evaluate.

    python benchmarks/plain_keras_images.py FOLDER [--epochs 2] [--image-size 224] [--batch-size 64]
    python benchmarks/plain_keras_images.py --synthetic 2048 [--image-size 224] [--epochs 2]

The model is measure_input.py's small strided CNN. FOLDER holds one subfolder per class; 20 % of its files are
held out (keras's validation_split with a fixed seed) and the model is tested on them. --synthetic N trains
the same model on N random images held in memory (no decoding, no files): the rate the model alone consumes
images at on this machine.

Prints one JSON line: fit_seconds, first_step_seconds (from this process's start to the end of the first
training batch), epoch_seconds, train_images, test_images, images_per_second (during fit), test_accuracy.
"""

import os
import time
from pathlib import Path


def _process_started() -> float:
    """time.time() when this process started (Linux: /proc/self/stat, 10 ms ticks), else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


PROCESS_STARTED = _process_started()  # before the imports below: they are part of the time to the first step

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

SPLIT_SEED = 1337  # keras-io's examples use this seed for validation_split


def build_model(keras, side: int, classes: int):
    """Rescaling(1/255), three strided convolutions, global pooling, softmax: the benchmark's CNN."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((side, side, 3)),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(16, 5, strides=4, activation="relu"),
            layers.Conv2D(32, 3, strides=2, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, strides=2, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def timing_callback(keras):
    """A callback that notes when the first training batch ends and how long each epoch takes."""

    class Timing(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_step_seconds = None
            self.epoch_seconds: list[float] = []
            self._epoch_start = 0.0

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step_seconds is None:
                self.first_step_seconds = time.time() - PROCESS_STARTED

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    return Timing()


def folder_datasets(tf, keras, folder: str, side: int, batch_size: int):
    """keras-io's pipeline: train and held-out datasets straight from the folder, prefetched."""
    train, test = keras.utils.image_dataset_from_directory(
        folder,
        validation_split=0.2,
        subset="both",
        seed=SPLIT_SEED,
        image_size=(side, side),
        batch_size=batch_size,
    )
    classes = len(train.class_names)
    train_images = len(train.file_paths)
    test_images = len(test.file_paths)
    return train.prefetch(tf.data.AUTOTUNE), test.prefetch(tf.data.AUTOTUNE), classes, train_images, test_images


def synthetic_datasets(tf, count: int, side: int, batch_size: int):
    """``count`` random uint8 images and labels, batched and cached in memory: no decoding at all."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)
    y = rng.integers(0, 10, count)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)
    return train, train, 10, count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a folder with one subfolder of images per class")
    parser.add_argument("--synthetic", type=int, metavar="N", help="train on N random in-memory images instead")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, help="keras.utils.set_random_seed(SEED) first: initial weights, shuffles")
    args = parser.parse_args()
    if (args.folder is None) == (args.synthetic is None):
        parser.error("give either FOLDER or --synthetic N")

    import keras
    import tensorflow as tf

    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    if args.synthetic:
        datasets = synthetic_datasets(tf, args.synthetic, args.image_size, args.batch_size)
    else:
        datasets = folder_datasets(tf, keras, args.folder, args.image_size, args.batch_size)
    train, test, classes, train_images, test_images = datasets
    model = build_model(keras, args.image_size, classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timing = timing_callback(keras)
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=0, callbacks=[timing])
    fit_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(test, verbose=0)
    print(
        json.dumps(
            {
                "fit_seconds": round(fit_seconds, 3),
                "first_step_seconds": round(timing.first_step_seconds, 3),
                "epoch_seconds": [round(s, 3) for s in timing.epoch_seconds],
                "train_images": train_images,
                "test_images": test_images,
                "images_per_second": round(train_images * args.epochs / fit_seconds, 1),
                "test_accuracy": round(float(accuracy), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
