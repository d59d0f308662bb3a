#!/usr/bin/env python3
"""Issue 25, evaluation a practitioner trusts: imbalance, thresholds, cross-validation and calibration, measured
on real data with `dltool` as a user runs it. Writes RESULTS-evaluation.md.

    python benchmarks/measure_evaluation.py                  # full: ~25 min on 2 cores
    python benchmarks/measure_evaluation.py --quick          # smoke pass: 1 seed, few epochs, 3 folds
    python benchmarks/measure_evaluation.py --sections imbalance,threshold --seeds 3 --output /tmp/e.md

Sections (--sections):
- imbalance: scikit-learn's breast_cancer (569 rows, 30 features; malignant = class 1). A fixed held-out test
  split of 30 % of the rows, stratified (107 benign, 64 malignant), drawn once. The training pool is the other
  250 benign rows and malignant rows subsampled to 5 % of the benign (12 of 148), drawn per seed: the dataset made
  imbalanced, with a test split large enough to count recall on 64 malignant cases rather than 5. The same MLP is
  trained with train.class_weight none, balanced, and data.resample oversample/undersample, each over the seeds,
  and `dltool evaluate` reports the minority class's recall, PR AUC (average precision) and ROC AUC on the test.
- threshold: the same data, with train.threshold precision_at_recall 0.9 chosen on the validation split: how
  often the test recall reaches 0.9.
- cv: `dltool cv` of scikit-learn's wine as a CSV (the csv-classifier template's model), 5 folds, mean +- std,
  timed with --workers 2 against 1 worker, alternating.
- calibration: an MNIST MLP trained long enough to be over-confident, with train.calibrate temperature: ECE,
  negative log-likelihood and Brier before and after, on the validation and test splits.

Every run is `python -m dltool ...` in a subprocess with a temporary --runs-dir; only numpy and scikit-learn (for
the data) in this process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import run_benchmarks as rb  # the harness's helpers: run_measured, spread, table, machine facts

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PYTHON = sys.executable
DLTOOL = [PYTHON, "-m", "dltool"]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
DEFAULT_OUTPUT = BENCH / "RESULTS-evaluation.md"
SECTIONS = ["imbalance", "threshold", "cv", "calibration"]

MINORITY_SHARE = 0.05  # malignant rows kept in the training pool: 5 % of the benign
TEST_SHARE = 0.3
TEST_DRAW_SEED = 0  # the held-out test split is the same for every seed
IMBALANCE_WAYS = {
    "none": [],
    "balanced": ["train.class_weight=balanced"],
    "oversample": ["data.resample={oversample: minority}"],
    "undersample": ["data.resample={undersample: majority}"],
}
TARGET_RECALL = 0.9
THRESHOLD_WAYS = {
    "none + precision_at_recall 0.9": [f"train.threshold={{optimize: precision_at_recall, at: {TARGET_RECALL}}}"],
    "balanced + precision_at_recall 0.9": [
        "train.class_weight=balanced",
        f"train.threshold={{optimize: precision_at_recall, at: {TARGET_RECALL}}}",
    ],
}
# The same rule where the validation split holds enough positives: the pool keeps every malignant row (~44 of them
# in validation), so what the imbalanced rows show is the few positives, not the rule.
ENOUGH_POSITIVES_WAY = "balanced + precision_at_recall 0.9, every malignant row in the pool"
THRESHOLD_WAYS[ENOUGH_POSITIVES_WAY] = THRESHOLD_WAYS["balanced + precision_at_recall 0.9"]
WAY_SHARES = {ENOUGH_POSITIVES_WAY: None}
CLEAR_MARGIN_POINTS = 10.0  # "a clear margin": balanced's mean minority recall this many points above none's
PR_AUC_LOSS_POINTS = 2.0  # "without losing PR AUC": balanced's mean PR AUC no more than this below none's


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def bench_env() -> dict:
    """This checkout's dltool, on the backend each config names."""
    env = rb.base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("KERAS_BACKEND", None)
    return env


def set_args(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]


