"""Every shipped config on each installed Keras backend: fit time, samples/s, whole-process wall, peak RSS, test
metrics. Writes benchmarks/RESULTS-backends.md (issue 14).

Each (config, backend) is one `dltool train CONFIG --backend B` process, alternated backend by backend so
machine noise hits both alike. Configs whose data is not on this machine (CIFAR-10, IMDB) are left out.

    python benchmarks/measure_backends.py [--backends tensorflow jax] [--repeats 1] [--set mnist_cnn:train.epochs=1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
CONFIGS = {  # config -> overrides that keep it offline
    "digits_mlp": [],
    "mnist_mlp": [f"data.path={MNIST}"],
    "mnist_cnn": [f"data.path={MNIST}"],
    "lstm_forecaster": [],
    "linear_regression": [],
    "linear_sgd": [],
    "regression_mlp": [],
    "smoke": [],
}


def run_once(config: str, backend: str, overrides: list[str], root: Path) -> dict:
    """Train once in a fresh process; return its figures."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DLTOOL_RUNS_DIR": str(root)}
    sets = [a for o in overrides for a in ("--set", o)]
    before = set(root.iterdir()) if root.is_dir() else set()
    start = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dltool",
            "train",
            str(REPO / "configs" / f"{config}.yaml"),
            "--backend",
            backend,
            "-q",
            "--set",
            "train.tensorboard=false",
            *sets,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        return {"error": process.stderr.read().decode()[-300:]}
    (folder,) = set(root.iterdir()) - before
    metrics = json.loads((folder / "metrics.json").read_text())
    info = json.loads((folder / "run.json").read_text())
    test = metrics.get("test", {})
    samples = info["data"]["train"] * info["epochs_done"]
    return {
        "wall": wall,
        "fit": metrics["fit_seconds"],
        "samples_per_s": samples / metrics["fit_seconds"],
        "rss_mb": usage.ru_maxrss / 1024,
        "metric": ("accuracy", test["accuracy"]) if "accuracy" in test else ("mse", test.get("loss")),
        "epochs": info["epochs_done"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--set", action="append", default=[], help="CONFIG:key=value, e.g. mnist_cnn:train.epochs=1")
    parser.add_argument("--out", default=str(REPO / "benchmarks/RESULTS-backends.md"))
    args = parser.parse_args()
    extra: dict[str, list[str]] = {}
    for item in args.set:
        config, override = item.split(":", 1)
        extra.setdefault(config, []).append(override)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dltool-backends-") as tmp:
        for config in args.configs:
            for backend in args.backends:
                root = Path(tmp) / f"{config}-{backend}"
                root.mkdir()
                figures = run_once(config, backend, CONFIGS[config] + extra.get(config, []), root)
                rows.append((config, backend, figures))
                print(config, backend, {k: v for k, v in figures.items() if k != "error"} or figures, flush=True)
    lines = [
        "# Keras backends: every shipped config on each backend",
        "",
        f"`python benchmarks/measure_backends.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}: one "
        "`dltool train CONFIG --backend B` process each (TensorBoard off), as shipped unless overridden.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; Python {platform.python_version()}. "
        "Wall = the whole process (imports, data, fit, evaluation, saving); fit = Keras's fit alone; peak RSS of the "
        "process. Figures move ±15 % between identical runs on this machine.",
        "",
        "| config | backend | epochs | fit (s) | samples/s | wall (s) | peak RSS (MB) | test metric |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for config, backend, f in rows:
        if "error" in f:
            lines.append(f"| {config} | {backend} | failed: {f['error'].strip().splitlines()[-1]} | | | | | |")
            continue
        name, value = f["metric"]
        lines.append(
            f"| {config} | {backend} | {f['epochs']} | {f['fit']:.1f} | {f['samples_per_s']:,.0f} | {f['wall']:.1f} "
            f"| {f['rss_mb']:,.0f} | {name} {value:.4f} |"
        )
    if extra:
        lines += ["", "Overrides: " + "; ".join(f"{c}: {', '.join(o)}" for c, o in extra.items())]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
