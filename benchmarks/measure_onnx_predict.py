"""Issue 11's stretch: 1M-row tabular predict through onnxruntime, no TensorFlow (measured before building it).

Trains configs/regression_mlp.yaml, exports it with `dltool export --format onnx` (verified), writes a 1M-row
CSV of its 4 features, then times, alternating, each of: a prototype that reads the CSV in chunks with NumPy
and runs the ONNX model in onnxruntime (the run's preprocessing is inside the exported model), `dltool predict`
(TensorFlow), and the pandas + `model.predict(batch_size=1024)` script. Appends a section to RESULTS-export.md.

    python benchmarks/measure_onnx_predict.py [--rows 1000000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROTOTYPE = """
import sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
with open(sys.argv[2]) as source, open(sys.argv[3], "w") as out:
    source.readline()
    out.write("row,value\\n")
    row = 0
    while lines := source.readlines(1 << 22):
        y = session.run(None, {name: np.loadtxt(lines, delimiter=",", dtype=np.float32, ndmin=2)})[0][:, 0]
        out.write("".join(f"{i},{v:.6g}\\n" for i, v in zip(range(row, row + len(y)), y)))
        row += len(y)
"""


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory(prefix="dltool-onnx-predict-") as tmp:
        folder = Path(tmp)
        dltool = [sys.executable, "-m", "dltool"]
        subprocess.run(
            [*dltool, "train", str(REPO / "configs/regression_mlp.yaml"), "-q", "--runs-dir", str(folder / "runs")],
            env=env,
            check=True,
            capture_output=True,
        )
        run = next((folder / "runs").iterdir())
        subprocess.run(
            [*dltool, "export", str(run), "--format", "onnx", "-o", str(folder / "model.onnx")],
            env=env,
            check=True,
            capture_output=True,
        )
        rng = np.random.default_rng(0)
        with open(folder / "rows.csv", "w") as out:
            out.write("x0,x1,x2,x3\n")
            for start in range(0, args.rows, 100_000):
                np.savetxt(out, rng.normal(size=(min(100_000, args.rows - start), 4)), delimiter=",", fmt="%.6f")
        variants = {
            "onnxruntime prototype (no TensorFlow)": [
                sys.executable,
                "-c",
                PROTOTYPE,
                str(folder / "model.onnx"),
                str(folder / "rows.csv"),
                str(folder / "o1.csv"),
            ],
            "dltool predict (default: through the verified ONNX export)": [
                *dltool,
                "predict",
                str(run),
                str(folder / "rows.csv"),
                "-o",
                str(folder / "o4.csv"),
            ],
            "dltool predict --runtime keras (TensorFlow)": [
                *dltool,
                "predict",
                str(run),
                str(folder / "rows.csv"),
                "-o",
                str(folder / "o2.csv"),
                "--runtime",
                "keras",
            ],
            "pandas + model.predict(batch_size=1024)": [
                sys.executable,
                str(REPO / "benchmarks/plain_pandas_predict.py"),
                str(run),
                str(folder / "rows.csv"),
                str(folder / "o3.csv"),
                "1024",
            ],
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, command in variants.items():
                figures[name].append(timed(command, env))
                print(name, figures[name][-1], flush=True)
        ours = np.loadtxt(folder / "o1.csv", delimiter=",", skiprows=1)[:, 1]
        theirs = np.genfromtxt(folder / "o2.csv", delimiter=",", skip_header=1, usecols=2)
        agree = float(np.max(np.abs(ours - theirs)))  # ONNX (prototype) against Keras (dltool on TensorFlow)
    base = np.median([w for w, _ in figures["pandas + model.predict(batch_size=1024)"]])
    lines = [
        "",
        f"## Tabular predict through onnxruntime ({args.rows:,} rows)",
        "",
        f"`python benchmarks/measure_onnx_predict.py`, {time.strftime('%Y-%m-%d')}, {args.repeats} repeats alternated, "
        f"medians; regression_mlp (4 features). ONNX outputs equal the Keras model's within {agree:.1e} "
        "(both printed with 6 significant digits). Issue 11's stretch target: ≤ 0.5x the pandas script.",
        "",
        "| variant | wall (s) | × pandas script | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, runs in figures.items():
        wall = float(np.median([w for w, _ in runs]))
        rss = float(np.median([r for _, r in runs]))
        lines.append(f"| {name} | {wall:.2f} | {wall / base:.2f} | {rss:,.0f} |")
    with open(REPO / "benchmarks/RESULTS-export.md", "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
