#!/usr/bin/env python3
"""Issue 23: one real keras.applications architecture end to end, offline. MobileNetV3Small is trained from scratch
(`weights: none`, `trainable: true`) on MNIST digits 0-4 as 32x32 RGB PNGs; its pretrained layers are saved as a
weights file (`save_weights`), which a second run loads (`weights: PATH`) as a frozen backbone, then fine-tunes, on
digits 5-9 with 20 images per class; that run is exported to ONNX and verified. Beside it, the same task with the
same architecture from scratch. Prints a markdown section for RESULTS-transfer.md.

    python benchmarks/measure_transfer_application.py     # about 3 minutes on 2 cores

Everything goes through the CLI a user runs (`dltool train`, `dltool export`), in subprocesses; this process only
writes the PNGs and reads the run folders (and imports Keras once, to save the pretrained layers' weights file).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
DLTOOL = [sys.executable, "-m", "dltool"]

CONFIG = """\
name: {name}
seed: {seed}
data: {{source: images, path: {folder}, image_size: [32, 32], color_mode: rgb, scale: 255, test: {test},
        validation: null}}
model:
  input_shape: [32, 32, 3]
  layers:
    - Backbone: {backbone}
    - {{Dense: {{units: 5, activation: softmax}}}}
train:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: {batch}
  tensorboard: false
{fine_tune}"""


def write_pngs(
    folder: Path, images: np.ndarray, labels: np.ndarray, digits: tuple[int, ...], per_class: int, seed: int
):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for digit in digits:
        chosen = rng.permutation(np.flatnonzero(labels == digit))[:per_class]
        (folder / str(digit)).mkdir(parents=True)
        for index in chosen:
            Image.fromarray(images[index]).save(folder / str(digit) / f"{index}.png")


def train(config: Path, runs: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    subprocess.run([*DLTOOL, "train", str(config), "--runs-dir", str(runs), "-q"], check=True, capture_output=True)
    return max(runs.iterdir(), key=lambda p: p.stat().st_mtime), time.perf_counter() - start


def figures(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "run.json").read_text())
    return {"accuracy": metrics["test"]["accuracy"], "fit_seconds": metrics["fit_seconds"], "info": info}


def main() -> None:
    mnist = np.load(MNIST)
    work = Path(tempfile.mkdtemp(prefix="dltool-transfer-app-"))
    runs = work / "runs"
    write_pngs(work / "pretrain", mnist["x_train"], mnist["y_train"], (0, 1, 2, 3, 4), 500, seed=0)
    write_pngs(work / "task", mnist["x_train"], mnist["y_train"], (5, 6, 7, 8, 9), 220, seed=1)  # 20 train, 200 test
    load = os.getloadavg()[0]

    def config(name, folder, backbone, epochs, fine_tune="", test=0.2, seed=0, batch=32) -> Path:
        path = work / f"{name}.yaml"
        text = CONFIG.format(
            name=name,
            seed=seed,
            folder=folder,
            backbone=backbone,
            epochs=epochs,
            fine_tune=fine_tune,
            test=test,
            batch=batch,
        )
        path.write_text(text)
        return path

    # Batches of 8 for 10 epochs: 2,500 steps, enough for BatchNormalization's moving statistics (momentum 0.999 in
    # MobileNetV3) to leave their initial values; at 5 epochs of 32 (315 steps) the test accuracy was chance (0.200)
    # while the training accuracy reached 0.988.
    pre, pre_wall = train(
        config(
            "pretrain",
            work / "pretrain",
            "{application: MobileNetV3Small, weights: none, trainable: true}",
            10,
            batch=8,
        ),
        runs,
    )
    weights = work / "mobilenet_v3_small_digits.weights.h5"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keras; m = keras.saving.load_model(sys.argv[1]); "
            "m.get_layer('backbone').get_layer('pretrained').save_weights(sys.argv[2])",
            str(pre / "model.keras"),
            str(weights),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    task_test = 200 / 220
    tuned, tuned_wall = train(
        config(
            "from-file",
            work / "task",
            f"{{application: MobileNetV3Small, weights: {weights}}}",
            20,
            "  fine_tune: {unfreeze: all, epochs: 10, learning_rate: 1.0e-4}\n",
            test=task_test,
        ),
        runs,
    )
    scratch, scratch_wall = train(
        config(
            "scratch",
            work / "task",
            "{application: MobileNetV3Small, weights: none, trainable: true}",
            30,
            test=task_test,
        ),
        runs,
    )
    export = subprocess.run([*DLTOOL, "export", str(tuned), "--format", "onnx"], capture_output=True, text=True)
    exports = json.loads((tuned / "exports.json").read_text()) if (tuned / "exports.json").is_file() else []
    onnx = next((e for e in exports if e.get("format") == "onnx"), {})

    p, t, s = figures(pre), figures(tuned), figures(scratch)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    print("## One keras.applications architecture: MobileNetV3Small, offline\n")
    print(f"`python benchmarks/measure_transfer_application.py`, load average {load:.2f} at the start (2 cores).\n")
    print("| run | data | backbone | test accuracy | fit s | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| pretraining | digits 0-4, 2,000 train / 500 test, 10 epochs of batch 8 | weights: none, trainable: true | "
        f"{p['accuracy']:.3f} | {p['fit_seconds']:.0f} | {pre_wall:.0f} |"
    )
    print(
        f"| from the weights file | digits 5-9, 20 train / 200 test, 20 frozen + 10 fine-tuning epochs | "
        f"weights: PATH (its pretrained layers, save_weights) | {t['accuracy']:.3f} | {t['fit_seconds']:.0f} | "
        f"{tuned_wall:.0f} |"
    )
    print(
        f"| from scratch | the same task, 30 epochs | weights: none, trainable: true | {s['accuracy']:.3f} | "
        f"{s['fit_seconds']:.0f} | {scratch_wall:.0f} |"
    )
    phases = t["info"].get("phases", [])
    recorded = t["info"].get("backbone", {}).get("weights_sha256")
    print()
    print(
        f"- The weights file's SHA-256 in run.json {'equals' if recorded == sha else 'DIFFERS FROM'} the file's "
        f"({sha[:16]}...); parameters per phase: "
        + "; ".join(f"phase {ph['phase']}: {ph['trainable']:,} trainable, {ph['frozen']:,} frozen" for ph in phases)
    )
    if export.returncode == 0 and onnx:
        print(
            f"- `dltool export --format onnx`: verified, max abs difference {onnx.get('max_abs_diff'):.2g} from "
            f"model.keras over {onnx.get('samples')} test samples"
        )
    else:
        print(f"- `dltool export --format onnx` exited {export.returncode}: {export.stderr.strip()[-300:]}")


if __name__ == "__main__":
    main()
