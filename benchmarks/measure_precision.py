"""Which shipped conv/RNN configs and templates keep their accuracy under `train.precision: auto` (issue 24).

Each case is trained by `python -m dltool train CONFIG -q --backend tensorflow` from the repository root, once
with `--set train.precision=float32` and once with `--set train.precision=auto` (mixed_bfloat16 on a CPU with
AVX512-BF16 or AMX), for each seed, the two precisions alternating (seed 1: float32 then auto; seed 2: auto then
float32), so drift of a shared machine hits both alike. The report gives the test metric (mean and each seed),
fit seconds and epochs per precision, the load average at each run's start, and a verdict: auto *keeps
accuracy* when its mean test accuracy is at most 0.5 points below float32's, or its mean test MSE at most 5 %
above float32's (better is fine).

    python benchmarks/measure_precision.py                          # all cases, 2 seeds: ~15-20 min on 2 cores
    python benchmarks/measure_precision.py --only mnist_cnn --seeds 1 --output /tmp/p.md
    python benchmarks/measure_precision.py --quick --output /tmp/p.md   # 1 seed, 1 epoch: checks the script

Data (nothing is downloaded): the real MNIST .npz (--mnist) for mnist_cnn and for the image-classifier
template (IMAGES_PER_CLASS training digits of each class, written once as 28x28 RGB PNGs into a temporary
folder; the template reads them at its 64x64), and configs/data/seasonal_series.csv for both forecasters.
Runs go to a temporary --runs-dir; nothing is left behind. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shlex
import statistics
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
DEFAULT_OUTPUT = REPO / "benchmarks" / "RESULTS-precision.md"
SERIES = REPO / "configs" / "data" / "seasonal_series.csv"
PRECISIONS = ("float32", "auto")
DEFAULT_SEEDS = (42, 43)  # the shipped seed and the next one
IMAGES_PER_CLASS = 200  # 2,000 digit PNGs in all: the size RESULTS-templates.md measured the template on
ACCURACY_POINTS_KEPT = 0.5  # auto may lose at most this many accuracy points (percent) against float32
MSE_RATIO_KEPT = 1.05  # auto's test MSE may be at most 5 % above float32's
RUN_TIMEOUT_S = 1200
TEMP_PREFIX = "dltool-precision-"
KEPT_MARKER = "<!-- Written by hand below this line; measure_precision.py keeps it when it rewrites the file. -->"

NO_LOCAL_DATA = {
    "cifar10_cnn": "not measured: no local data (keras.datasets.cifar10 is a download; no copy on this machine)",
    "imdb_lstm": "not measured: no local data (keras.datasets.imdb is a download; no copy on this machine)",
    "cats_vs_dogs_xception": (
        "not measured: no local data (the PetImages JPEGs and Xception's ImageNet weights are downloads)"
    ),
    "template text-classifier": (
        "not measured: no text dataset is available offline (scikit-learn bundles no text corpus; its "
        "20 newsgroups is a download, as is keras.datasets.imdb)"
    ),
}


@dataclasses.dataclass
class Case:
    """One config or template to train at both precisions: where its config comes from and what it is judged on."""

    name: str
    metric: str  # "accuracy" or "mse": what the verdict compares
    config: str = ""  # a shipped config, relative to the repository root
    template: str = ""  # or a `dltool init` template
    overrides: list[str] = dataclasses.field(default_factory=list)
    note: str = ""


def cases(mnist: Path, images: Path) -> list[Case]:
    """The measured cases, with the overrides that point them at the local data."""
    return [
        Case("mnist_cnn", "accuracy", config="configs/mnist_cnn.yaml", overrides=[f"data.path={mnist}"]),
        Case(
            "lstm_forecaster",
            "mse",
            config="configs/lstm_forecaster.yaml",
            note="ships on JAX, where auto picks float32 on this CPU; measured on TensorFlow (--backend tensorflow)",
        ),
        Case(
            "template image-classifier",
            "accuracy",
            template="image-classifier",
            overrides=[f"data.path={images}", "model.layers[LAST].Dense.units=10"],
            note=f"{IMAGES_PER_CLASS * 10:,} MNIST training digits (the first {IMAGES_PER_CLASS} of each class) "
            "as 28x28 RGB PNGs, read at the template's 64x64; the template's 30 epochs and early stopping",
        ),
        Case(
            "template forecaster",
            "mse",
            template="forecaster",
            overrides=[f"data.path={SERIES}", "data.target=value"],
            note="configs/data/seasonal_series.csv (columns day, value); the template's window 30",
        ),
    ]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def first_indices_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The indices of the first ``per_class`` samples of each label, in ascending order; ValueError naming the
    label when one has fewer."""
    chosen = []
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        if len(where) < per_class:
            raise ValueError(f"class {label}: {len(where)} samples, fewer than the {per_class} asked for")
        chosen.append(where[:per_class])
    return np.sort(np.concatenate(chosen))


