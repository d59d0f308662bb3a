"""Train every `dltool init` template on a small real dataset, as a new user would, and write the figures.

For each template: build the data offline in a temporary folder, `dltool init` the template, point it
at the data with `--set` (path, target, input_shape, last layer's units), train with the template's
own epochs and callbacks (`dltool train ... -q`), and read back test metrics, epochs run and wall time.

    python benchmarks/measure_templates.py                                  # all, ~3 min on 2 cores
    python benchmarks/measure_templates.py --only image-classifier --output /tmp/r.md
    python benchmarks/measure_templates.py --only image-classifier --set 'model.layers[-3]=Flatten'

Data (nothing is downloaded):
- image-classifier: 2,000 MNIST training digits (--mnist) as grayscale 28x28 PNGs, one folder per digit;
  the template reads them as its default rgb 64x64.
- csv-classifier: scikit-learn's wine (178 rows, 3 classes) and breast_cancer (569 rows, 2 classes),
  written as CSVs with string labels.
- csv-regression: scikit-learn's diabetes (442 rows, 10 features).
- mnist-mlp: the real MNIST .npz (--mnist).
- forecaster: configs/data/seasonal_series.csv (shipped).
- text-classifier: no real text dataset is available offline; reported as skipped.

Each run is a subprocess `python -m dltool` with PYTHONPATH set to this checkout, so the code measured
is this checkout's. Runs go to a temporary --runs-dir; nothing is left behind. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
DEFAULT_OUTPUT = REPO / "benchmarks" / "RESULTS-templates.md"
SERIES = REPO / "configs" / "data" / "seasonal_series.csv"
KEPT_MARKER = "<!-- Written by hand below this line; measure_templates.py keeps it when it rewrites the file. -->"
IMAGE_COUNT = 2000  # MNIST digits written as PNGs: the "small set" of the issue

# One case per (template, dataset); BUILDERS below writes each case's data and says what a user would --set.
CASES = [
    "mnist-mlp",
    "csv-classifier/wine",
    "csv-classifier/breast_cancer",
    "csv-regression/diabetes",
    "image-classifier",
    "text-classifier",
    "forecaster",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_mnist_mlp(work: Path, mnist: Path) -> tuple[list[str], dict]:
    """The template reads Keras's MNIST; offline, a user points data.path at a local copy."""
    with np.load(mnist) as data:
        labels = data["y_test"]
    majority = np.bincount(labels).max() / len(labels)
    return [f"data.path={mnist}"], {"majority class accuracy": majority}