def mean_cell(xs: list[float], digits: int = 3) -> str:
    """'mean [min–max]' of xs."""
    if not xs:
        return "n/a"
    f = f"{{:.{digits}f}}"
    if len(xs) == 1:
        return f.format(xs[0])
    return f"{f.format(statistics.mean(xs))} [{f.format(min(xs))}–{f.format(max(xs))}]"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# ----------------------------------------------------------------------------- data


def breast_cancer_split() -> tuple[dict, dict]:
    """(pool, test): breast_cancer with malignant as class 1, 30 % held out (stratified, fixed)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    y = (y == 0).astype(np.int64)  # scikit-learn's 0 is malignant: make it the positive class
    x_pool, x_test, y_pool, y_test = train_test_split(
        x.astype(np.float32), y, test_size=TEST_SHARE, stratify=y, random_state=TEST_DRAW_SEED
    )
    return {"x": x_pool, "y": y_pool}, {"x": x_test, "y": y_test}


def imbalanced_npz(pool: dict, test: dict, seed: int, path: Path, share: float | None = MINORITY_SHARE) -> dict:
    """Write the seed's training pool (every benign row, malignant subsampled to ``share`` of them; None: every
    malignant row) and the fixed test split as an npz; returns the counts."""
    rng = np.random.default_rng(seed)
    benign = np.flatnonzero(pool["y"] == 0)
    malignant = np.flatnonzero(pool["y"] == 1)
    kept = malignant if share is None else rng.choice(malignant, int(round(share * len(benign))), replace=False)
    rows = np.sort(np.concatenate([benign, kept]))
    np.savez(path, x_train=pool["x"][rows], y_train=pool["y"][rows], x_test=test["x"], y_test=test["y"])
    return {"benign": len(benign), "malignant": len(kept), "test_benign": int((test["y"] == 0).sum())} | {
        "test_malignant": int(test["y"].sum())
    }


def imbalance_config(path: Path, data: Path, epochs: int) -> Path:
    path.write_text(
        f"""name: breast-cancer-imbalanced
seed: 0
data: {{source: npz, path: {data}, standardize: true, test: builtin, validation: 0.3}}
model:
  input_shape: [30]
  layers:
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: 1, activation: sigmoid}}
train:
  optimizer: adam
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: 16
  plots: false
""",
        encoding="utf-8",
    )
    return path


def wine_csv(path: Path) -> Path:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.rename(columns={"target": "label"}).to_csv(path, index=False)
    return path


def wine_config(path: Path, data: Path, epochs: int) -> Path:
    path.write_text(
        f"""name: wine-cv
seed: 42
data: {{source: csv, path: {data}, target: label, standardize: true, test: 0.2, validation: 0.1}}
model:
  input_shape: [13]
  layers:
    - Dense: {{units: 32, activation: relu}}
    - Dropout: {{rate: 0.1}}
    - Dense: {{units: 3, activation: softmax}}
train:
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: 32
  plots: false
  callbacks:
    early_stopping: {{monitor: val_loss, patience: 5, restore_best_weights: true}}
""",
        encoding="utf-8",
    )
    return path


def mnist_config(path: Path, mnist: Path, epochs: int, train_samples: int | None) -> Path:
    path.write_text(
        f"""name: mnist-overconfident
seed: 0
data: {{source: keras, name: mnist, path: {mnist}, scale: 255, test: builtin, validation: 0.1}}
model:
  input_shape: [28, 28]
  layers:
    - Flatten
    - Dense: {{units: 256, activation: relu}}
    - Dense: {{units: 10, activation: softmax}}
train:
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: 32
  plots: false
  calibrate: temperature
