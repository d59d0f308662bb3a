"""Engines for decoding a streamed image folder, side by side (issue 22): images per second over one pass.

    .venv/bin/python benchmarks/measure_image_stream.py                # 400 PNGs of 224x224 in a temporary folder
    .venv/bin/python benchmarks/measure_image_stream.py --images 1000 --repeats 3 --grain

Every engine decodes the same files with dltool.data.images.read_image (Pillow, what predict uses) into batches
of 32 in file order, after one warm-up pass: one thread; dltool's StreamedImages (a thread pool, one batch per
task, as many threads as it chooses, then 1, 2 and 4 forced); tf.data (``map`` of a ``numpy_function`` with
``num_parallel_calls=AUTOTUNE``, deterministic, prefetched); Grain with threads (``--grain``: ``pip install
grain``) and with 2 worker processes. The PNGs are smooth gradients with noise, about as compressible as photos.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 32
SIZE = 224


def write_folder(root: Path, images: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for index in range(images):
        folder = root / f"class_{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([x * rng.uniform(0.2, 1), y * rng.uniform(0.2, 1), (x + y) * rng.uniform(0.1, 0.5)], axis=-1)
        pixels = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")


def config(root: Path):
    from dltool.config import config_from_text

    return config_from_text(f"""
name: engines
seed: 0
data: {{source: images, path: {json.dumps(str(root))}, image_size: [{SIZE}, {SIZE}], stream: true, test: 0.1, validation: null}}
model: {{input_shape: [{SIZE}, {SIZE}, 3], layers: [Flatten, {{Dense: {{units: 4, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, batch_size: {BATCH}}}
""")


def timed(passes: int, run) -> float:
    """Best seconds of ``passes`` passes (after one warm-up)."""
    run()
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--grain", action="store_true", help="also Grain (needs `pip install grain`)")
    args = parser.parse_args()

    from dltool.data.image_stream import prepare_streamed_images
    from dltool.data.images import read_image, settings_from_config

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "photos"
        write_folder(root, args.images)
        data = prepare_streamed_images(config(root))
        files, settings = data.listing.files, settings_from_config(data.config.data)
        count = len(files)
        results = {}

        def one_thread():
            for start in range(0, count, BATCH):
                np.stack([read_image(path, settings) for path in files[start : start + BATCH]])

        results["one thread (read_image loop)"] = timed(args.repeats, one_thread)
        chosen = data.workers
        for workers in dict.fromkeys([chosen, 1, 2, 4]):
            data = prepare_streamed_images(config(root))
            data.workers = workers
            rows = np.sort(np.concatenate(list(data._rows.values())))

            def streamed(data=data, rows=rows):
                for _ in data._batches([rows[s : s + BATCH] for s in range(0, count, BATCH)], None):
                    pass

            label = f"dltool StreamedImages, {workers} thread(s)" + (" (chosen)" if workers == chosen else "")
            results[label] = timed(args.repeats, streamed)

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        names = np.array([str(path) for path in files])

        def decode(path):
            return read_image(Path(path.decode()), settings)

        dataset = (
            tf.data.Dataset.from_tensor_slices(names)
            .map(
                lambda path: tf.numpy_function(decode, [path], tf.uint8),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .batch(BATCH)
            .prefetch(tf.data.AUTOTUNE)
        )
        results["tf.data map(numpy_function, AUTOTUNE)"] = timed(args.repeats, lambda: [None for _ in dataset])

        if args.grain:
            import grain
            from absl import flags

            flags.FLAGS.mark_as_parsed()  # Grain's worker processes read absl flags

            source = grain.MapDataset.source([str(path) for path in files]).map(lambda p: read_image(Path(p), settings))
            batched = source.batch(BATCH)
            for threads in (1, 2):
                options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4 * BATCH)
                results[f"Grain, {threads} thread(s)"] = timed(
                    args.repeats, lambda options=options: [None for _ in batched.to_iter_dataset(options)]
                )
            processes = batched.to_iter_dataset(grain.ReadOptions(num_threads=1)).mp_prefetch(
                grain.MultiprocessingOptions(num_workers=2)
            )
            results["Grain, 2 worker processes"] = timed(args.repeats, lambda: [None for _ in processes])

    print(f"{count} PNGs of {SIZE}x{SIZE} RGB, batches of {BATCH}, {os.cpu_count()} cores; best of {args.repeats}")
    print("| engine | seconds per pass | images/s |")
    print("| --- | ---: | ---: |")
    for label, seconds in results.items():
        print(f"| {label} | {seconds:.2f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    main()