def build_digit_pngs(work: Path, mnist: Path) -> tuple[list[str], dict]:
    """IMAGE_COUNT MNIST training digits as PNG files in digits/<digit>/."""
    from PIL import Image

    with np.load(mnist) as data:
        images, labels = data["x_train"][:IMAGE_COUNT], data["y_train"][:IMAGE_COUNT]
    folder = Path("digits")  # relative to the case's folder, where dltool runs
    for index, (pixels, label) in enumerate(zip(images, labels)):
        (work / folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(work / folder / str(label) / f"{index:05d}.png")
    majority = np.bincount(labels).max() / len(labels)
    return [f"data.path={folder}", "model.layers[LAST].Dense.units=10"], {"majority class accuracy": majority}


def _write_csv(path: Path, columns: list[str], rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")


def build_sklearn_classes(name: str):
    def build(work: Path, mnist: Path) -> tuple[list[str], dict]:
        """A scikit-learn classification set as a CSV whose label column holds the class names."""
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        columns = [c.replace(" ", "_") for c in bunch.feature_names]
        names = [str(n) for n in bunch.target_names]
        path = Path(f"{name}.csv")
        _write_csv(
            work / path,
            columns + ["label"],
            ([*x, names[y]] for x, y in zip(bunch.data, bunch.target)),
        )
        majority = np.bincount(bunch.target).max() / len(bunch.target)
        overrides = [
            f"data.path={path}",
            "data.target=label",
            f"model.input_shape=[{len(columns)}]",
            f"model.layers[LAST].Dense.units={len(names)}",
        ]
        return overrides, {"majority class accuracy": majority}

    return build


def build_diabetes(work: Path, mnist: Path) -> tuple[list[str], dict]:
    """scikit-learn's diabetes as a CSV; references: predicting the mean, and a 5-fold linear regression."""
    from sklearn import datasets
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score

    bunch = datasets.load_diabetes()
    path = Path("diabetes.csv")
    rows = ([*x, y] for x, y in zip(bunch.data, bunch.target))
    _write_csv(work / path, list(bunch.feature_names) + ["progression"], rows)
    linear = -cross_val_score(
        LinearRegression(),
        bunch.data,
        bunch.target,
        cv=5,
        scoring="neg_mean_squared_error",
    )
    overrides = [
        f"data.path={path}",
        "data.target=progression",
        f"model.input_shape=[{bunch.data.shape[1]}]",
    ]
    return overrides, {
        "mse of predicting the mean": float(np.var(bunch.target)),
        "mse of a linear regression (5-fold)": float(linear.mean()),
    }


def build_series(work: Path, mnist: Path) -> tuple[list[str], dict]:
    """The shipped seasonal series; references: persistence on the last 20 % and the noise floor."""
    values = np.loadtxt(SERIES, delimiter=",", skiprows=1)[:, 1]
    tail = values[int(len(values) * 0.8) - 1 :]
    return [f"data.path={SERIES}", "data.target=value"], {
        "mae of repeating the last value (last 20 %)": float(np.abs(np.diff(tail)).mean()),
        "mae of a perfect model (noise std 0.5)": 0.5 * float(np.sqrt(2 / np.pi)),
    }


# case -> (dataset in words, build(work folder, mnist) -> (--set overrides, reference figures)).
BUILDERS = {
    "mnist-mlp": ("the real MNIST (60,000 train, 10,000 test)", build_mnist_mlp),
    "csv-classifier/wine": ("scikit-learn wine CSV, 178 rows, 13 features, 3 classes", build_sklearn_classes("wine")),
    "csv-classifier/breast_cancer": (
        "scikit-learn breast_cancer CSV, 569 rows, 30 features, 2 classes",
        build_sklearn_classes("breast_cancer"),
    ),
    "csv-regression/diabetes": ("scikit-learn diabetes CSV, 442 rows, 10 features", build_diabetes),
    "image-classifier": (
        f"{IMAGE_COUNT:,} MNIST digit PNGs (28x28 grayscale, read as rgb 64x64), 10 classes",
        build_digit_pngs,
    ),
    "forecaster": ("configs/data/seasonal_series.csv, 2,000 steps", build_series),
}


def run_case(case: str, work: Path, mnist: Path, extra: list[str]) -> dict:
    """init + train one case; return its figures (or why it was skipped or failed)."""
    template = case.split("/")[0]
    if case not in BUILDERS:
        return {
            "case": case,
            "skipped": "no real text dataset is available offline (nothing is downloaded)",
        }
    dataset, build = BUILDERS[case]
    if template in ("mnist-mlp", "image-classifier") and not mnist.exists():
        return {"case": case, "dataset": dataset, "skipped": f"{mnist} not found"}
    folder = work / case.replace("/", "-")
    folder.mkdir(parents=True)
    overrides, reference = build(folder, mnist)
    # "LAST" stands for the index of the template's last layer (the override syntax has no negative indices).
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DLTOOL_RUNS_DIR": str(folder / "runs"),
    }
    config = folder / f"{template}.yaml"
    dltool = [sys.executable, "-m", "dltool"]
    subprocess.run(
        [*dltool, "init", template, str(config)],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    written = yaml.safe_load(config.read_text())
    overrides = [o.replace("LAST", str(len(written["model"]["layers"]) - 1)) for o in overrides]
    sets = [a for o in overrides + extra for a in ("--set", o)]
    log(f"{case}: training ({dataset})")
    start = time.perf_counter()
    done = subprocess.run(
        [*dltool, "train", str(config), "-q", *sets], check=False, env=env, cwd=folder, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {
            "case": case,
            "dataset": dataset,
            "failed": (done.stderr or done.stdout).strip()[-2000:],
        }
    (run_dir,) = (folder / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run_info = json.loads((run_dir / "run.json").read_text())
    result = {
        "case": case,
        "dataset": dataset,
        "test": metrics["test"],
        "epochs_run": metrics["epochs"],
        "default_epochs": written["train"]["epochs"],
        "restored_epoch": metrics.get("restored_epoch"),
        "stopped_early": metrics["stopped_early"],
        "fit_seconds": metrics["fit_seconds"],
        "wall_seconds": round(wall, 1),
        "samples": run_info["data"],
        "params": run_info["params"],
        "reference": reference,
        "overrides": overrides + extra,
    }
    log(f"{case}: test {metrics['test']}, {metrics['epochs']} epochs, {wall:.0f} s")
    return result


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("tensorflow", "keras", "numpy", "scikit-learn"))
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores (shared with other work), Python {platform.python_version()}",
        f"- Versions: {versions}",
    ]


def format_metrics(values: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if abs(v) >= 10 else f"{k} {v:.3f}" for k, v in values.items())


def _shorten(override: str) -> str:
    """Paths inside this checkout as repo-relative, so the report does not depend on where it was run."""
    return override.replace(f"{REPO}{os.sep}", "")


def report(results: list[dict], loads: tuple, command: str) -> str:
    lines = [
        "# Templates on small real datasets",
        "",
        "Every `dltool init` template trained as written (its epochs, callbacks and seed), pointed at a small",
        "real dataset with `--set` the way a user edits it. Regenerate (about 3 minutes on 2 cores):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        *machine(),
        f"- Load average before / after: {loads[0]:.2f} / {loads[1]:.2f} (timings vary with it)",
        "",
        (
            "| template | dataset | samples train / val / test | params | test | epochs run / default | fit s "
            "| wall s | reference |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "test" not in r:
            lines.append(f"| {r['case']} | {r.get('dataset', '-')} | | | {r.get('skipped') or 'FAILED'} | | | | |")
            continue
        epochs = f"{r['epochs_run']} / {r['default_epochs']}"
        if r["stopped_early"]:
            epochs += f" (stopped early, best {r['restored_epoch']})" if r["restored_epoch"] else " (stopped early)"
        sizes = " / ".join(f"{r['samples'].get(split, 0):,}" for split in ("train", "validation", "test"))
        lines.append(
            f"| {r['case']} | {r['dataset']} | {sizes} | {r['params']:,} | {format_metrics(r['test'])} "
            f"| {epochs} | {r['fit_seconds']:.0f} "
            f"| {r['wall_seconds']:.0f} | {format_metrics(r['reference'])} |"
        )
    lines += [
        "",
        "Overrides given to each run (after `dltool init TEMPLATE FILE`):",
        "",
    ]
    lines += [
        f"- {r['case']}: `" + " ".join(f"--set {_shorten(o)}" for o in r["overrides"]) + "`"
        for r in results
        if "test" in r
    ]
    failed = [r for r in results if "failed" in r]
    lines += [x for r in failed for x in ["", f"{r['case']} failed:", "```", r["failed"], "```"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated cases or templates among: {', '.join(CASES)}")
    parser.add_argument(
        "--mnist",
        type=Path,
        default=DEFAULT_MNIST,
        help="the MNIST .npz (default %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the report (default %(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra override for every selected case (to try a variant)",
    )
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else CASES
    cases = [c for c in CASES if c in wanted or c.split("/")[0] in wanted]
    if not cases:
        parser.error(f"--only: no case among {', '.join(CASES)}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dltool-templates-") as work:
        results = [run_case(case, Path(work), args.mnist.resolve(), args.extra) for case in cases]
    command = shlex.join(
        [
            "python",
            "benchmarks/measure_templates.py",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    text = report(results, (load_before, os.getloadavg()[0]), command)
    old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if KEPT_MARKER in old:
        text += "\n" + KEPT_MARKER + old.split(KEPT_MARKER, 1)[1]
    args.output.write_text(text, encoding="utf-8")
    log(f"wrote {args.output}")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