""",
        encoding="utf-8",
    )
    return path


# ----------------------------------------------------------------------------- runs


def newest_run(runs_dir: Path) -> Path | None:
    folders = [p for p in runs_dir.iterdir() if (p / "run.json").exists()] if runs_dir.exists() else []
    return max(folders, key=lambda p: p.stat().st_mtime) if folders else None


def train_and_evaluate(config: Path, sets: list[str], runs_dir: Path, label: str) -> dict:
    """`dltool train` then `dltool evaluate` on the run's test split; the figures of both."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    result = rb.run_measured(
        [*DLTOOL, "train", str(config), "-q", "--runs-dir", str(runs_dir), *set_args(sets)],
        env=bench_env(),
        label=label,
    )
    folder = newest_run(runs_dir)
    if result["rc"] != 0 or folder is None:
        return result | {"rc": result["rc"] or -1}
    evaluated = rb.run_measured(
        [*DLTOOL, "evaluate", folder.name, "--runs-dir", str(runs_dir), "--no-plots"], env=bench_env(), label=label
    )
    if evaluated["rc"] != 0:
        return evaluated
    run = json.loads((folder / "run.json").read_text())
    evaluation = json.loads((folder / "evaluations" / "test.json").read_text())
    classification = evaluation["classification"]
    minority = classification["per_class"]["1"]
    return result | {
        "run": run,
        "folder": folder,
        "recall": minority["recall"],
        "precision": minority["precision"],
        "pr_auc": classification["ranking"]["pr_auc"],
        "roc_auc": classification["ranking"]["roc_auc"],
        "accuracy": classification["accuracy"],
        "evaluation": classification,
    }


def imbalance_runs(args, work: Path, ways: dict[str, list[str]], label: str) -> tuple[list[dict], list[dict]]:
    """Every (seed, way) run; the way that goes first rotates from seed to seed."""
    pool, test = breast_cancer_split()
    config = imbalance_config(work / "breast-cancer.yaml", work / "breast-cancer.npz", args.imbalance_epochs)
    runs, draws = [], []
    names = list(ways)
    for seed in args.seed_list:
        data = work / f"breast-cancer-{seed}.npz"
        draws.append(imbalanced_npz(pool, test, seed, data) | {"seed": seed})
        shift = seed % len(names)
        for way in names[shift:] + names[:shift]:
            rb.log(f"{label}: seed {seed}, {way}")
            path = data
            if way in WAY_SHARES:  # this way's own draw of the pool
                path = work / f"breast-cancer-{seed}-{names.index(way)}.npz"
                imbalanced_npz(pool, test, seed, path, WAY_SHARES[way])
            sets = [f"data.path={path}", f"seed={seed}", *ways[way]]
            result = train_and_evaluate(config, sets, work / "runs" / label / f"{way}-{seed}".replace(" ", "_"), way)
            runs.append(result | {"way": way, "seed": seed, "sets": sets})
            if result["rc"] == 0:
                rb.log(f"  -> minority recall {result['recall']:.3f}, PR AUC {result['pr_auc']:.3f}")
    return runs, draws


def by_way(runs: list[dict], way: str, key: str) -> list[float]:
    return [r[key] for r in runs if r["way"] == way and r["rc"] == 0 and r.get(key) is not None]


def paired_points(runs: list[dict], way: str, base: str, key: str) -> list[float]:
    """(way - base) x 100 per seed, for the seeds where both ran."""
    a = {r["seed"]: r[key] for r in runs if r["way"] == way and r["rc"] == 0}
    b = {r["seed"]: r[key] for r in runs if r["way"] == base and r["rc"] == 0}
    return [100 * (a[s] - b[s]) for s in sorted(a.keys() & b.keys())]


def points_cell(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:+.1f}"
    return f"{statistics.mean(xs):+.1f} [{min(xs):+.1f} to {max(xs):+.1f}]"


