"""One process against 2 loopback processes (`dltool launch -n 2`, JAX with gloo on CPU): fit time, whole wall,
test accuracy, peak RSS. Writes benchmarks/RESULTS-processes.md (issue 14).

On a 2-core machine two processes cannot be faster than one: the figures are the overhead of the distributed
runtime (start-up, joining, a gradient all-reduce every step over loopback TCP).

    python benchmarks/measure_processes.py [--repeats 2] [--configs digits_mlp mnist_mlp]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
CONFIGS = {"digits_mlp": [], "mnist_mlp": [f"data.path={MNIST}"]}


def run_once(config: str, processes: int, overrides: list[str], root: Path) -> dict:
    """Train once (`dltool train`, or `dltool launch -n N`) in fresh processes; return the run's figures."""
    root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DLTOOL_RUNS_DIR": str(root)}
    sets = [a for o in ["train.tensorboard=false", *overrides] for a in ("--set", o)]
    command = ["train"] if processes == 1 else ["launch", "-n", str(processes)]
    args = [*command, str(REPO / "configs" / f"{config}.yaml"), "--backend", "jax", "-q", *sets]
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "dltool", *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # ru_maxrss: the largest of the process and its workers
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{config} in {processes} process(es) failed (status {status})")
    (folder,) = list(root.iterdir())
    metrics = json.loads((folder / "metrics.json").read_text())
    info = json.loads((folder / "run.json").read_text())
    batch = int(re.search(r"batch_size: (\d+)", (folder / "config.yaml").read_text()).group(1))
    steps = math.ceil(info["data"]["train"] / batch) * info["epochs_done"]
    return {
        "ms_per_step": 1000 * metrics["fit_seconds"] / steps,
        "wall": wall,
        "fit": metrics["fit_seconds"],
        "samples_per_s": info["data"]["train"] * info["epochs_done"] / metrics["fit_seconds"],
        "rss_mb": usage.ru_maxrss / 1024,
        "accuracy": metrics["test"]["accuracy"],
        "epochs": info["epochs_done"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks/RESULTS-processes.md"))
    args = parser.parse_args()
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dltool-processes-") as tmp:
        for repeat in range(args.repeats):
            for config in args.configs:
                for processes in (1, 2):  # alternated, so machine noise hits both alike
                    root = Path(tmp) / f"{config}-{processes}-{repeat}"
                    figures = run_once(config, processes, CONFIGS[config], root)
                    results.setdefault((config, processes), []).append(figures)
                    print(config, processes, figures, flush=True)
    lines = [
        "# One process against two loopback processes",
        "",
        f"`python benchmarks/measure_processes.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}: "
        "`dltool train CONFIG --backend jax` against `dltool launch -n 2 CONFIG --backend jax` (TensorBoard off), "
        f"alternated, {args.repeats} repeat(s); medians.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; Python {platform.python_version()}. "
        "Wall = the whole command (imports, joining, data, fit, test, saving); fit = Keras's fit in worker 0; "
        "peak RSS of the largest process. Two processes on 2 cores share the same cores: the ratio is the "
        "distributed runtime's overhead (gloo all-reduce over loopback TCP each step), not a speed-up.",
        "",
        "| config | processes | epochs | fit (s) | ms per step | samples/s | wall (s) | peak RSS (MB) | test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (config, processes), runs in results.items():

        def median(key, runs=runs):
            return statistics.median(run[key] for run in runs)

        lines.append(
            f"| {config} | {processes} | {runs[0]['epochs']} | {median('fit'):.1f} | {median('ms_per_step'):.2f} "
            f"| {median('samples_per_s'):,.0f} "
            f"| {median('wall'):.1f} | {median('rss_mb'):,.0f} | {median('accuracy'):.4f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