def write_digit_pngs(images: np.ndarray, labels: np.ndarray, folder: Path) -> int:
    """Grayscale digits as RGB PNGs in folder/<label>/<index>.png (one subfolder per class, as the images source
    reads them); returns how many were written."""
    from PIL import Image

    for index, (pixels, label) in enumerate(zip(images, labels)):
        class_folder = folder / str(int(label))
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").convert("RGB").save(class_folder / f"{index:05d}.png")
    return len(images)


def build_image_folder(mnist: Path, folder: Path, per_class: int = IMAGES_PER_CLASS) -> int:
    """The image-classifier's data: the first ``per_class`` MNIST training digits of each class as PNGs."""
    with np.load(mnist) as data:
        labels = data["y_train"]
        chosen = first_indices_per_class(labels, per_class)
        return write_digit_pngs(data["x_train"][chosen], labels[chosen], folder)


def resolve_last_layer(overrides: list[str], layer_count: int) -> list[str]:
    """Replace LAST in override keys by the last layer's index (the --set syntax has no negative indices)."""
    return [o.replace("[LAST]", f"[{layer_count - 1}]") for o in overrides]


def run_order(seeds: list[int]) -> list[tuple[int, str]]:
    """(seed, precision) in the order they run: the precisions alternate, the first one swapping every seed."""
    order = []
    for position, seed in enumerate(seeds):
        precisions = PRECISIONS if position % 2 == 0 else PRECISIONS[::-1]
        order += [(seed, precision) for precision in precisions]
    return order


def test_figure(metric: str, test_metrics: dict) -> float:
    """The figure the verdict compares: test accuracy, or test MSE (the loss of the mse configs)."""
    return test_metrics["accuracy"] if metric == "accuracy" else test_metrics["loss"]


def verdict(metric: str, float32_values: list[float], auto_values: list[float]) -> tuple[bool, str]:
    """Whether auto keeps accuracy against float32 (means over seeds), and the comparison in words."""
    reference, candidate = statistics.mean(float32_values), statistics.mean(auto_values)
    if metric == "accuracy":
        change = (candidate - reference) * 100
        kept = change >= -ACCURACY_POINTS_KEPT
        return kept, f"{change:+.2f} points"
    ratio = candidate / reference
    kept = ratio <= MSE_RATIO_KEPT
    return kept, f"MSE {(ratio - 1) * 100:+.1f} %"


def train_once(case: Case, config: Path, seed: int, precision: str, runs_dir: Path, extra: list[str]) -> dict:
    """One `dltool train` in a subprocess from the repository root; its figures, or why it failed."""
    sets = [*case.overrides, f"seed={seed}", f"train.precision={precision}", "train.tensorboard=false", *extra]
    command = [sys.executable, "-m", "dltool", "train", str(config), "-q", "--backend", "tensorflow"]
    command += ["--runs-dir", str(runs_dir)] + [a for s in sets for a in ("--set", s)]
    load = os.getloadavg()[0]
    before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - start
    result = {"seed": seed, "precision": precision, "load_at_start": round(load, 2), "wall_seconds": round(wall, 1)}
    if done.returncode != 0:
        return {**result, "failed": (done.stderr or done.stdout).strip()[-1500:]}
    (run_dir,) = set(runs_dir.iterdir()) - before
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run_info = json.loads((run_dir / "run.json").read_text())
    return {
        **result,
        "test": metrics["test"],
        "figure": test_figure(case.metric, metrics["test"]),
        "epochs": metrics["epochs"],
        "stopped_early": metrics["stopped_early"],
        "fit_seconds": run_info["fit_seconds"],
        "policy": run_info["precision"]["policy"],
        "reason": run_info["precision"].get("reason", ""),
    }