def imbalance_section(args, runs: list[dict], draws: list[dict]) -> list[str]:
    draw = draws[0]
    lines = [
        "## Imbalance: class weights and resampling",
        "",
        f"breast_cancer made imbalanced: per seed, the training pool keeps all {draw['benign']} benign rows and "
        f"{draw['malignant']} malignant rows drawn with the seed ({MINORITY_SHARE:.0%} of the benign); "
        f"validation is 30 % of the pool, so about {round(0.3 * draw['malignant'])} malignant rows. The test split "
        f"is fixed: {draw['test_benign']} benign and {draw['test_malignant']} malignant rows held out (stratified "
        f"{TEST_SHARE:.0%} of the dataset) before the subsampling, so recall counts {draw['test_malignant']} "
        "malignant cases; its PR AUC is at that split's prevalence "
        f"({draw['test_malignant'] / (draw['test_malignant'] + draw['test_benign']):.0%}). "
        f"`Dense(16, relu) → Dense(1, sigmoid)`, standardized inputs, adam, {plural(args.imbalance_epochs, 'epoch')} "
        f"of batch 16, the seed as the run's seed. Decision rule: p ≥ 0.5. Mean over {plural(len(args.seed_list), 'seed')} "
        "[min–max].",
        "",
    ]
    rows = []
    for way in IMBALANCE_WAYS:
        if not any(r["way"] == way for r in runs):
            continue
        rows.append(
            [
                f"`{' '.join(IMBALANCE_WAYS[way]) or 'nothing'}`",
                mean_cell(by_way(runs, way, "recall")),
                mean_cell(by_way(runs, way, "precision")),
                mean_cell(by_way(runs, way, "pr_auc")),
                mean_cell(by_way(runs, way, "roc_auc")),
                mean_cell(by_way(runs, way, "accuracy")),
                points_cell(paired_points(runs, way, "none", "recall")) if way != "none" else "",
                points_cell(paired_points(runs, way, "none", "pr_auc")) if way != "none" else "",
            ]
        )
    header = ["set", "malignant recall", "malignant precision", "PR AUC", "ROC AUC", "accuracy"]
    lines += rb.table(header + ["recall − none (points)", "PR AUC − none (points)"], rows)
    recall_gain = paired_points(runs, "balanced", "none", "recall")
    pr_change = paired_points(runs, "balanced", "none", "pr_auc")
    if recall_gain and pr_change:
        clear = statistics.mean(recall_gain) >= CLEAR_MARGIN_POINTS
        kept = statistics.mean(pr_change) >= -PR_AUC_LOSS_POINTS
        lines += [
            f"- balanced raises minority recall by a clear margin (≥ {CLEAR_MARGIN_POINTS:g} points, mean over seeds): "
            f"{points_cell(recall_gain)} → {rb.met(clear)}",
            f"- without losing PR AUC (no more than {PR_AUC_LOSS_POINTS:g} points below none, mean): "
            f"{points_cell(pr_change)} → {rb.met(kept)}",
            "",
        ]
    return lines


def threshold_section(args, runs: list[dict]) -> list[str]:
    lines = [
        "## Threshold chosen on validation: precision_at_recall 0.9",
        "",
        "The imbalance section's data and model, with `train.threshold: {optimize: precision_at_recall, at: 0.9}`: after "
        "training, the run picks the largest threshold whose recall on the validation split is at least 0.9, "
        "records it, and `evaluate` applies it to the test split. In the imbalanced pool the validation split holds "
        "only a handful of malignant rows, so the threshold is as uncertain as a real small project's would be (the "
        "run's log line says so: a caution below 20 positives). The last row keeps every malignant row of the pool "
        "(148; about 44 in validation) to tell the rule from the data: same model, class weights and test split.",
        "",
    ]
    rows = []
    for way in THRESHOLD_WAYS:
        mine = [r for r in runs if r["way"] == way and r["rc"] == 0]
        if not mine:
            continue
        hits = sum(r["recall"] >= TARGET_RECALL for r in mine)
        thresholds = [r["threshold"] for r in mine if r.get("threshold") is not None]
        records = [r["run"].get("threshold") or {} for r in mine]
        positives = [t["positives"] for t in records if t.get("positives") is not None]
        validation = [(t.get("validation") or {}).get("recall") for t in records]
        fallbacks = sum(bool(t.get("fallback")) for t in records)
        rows.append(
            [
                way,
                f"{hits} of {len(mine)}",
                mean_cell(positives, 1),
                mean_cell([r["recall"] for r in mine]),
                mean_cell([r["precision"] for r in mine]),
                mean_cell(thresholds),
                mean_cell([v for v in validation if v is not None]),
                str(fallbacks),
                ", ".join(f"{r['seed']}: {r['recall']:.3f}" for r in mine),
            ]
        )
    lines += rb.table(
        [
            "set",
            "test recall ≥ 0.9",
            "malignant rows in validation",
            "test recall",
            "test precision",
            "threshold",
            "validation recall at it",
            "target missed on validation",
            "test recall by seed",
        ],
        rows,
    )
    return lines


