"""Export trained runs in every format and write the figures: export and verification seconds, max abs difference.

Trains (in-process, nothing downloaded) digits_mlp on scikit-learn's digits, mnist_mlp on the real MNIST
(--mnist, skipped when the file is missing; 3 epochs), lstm_forecaster on the shipped series (5 epochs)
and cifar10_cnn on a random CIFAR-shaped stand-in (1 epoch: the figures are about the export, not the
accuracy). Then each run is exported as saved_model, onnx and litert with `dltool.commands.export.export`,
which reloads the artifact in its runtime and compares up to 256 test samples with model.keras.

    python benchmarks/measure_export.py                      # ~1-2 min on 2 cores
    python benchmarks/measure_export.py --output /tmp/r.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMATS = ("saved_model", "onnx", "litert")
SUFFIX = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}


def _runs(root: Path, mnist: Path) -> list[tuple[str, str, list[str]]]:
    """(config, what it is trained on, --set overrides) for each measured run."""
    from dltool.commands.smoke import smoke_overrides
    from dltool.config import load_config
    from dltool.data.standins import write_stand_in

    runs = [("digits_mlp", "scikit-learn digits, 30 epochs (early stopping)", ["train.plots=false"])]
    if mnist.is_file():
        runs.append(("mnist_mlp", "the real MNIST, 3 epochs", [f"data.path={mnist}", "train.epochs=3"]))
    else:
        print(f"skipped mnist_mlp: {mnist} not found", file=sys.stderr)
    runs.append(("lstm_forecaster", "configs/data/seasonal_series.csv, 5 epochs", ["train.epochs=5"]))
    cifar = load_config(REPO / "configs" / "cifar10_cnn.yaml")
    stand_in = write_stand_in(cifar, root / "cifar", 512, seed=0)
    runs.append(
        ("cifar10_cnn", "random CIFAR-shaped stand-in (512 images), 1 epoch", smoke_overrides(1, False) + stand_in)
    )
    return runs


def measure(mnist: Path) -> list[dict]:
    from dltool.backend import import_keras

    import_keras()
    from dltool.commands.export import export
    from dltool.commands.train import train
    from dltool.config import load_config
    from dltool.errors import ExportError

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, trained_on, overrides in _runs(root, mnist):
            # Trained in this process, on TensorFlow (mnist_mlp ships on JAX): exports convert from TensorFlow anyway.
            config = load_config(
                REPO / "configs" / f"{name}.yaml", ["backend=tensorflow", "train.tensorboard=false", *overrides]
            )
            start = time.perf_counter()
            run = train(config, runs_root=root / "runs")
            print(f"{name}: trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            for fmt in FORMATS:
                start = time.perf_counter()
                try:
                    record = export(run, fmt, output=root / f"{name}-{fmt}{SUFFIX[fmt]}")
                except ExportError as exc:
                    record = {"error": str(exc)}
                record.update(config=name, trained_on=trained_on, fmt=fmt, wall=time.perf_counter() - start)
                print(f"  {fmt}: {record.get('max_abs_diff', record.get('error'))}", file=sys.stderr)
                rows.append(record)
    return rows


def _versions() -> str:
    names = ("tensorflow", "keras", "numpy", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


def write_results(rows: list[dict], output: Path) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Export: verification figures per format",
        "",
        "Each run exported with `dltool export` in every format; each artifact reloaded in its own runtime",
        "(tf.saved_model.load, onnxruntime.InferenceSession, ai-edge-litert's Interpreter) and compared with",
        "model.keras on up to 256 samples of the run's test split. Regenerate (1-2 minutes on 2 cores):",
        "",
        "```bash",
        "python benchmarks/measure_export.py",
        "```",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other work), "
        f"Python {platform.python_version()}",
        f"- Versions: {_versions()}",
        f"- Load average at the end: {load:.2f} (timings vary with it)",
        "",
        "| config | trained on | format | max abs diff | of allowed (rtol, atol) | samples | export s | verify s | total s | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['config']} | {r['trained_on']} | {r['fmt']} | - | - | - | - | - | {r['wall']:.2f} | {r['error']} |"
            )
            continue
        notes = []
        if r.get("opset"):
            notes.append(f"opset {r['opset']}")
        if r.get("batch"):
            notes.append(f"batch {r['batch']} (recurrent)")
        if r.get("left_out"):
            notes.append("left out: " + ", ".join(r["left_out"]))
        lines.append(
            f"| {r['config']} | {r['trained_on']} | {r['fmt']} | {r['max_abs_diff']:.2g} | {r['tolerance_used']:.1%} ({r['rtol']:g}, {r['atol']:g}) | "
            f"{r['samples']} | {r['export_seconds']:.2f} | {r['seconds']:.3f} | {r['wall']:.2f} | {'; '.join(notes)} |"
        )
    lines += [
        "",
        "export s: writing the artifact (conversion); verify s: reloading it in its runtime, running the samples and",
        "comparing; total s: the whole `export` call (loading the run and its test split, model.keras's outputs,",
        "the files beside the artifact).",
    ]
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist.npz")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "RESULTS-export.md")
    args = parser.parse_args()
    rows = measure(args.mnist)
    write_results(rows, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