def config_for(case: Case, work: Path) -> tuple[Path, list[str]]:
    """The config file a case trains and its overrides with LAST resolved (a template is written by dltool init)."""
    if case.config:
        return REPO / case.config, case.overrides
    path = work / f"{case.template}.yaml"
    subprocess.run(
        [sys.executable, "-m", "dltool", "init", case.template, str(path), "--force"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
    )
    layers = yaml.safe_load(path.read_text())["model"]["layers"]
    return path, resolve_last_layer(case.overrides, len(layers))


def measure(case: Case, work: Path, seeds: list[int], extra: list[str]) -> dict:
    """Every (seed, precision) run of one case, in alternating order."""
    config, overrides = config_for(case, work)
    case = dataclasses.replace(case, overrides=overrides)
    runs = []
    for seed, precision in run_order(seeds):
        runs_dir = work / "runs" / case.name.replace(" ", "-")
        run = train_once(case, config, seed, precision, runs_dir, extra)
        shown = run.get("test", "FAILED: " + run.get("failed", "")[-300:])
        log(f"{case.name} seed {seed} {precision}: {shown} ({run['wall_seconds']:.0f} s, load {run['load_at_start']})")
        runs.append(run)
    return {"case": case.name, "metric": case.metric, "note": case.note, "overrides": overrides, "runs": runs}


def summarize(result: dict) -> dict:
    """Per precision: the figures of each seed, their mean, mean fit seconds and epochs; and the verdict."""
    by_precision = {}
    for precision in PRECISIONS:
        runs = sorted((r for r in result["runs"] if r["precision"] == precision), key=lambda r: r["seed"])
        done = [r for r in runs if "figure" in r]
        by_precision[precision] = {
            "figures": [r["figure"] for r in done],
            "mean": statistics.mean(r["figure"] for r in done) if done else None,
            "fit_seconds": statistics.mean(r["fit_seconds"] for r in done) if done else None,
            "epochs": statistics.mean(r["epochs"] for r in done) if done else None,
            "policies": sorted({r["policy"] for r in done}),
            "failed": len(runs) - len(done),
        }
    summary = {"case": result["case"], "metric": result["metric"], **by_precision}
    if any(by_precision[p]["failed"] or not by_precision[p]["figures"] for p in PRECISIONS):
        summary["kept"], summary["change"] = None, "a run failed"
    else:
        summary["kept"], summary["change"] = verdict(
            result["metric"], by_precision["float32"]["figures"], by_precision["auto"]["figures"]
        )
    return summary


def seconds_per_epoch_ratio(summary: dict) -> str:
    """auto's mean fit seconds per epoch over float32's, as text ("-" when a side has no run)."""
    per_epoch = {}
    for precision in PRECISIONS:
        side = summary[precision]
        if not side["figures"]:
            return "-"
        per_epoch[precision] = side["fit_seconds"] / side["epochs"]
    return f"{per_epoch['auto'] / per_epoch['float32']:.2f}x"


def verdict_row(summary: dict) -> str:
    """One row of the verdict table: test figure (mean, then each seed) and fit seconds per precision."""
    cells = [summary["case"], "accuracy" if summary["metric"] == "accuracy" else "MSE"]
    for precision in PRECISIONS:
        side = summary[precision]
        if not side["figures"]:
            cells += ["FAILED", ""]
            continue
        seeds = ", ".join(f"{v:.4f}" for v in side["figures"])
        cells.append(f"{side['mean']:.4f} ({seeds})")
        cells.append(f"{side['fit_seconds']:.0f} ({side['epochs']:g} ep.)")
    cells.append(seconds_per_epoch_ratio(summary))
    cells.append("/".join(summary["auto"]["policies"]) or "-")
    cells.append(summary["change"])
    if summary["kept"] is None:
        cells.append("not decided: a run failed")
    else:
        cells.append("**keeps accuracy**" if summary["kept"] else "**loses accuracy**")
    return "| " + " | ".join(cells) + " |"


def not_measured_row(name: str, why: str) -> str:
    """A verdict-table row for a case with nothing measured: its reason in the verdict column."""
    return f"| {name} |" + " |" * 8 + f" {why} |"


def cpuinfo_field(key: str) -> str:
    """The value of the first /proc/cpuinfo line for ``key`` ("" where there is none)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def machine() -> list[str]:
    """The report's machine lines: CPU, cores, its bfloat16 flags (what auto reads), versions."""
    cpu = cpuinfo_field("model name") or platform.processor()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in cpuinfo_field("flags").split()]
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("tensorflow", "keras", "numpy"))
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores (shared with CI and other runs), Python "
        f"{platform.python_version()}; bfloat16 CPU flags: {', '.join(bf16) or 'none'}",
        f"- Versions: {versions}",
    ]