def threshold_of(run: dict) -> float | None:
    """The decision threshold recorded in run.json."""
    chosen = run.get("threshold")
    if isinstance(chosen, dict):
        return chosen.get("value")
    return chosen


# ----------------------------------------------------------------------------- cv


def cv_runs(args, work: Path) -> list[dict]:
    data = wine_csv(work / "wine.csv")
    config = wine_config(work / "wine.yaml", data, args.cv_epochs)
    results = []
    orders = [[1, 2], [2, 1]]
    for round_ in range(args.cv_rounds):
        for workers in orders[round_ % 2]:
            runs_dir = work / f"cv-{workers}-{round_}" / "runs"  # its cv folder: cvs/ beside runs/
            runs_dir.mkdir(parents=True)
            rb.log(f"cv: round {round_ + 1}, --workers {workers}")
            command = [*DLTOOL, "cv", str(config), "--folds", str(args.folds), "--workers", str(workers)]
            result = rb.run_measured([*command, "--runs-dir", str(runs_dir)], env=bench_env(), label="cv")
            summaries = sorted(runs_dir.parent.glob("cvs/*/cv.json"))
            result |= {"workers": workers, "round": round_, "load": os.getloadavg()[0]}
            if result["rc"] == 0 and len(summaries) == 1:
                result["cv"] = json.loads(summaries[0].read_text())
            results.append(result)
    return results


def cv_section(args, results: list[dict]) -> list[str]:
    lines = [
        "## Cross-validation: wine, 5 folds",
        "",
        f"`dltool cv CONFIG --folds {args.folds}` on scikit-learn's wine written as a CSV (178 rows, 13 features, 3 "
        "classes), the csv-classifier template's model: `Dense(32, relu) → Dropout(0.1) → Dense(3, softmax)`, "
        f"standardized, adam, up to {plural(args.cv_epochs, 'epoch')} with early stopping on val_loss (patience 5). "
        "Each fold's held-out part is its test split (stratified folds); validation is 10 % of the rest. "
        f"--workers 1 and 2 alternate, {plural(args.cv_rounds, 'round')}; wall is the whole `dltool cv` command.",
        "",
    ]
    rows = []
    for r in results:
        cv = r.get("cv") or {}
        accuracy = (cv.get("metrics") or {}).get("accuracy") or {}
        rows.append(
            [
                str(r["round"] + 1),
                str(r["workers"]),
                f"{r['wall']:.1f}" if r["rc"] == 0 else f"failed (exit {r['rc']})",
                _interval(accuracy),
                f"{r['load']:.2f}",
            ]
        )
    lines += rb.table(["round", "workers", "wall s", "test accuracy mean ± std [95 % interval]", "load"], rows)
    one = [r["wall"] for r in results if r["workers"] == 1 and r["rc"] == 0]
    two = [r["wall"] for r in results if r["workers"] == 2 and r["rc"] == 0]
    if one and two:
        lines += [
            f"- Wall, median of {plural(len(one), 'round')}: 1 worker {statistics.median(one):.1f} s, 2 workers "
            f"{statistics.median(two):.1f} s ({statistics.median(two) / statistics.median(one):.2f}×) on "
            f"{os.cpu_count()} cores.",
            "",
        ]
    return lines


def _interval(figures: dict) -> str:
    if not figures:
        return "n/a"
    low, high = figures.get("ci95") or (None, None)
    text = f"{figures['mean']:.4f} ± {figures['std']:.4f}"
    return text + (f" [{low:.4f}, {high:.4f}]" if low is not None else "")


# ----------------------------------------------------------------------------- calibration


def calibration_runs(args, work: Path) -> list[dict]:
    config = mnist_config(work / "mnist.yaml", args.mnist, args.mnist_epochs, None)
    results = []
    for seed in args.calibration_seeds:
        runs_dir = work / "runs" / f"mnist-{seed}"
        runs_dir.mkdir(parents=True)
        rb.log(f"calibration: seed {seed}, {plural(args.mnist_epochs, 'epoch')}")
        sets = [f"seed={seed}", *(["data.train_samples=" + str(args.mnist_samples)] if args.mnist_samples else [])]
        result = rb.run_measured(
            [*DLTOOL, "train", str(config), "-q", "--runs-dir", str(runs_dir), *set_args(sets)],
            env=bench_env(),
            label="calibration",
        )
        folder = newest_run(runs_dir)
        result |= {"seed": seed}
        if result["rc"] == 0 and folder is not None:
            result["run"] = json.loads((folder / "run.json").read_text())
            result["metrics"] = json.loads((folder / "metrics.json").read_text())
        results.append(result)
    return results


def calibration_record(result: dict) -> dict:
    """The run's calibration record (temperature, figures before and after)."""
    return (result.get("run") or {}).get("calibration") or (result.get("metrics") or {}).get("calibration") or {}


def calibration_section(args, results: list[dict]) -> list[str]:
    lines = [
        "## Calibration: temperature scaling of an over-confident MNIST MLP",
        "",
        f"`Flatten → Dense(256, relu) → Dense(10, softmax)` on MNIST (pixels / 255), adam, "
        f"{plural(args.mnist_epochs, 'epoch')} of batch 32, no regularization and no early stopping, so that it "
        "grows over-confident; validation is 10 % of the training images, the test split MNIST's own 10,000. "
        "`train.calibrate: temperature` fits one temperature on the validation split after training and stores it as "
        "the model's last layer. Figures from the run's own record (ECE over 15 equal-width bins).",
        "",
    ]
    rows = []
    for r in results:
        record = calibration_record(r)
        if r["rc"] != 0 or not record:
            rows.append([str(r["seed"]), f"failed (exit {r['rc']})", "", "", "", "", ""])
            continue
        rows.append(
            [str(r["seed"]), f"{record['temperature']:.3f}"]
            + [
                f"{record[split]['before'][key]:.4f} → {record[split]['after'][key]:.4f}"
                for split, key in (("validation", "ece"), ("test", "ece"), ("test", "nll"), ("test", "brier"))
            ]
            + [f"{(r['metrics'].get('test') or {}).get('accuracy', float('nan')):.4f}"]
        )
    header = ["seed", "temperature", "validation ECE", "test ECE", "test NLL", "test Brier", "test accuracy"]
    lines += rb.table(header, rows)
    return lines


# ----------------------------------------------------------------------------- report