def shorten_path(override: str) -> str:
    """Paths in this checkout as repo-relative and the temporary folder as TMP, so the report reads the same
    wherever and whenever it was run."""
    return re.sub(rf"[^\s=]*{TEMP_PREFIX}[^/\s]+", "TMP", override.replace(f"{REPO}{os.sep}", ""))


def report(results: list[dict], command: str, seeds: list[int], started: float) -> str:
    """The whole results file: the verdict table, the notes per case and every run."""
    summaries = [summarize(r) for r in results]
    reasons = sorted(
        {r["reason"] for res in results for r in res["runs"] if r.get("precision") == "auto" and "reason" in r}
    )
    lines = [
        "# `train.precision: auto` against float32 (issue 24)",
        "",
        "Each case trained by `python -m dltool train CONFIG -q --backend tensorflow --set train.tensorboard=false`",
        "from the repository root with `--set train.precision=float32` and `--set train.precision=auto`,",
        f"seeds {', '.join(map(str, seeds))} (`--set seed=S`), the precisions alternating. *Keeps accuracy*: auto's",
        f"mean test accuracy at most {ACCURACY_POINTS_KEPT} points below float32's, or its mean test MSE at most "
        f"{(MSE_RATIO_KEPT - 1) * 100:.0f} %",
        "above float32's (being better is fine). Regenerate:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; the whole measurement took "
        f"{(time.time() - started) / 60:.0f} min",
        *machine(),
        "- What auto chose on TensorFlow: " + ("; ".join(reasons) or "-"),
        "- **Seconds are indicative only**: the machine is shared and was busy (the load average at each run's "
        "start is in the runs table). Accuracy is what the verdict reads. Early-stopped cases ran different "
        "numbers of epochs (ep.), so compare their fit seconds per epoch.",
        "",
        "| case | test figure | float32: mean (per seed) | float32 fit s | auto: mean (per seed) | auto fit s "
        "| s/epoch auto ÷ float32 | auto's policy | auto − float32 | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [verdict_row(s) for s in summaries]
    lines += [not_measured_row(name, why) for name, why in NO_LOCAL_DATA.items()]
    lines += ["", "Notes per case:", ""]
    for result in results:
        overrides = " ".join(f"--set {shorten_path(o)}" for o in result["overrides"])
        note = f"{result['note']}. " if result["note"] else ""
        lines.append(f"- {result['case']}: {note}Overrides: `{overrides or '-'}`")
    lines += [
        "",
        "Every run, in the order it ran:",
        "",
        "| case | seed | asked | policy | test metrics | epochs | fit s | wall s | load avg at start |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for run in result["runs"]:
            if "failed" in run:
                cells = [result["case"], run["seed"], run["precision"], "", "FAILED", "", "", run["wall_seconds"]]
            else:
                test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(run["test"].items()))
                epochs = f"{run['epochs']}" + (" (early stop)" if run["stopped_early"] else "")
                cells = [result["case"], run["seed"], run["precision"], run["policy"], test, epochs]
                cells += [f"{run['fit_seconds']:.1f}", f"{run['wall_seconds']:.0f}"]
            lines.append("| " + " | ".join(str(c) for c in [*cells, f"{run['load_at_start']:.2f}"]) + " |")
    for result in results:
        for run in (r for r in result["runs"] if "failed" in r):
            lines += [
                "",
                f"{result['case']}, seed {run['seed']}, {run['precision']} failed:",
                "```",
                run["failed"],
                "```",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated case names (mnist_cnn, lstm_forecaster, image-classifier, ...)")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="default %(default)s")
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch: checks the script, not precision")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="the MNIST .npz (default %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report (default %(default)s)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    extra = ["train.epochs=1"] if args.quick else []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as temp:
        work = Path(temp)
        images = work / "digits"
        chosen = [
            c
            for c in cases(args.mnist.resolve(), images)
            if not args.only or any(w in c.name for w in args.only.split(","))
        ]
        if not chosen:
            parser.error("--only: no case matches")
        if any(c.template == "image-classifier" for c in chosen):
            log(f"writing {build_image_folder(args.mnist, images)} PNGs into {images}")
        results = [measure(case, work, seeds, extra) for case in chosen]
    command = shlex.join(["python", "benchmarks/measure_precision.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(results, command, seeds, started)
    old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if KEPT_MARKER in old:
        text += "\n" + KEPT_MARKER + old.split(KEPT_MARKER, 1)[1]
    args.output.write_text(text, encoding="utf-8")
    log(f"wrote {args.output}")
    return 1 if any("failed" in r for res in results for r in res["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