def failures(groups: dict[str, list[dict]]) -> list[str]:
    lines = []
    for name, runs in groups.items():
        for r in runs:
            if r["rc"] != 0:
                what = f"{name} {r.get('way', '')} seed {r.get('seed', r.get('workers', ''))}".strip()
                lines.append(
                    f"- **{what} failed** (exit {r['rc']}): `{shlex.join(map(str, r['cmd']))}`: "
                    f"`{rb.tail(r['stderr'] or r['stdout'], 600)}`"
                )
    return (["## Failed", "", *lines, ""]) if lines else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="among " + ", ".join(SECTIONS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..SEEDS-1 (default %(default)s)")
    parser.add_argument("--imbalance-epochs", type=int, default=40, help="(default %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="(default %(default)s)")
    parser.add_argument("--cv-epochs", type=int, default=50, help="(default %(default)s)")
    parser.add_argument("--cv-rounds", type=int, default=2, help="alternating rounds of 1 and 2 workers")
    parser.add_argument("--mnist", type=Path, default=MNIST, help="the MNIST .npz (default %(default)s)")
    parser.add_argument("--mnist-epochs", type=int, default=30, help="(default %(default)s)")
    parser.add_argument("--calibration-seeds", type=int, default=2, help="(default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="1 seed, few epochs, 3 folds, 1 cv round")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report (default %(default)s)")
    parser.add_argument("--update", action="store_true", help="keep the report's sections not measured this time")
    args = parser.parse_args(argv)
    args.mnist_samples = None
    if args.quick:
        args.seeds, args.imbalance_epochs, args.folds, args.cv_epochs, args.cv_rounds = 1, 5, 3, 3, 1
        args.mnist_epochs, args.calibration_seeds = 2, 1
    args.seed_list = list(range(args.seeds))
    args.calibration_seeds = list(range(args.calibration_seeds))
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; choose among {', '.join(SECTIONS)}")
    groups: dict[str, list[dict]] = {}
    texts: dict[str, list[str]] = kept_sections(args.output) if args.update else {}
    with tempfile.TemporaryDirectory(prefix="dltool-evaluation-") as folder:
        work = Path(folder)
        for section in sections:
            if section == "calibration" and not args.mnist.exists():
                parser.error(f"{args.mnist}: MNIST not found; give --mnist PATH.npz (x_train, y_train, x_test, y_test)")
            before = os.getloadavg()[0]
            groups[section], lines = measure(section, args, work)
            stamp = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
            texts[section] = lines + [
                f"_Measured {stamp}: `{shlex.join(['python', 'benchmarks/measure_evaluation.py', *_argv(argv)])}`; "
                f"load average (1 min) before / after {before:.2f} / {os.getloadavg()[0]:.2f}._",
                "",
            ]
    head = [
        "# Evaluation a practitioner trusts: imbalance, thresholds, cross-validation, calibration (issue 25)",
        "",
        "Measured with `dltool` as a user runs it, on scikit-learn's bundled datasets and the local MNIST (nothing "
        "downloaded). Regenerate with `python benchmarks/measure_evaluation.py` (~13 min on 2 cores); "
        "`--sections cv --update` measures one section again and keeps the others. Each section says when and under "
        "what load it was measured.",
        "",
        f"- dltool {rb.version_of('keras-dltool', 'dltool')}; TensorFlow {rb.version_of('tensorflow', 'tensorflow-cpu')}, "
        f"Keras {rb.version_of('keras')}, scikit-learn {rb.version_of('scikit-learn')}, NumPy {rb.version_of('numpy')}, "
        f"Python {sys.version.split()[0]}; {os.cpu_count()} cores, CPU only",
        "",
    ]
    body = [line for section in SECTIONS if section in texts for line in texts[section]]
    text = "\n".join(head + body + failures(groups)).rstrip() + "\n"
    write_atomic(args.output, text)
    rb.log(f"wrote {args.output}")
    return 1 if any(r["rc"] != 0 for runs in groups.values() for r in runs) else 0


def _argv(argv: list[str] | None) -> list[str]:
    return list(argv if argv is not None else sys.argv[1:])


def measure(section: str, args, work: Path) -> tuple[list[dict], list[str]]:
    """Run one section's measurements; (its runs, its text)."""
    if section == "imbalance":
        runs, draws = imbalance_runs(args, work, IMBALANCE_WAYS, "imbalance")
        return runs, imbalance_section(args, runs, draws)
    if section == "threshold":
        runs, _ = imbalance_runs(args, work, THRESHOLD_WAYS, "threshold")
        for r in runs:
            if r["rc"] == 0:
                r["threshold"] = threshold_of(r["run"])
        return runs, threshold_section(args, runs)
    if section == "cv":
        runs = cv_runs(args, work)
        return runs, cv_section(args, runs)
    runs = calibration_runs(args, work)
    return runs, calibration_section(args, runs)


SECTION_TITLES = {
    "imbalance": "## Imbalance",
    "threshold": "## Threshold",
    "cv": "## Cross-validation",
    "calibration": "## Calibration",
}


def kept_sections(path: Path) -> dict[str, list[str]]:
    """The sections of an earlier report, by name (what --update keeps of the ones it does not measure)."""
    if not path.exists():
        return {}
    kept: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = next((name for name, title in SECTION_TITLES.items() if line.startswith(title)), None)
        if current is not None:
            kept.setdefault(current, []).append(line)
    return {name: lines + [""] for name, lines in kept.items()}


if __name__ == "__main__":
    sys.exit(main())
