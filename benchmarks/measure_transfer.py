#!/usr/bin/env python3
"""Issue 23, transfer learning: a backbone pretrained on MNIST digits 0-4 reused for digits 5-9 with 10 or 50
images per class, by dltool and by plain Keras side by side. Writes RESULTS-transfer.md.

    python benchmarks/measure_transfer.py                 # full: 5 seeds x (10, 50)/class x 4 ways x 2 sides, ~9 min
    python benchmarks/measure_transfer.py --quick         # smoke pass: 1 seed, 10/class, 3 + 1 epochs
    python benchmarks/measure_transfer.py --seeds 3 --per-class 10 --ways scratch,frozen --output /tmp/t.md

The data (written into a temporary folder, nothing downloaded): the pretraining set is MNIST's training images of
digits 0-4 (its test split: the test images of 0-4); each task is N training images per digit 5-9, drawn with the
seed (the first N of a per-digit permutation, so the 10-image draw is part of the 50-image one), relabelled 0-4,
tested on all the test images of 5-9. One pretraining run per side (seed 42), shared by every task run of that side.

The task, four ways (--ways): scratch (the pretraining architecture, fresh weights), frozen (the pretrained layers
up to Flatten as a frozen backbone under a new Dense(64) -> Dense(5)), fine_tuned (frozen, then the backbone
unfrozen at a 10x lower learning rate), wrong_cut (the whole pretrained model minus its last layer, frozen, under
the same new head). dltool: `dltool train CONFIG --set ...` in a subprocess, figures read back from the run folder
(metrics.json, history.csv). Plain Keras: benchmarks/plain_keras_transfer.py in a subprocess (keras-io's
"Transfer learning & fine-tuning" guide), so both sides pay the same start-up. Same seeds, data, epochs, batch
size, optimizer and steps_per_execution on both sides; the side that goes first alternates from seed to seed.

Only plain Python and numpy in this process (the helpers of run_benchmarks.py: run_measured, spread, table).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
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
DEFAULT_OUTPUT = BENCH / "RESULTS-transfer.md"
KEPT_MARKER = "<!-- Written by hand below this line; measure_transfer.py keeps it when it rewrites the file. -->"

PRETRAIN_DIGITS = (0, 1, 2, 3, 4)
TASK_DIGITS = (5, 6, 7, 8, 9)
WAYS = ["scratch", "frozen", "fine_tuned", "wrong_cut"]
SIDES = ["dltool", "keras"]
SIDE_NAMES = {"dltool": "dltool", "keras": "plain Keras"}
WAY_NAMES = {
    "scratch": "scratch",
    "frozen": "frozen backbone (up to Flatten)",
    "fine_tuned": "frozen, then fine-tuned",
    "wrong_cut": "wrong cut (all but the last layer), frozen",
}
PRETRAIN_SEED = 42
FINE_TUNE_DIVISOR = 10  # the fine-tuning phase's learning rate is the head's / 10 (keras-io's advice)
STEPS_PER_EXECUTION = 32  # dltool's default; given to the plain side too, so that epoch times compare alike

# Targets stated in issue 23.
FROZEN_MARGIN_POINTS = 3.0  # frozen beats scratch by at least this at 10 images per class, averaged over seeds
SAME_AS_KERAS_POINTS = 1.0  # dltool within this of plain Keras
HOLDS_POINTS = 0.5  # "fine-tuning holds": its mean no more than this below the frozen mean (our reading of "holds")


# ----------------------------------------------------------------------------- data


def task_indices(labels: np.ndarray, digits: tuple[int, ...], per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of each digit, drawn with ``seed``: the first ``per_class`` of a seeded
    permutation of each digit's indices, so a smaller draw is part of a larger one with the same seed."""
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in digits:
        where = np.flatnonzero(labels == digit)
        if len(where) < per_class:
            raise ValueError(f"digit {digit}: {len(where)} images, fewer than the {per_class} asked for")
        chosen.append(where[rng.permutation(len(where))[:per_class]])
    return np.concatenate(chosen)


def relabelled(labels: np.ndarray, digits: tuple[int, ...]) -> np.ndarray:
    """Labels as positions in ``digits`` (5..9 -> 0..4)."""
    lookup = np.full(10, -1, dtype=np.int64)
    lookup[list(digits)] = np.arange(len(digits))
    return lookup[labels]


def digits_split(mnist: dict, digits: tuple[int, ...], train_indices: np.ndarray | None = None) -> dict:
    """The arrays of an .npz in the Keras layout holding only ``digits`` (relabelled from 0): the training images
    at ``train_indices`` (default: all of those digits) and every test image of those digits."""
    if train_indices is None:
        train_indices = np.flatnonzero(np.isin(mnist["y_train"], digits))
    test = np.isin(mnist["y_test"], digits)
    return {
        "x_train": mnist["x_train"][train_indices],
        "y_train": relabelled(mnist["y_train"][train_indices], digits),
        "x_test": mnist["x_test"][test],
        "y_test": relabelled(mnist["y_test"][test], digits),
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename: a reader never sees half a report."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_npz(path: Path, arrays: dict) -> Path:
    temporary = path.with_name(f".{path.name}.tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return path


def write_data(args, work: Path) -> dict:
    """The pretraining .npz and one task .npz per (images per class, seed); returns their paths and sizes."""
    with np.load(args.mnist) as data:
        mnist = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    pretrain = digits_split(mnist, PRETRAIN_DIGITS)
    if args.pretrain_images:
        keep = np.random.default_rng(PRETRAIN_SEED).permutation(len(pretrain["x_train"]))[: args.pretrain_images]
        pretrain["x_train"], pretrain["y_train"] = pretrain["x_train"][keep], pretrain["y_train"][keep]
    files = {"pretrain": write_npz(work / "pretrain.npz", pretrain), "tasks": {}}
    files["sizes"] = {"pretrain": (len(pretrain["x_train"]), len(pretrain["x_test"]))}
    for per_class in args.per_class:
        for seed in args.seed_list:
            chosen = task_indices(mnist["y_train"], TASK_DIGITS, per_class, seed)
            task = digits_split(mnist, TASK_DIGITS, chosen)
            files["tasks"][per_class, seed] = write_npz(work / f"task-{per_class}-{seed}.npz", task)
            files["sizes"]["task", per_class] = (len(task["x_train"]), len(task["x_test"]))
    return files


# ----------------------------------------------------------------------------- dltool's configs

CNN_LAYERS = """\
    - {Conv2D: {filters: 16, kernel_size: 3, activation: relu}}
    - MaxPooling2D
    - {Conv2D: {filters: 32, kernel_size: 3, activation: relu}}
    - MaxPooling2D
    - Flatten
    - {Dense: {units: 64, activation: relu}}
    - {Dense: {units: 5, activation: softmax}}
"""

HEAD_LAYERS = """\
    - {{Backbone: {{run: {run}, up_to: {up_to}, trainable: false}}}}
    - {{Dense: {{units: 64, activation: relu}}}}
    - {{Dense: {{units: 5, activation: softmax}}}}
"""

CONFIG = """\
name: {name}
seed: {seed}
data: {{source: npz, path: {path}, scale: 255, validation: null}}
model:
  input_shape: [28, 28, 1]
  layers:
{layers}train:
  optimizer: {{name: adam, learning_rate: {learning_rate}}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: {batch_size}
  steps_per_execution: {steps_per_execution}
  tensorboard: false
  plots: false
{fine_tune}"""


def yaml_float(value: float) -> str:
    """A float YAML reads back as a float: PyYAML takes '1e-05' (no dot) for a string."""
    return f"{value:.12f}".rstrip("0")


def dltool_config(
    name: str, way: str, *, data: Path, epochs: int, batch_size: int, args, pretrained_run: Path | None = None
) -> str:
    """The config a user writes for ``way`` ('pretrain' or one of WAYS); seed and data.path are set per run."""
    if way in ("pretrain", "scratch"):
        layers = CNN_LAYERS
    else:
        up_to = "-2" if way == "wrong_cut" else "flatten"  # the wrong cut by index: -2 drops the last layer
        layers = HEAD_LAYERS.format(run=json.dumps(str(pretrained_run)), up_to=up_to)
    fine_tune = ""
    if way == "fine_tuned":
        rate = args.learning_rate / FINE_TUNE_DIVISOR
        fine_tune = (
            f"  fine_tune: {{unfreeze: all, epochs: {args.fine_tune_epochs}, learning_rate: {yaml_float(rate)}}}\n"
        )
    return CONFIG.format(
        name=name,
        seed=PRETRAIN_SEED,
        path=json.dumps(str(data)),
        layers=layers,
        learning_rate=yaml_float(args.learning_rate),
        epochs=epochs,
        batch_size=batch_size,
        steps_per_execution=STEPS_PER_EXECUTION,
        fine_tune=fine_tune,
    )


# ----------------------------------------------------------------------------- running the two sides


def bench_env() -> dict:
    """This checkout's dltool, TensorFlow as the backend of both sides."""
    env = rb.base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("KERAS_BACKEND", None)
    return env


def set_args(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]


def refusal(config: Path, sets: list[str]) -> str | None:
    """dltool's message when it refuses ``config`` (`dltool validate --schema-only`: no TensorFlow), else None."""
    proc = subprocess.run(
        [*DLTOOL, "validate", str(config), "--schema-only", *set_args(sets)],
        cwd=REPO,
        env=bench_env(),
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()


def read_phases(history: Path) -> list[list[float]]:
    """Epoch seconds per phase from history.csv (a `phase` column numbers them from 1; absent: one phase)."""
    if not history.exists():
        return []
    phases: dict[int, list[float]] = {}
    with open(history, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch_seconds"):
                phases.setdefault(int(float(row.get("phase") or 1)), []).append(float(row["epoch_seconds"]))
    return [phases[k] for k in sorted(phases)]


def dltool_run(config: Path, sets: list[str], runs_dir: Path, label: str) -> dict:
    """One `dltool train` into its own ``runs_dir``; the run folder's figures added to run_measured's."""
    runs_dir.mkdir(parents=True)
    command = [*DLTOOL, "train", str(config), "-q", "--runs-dir", str(runs_dir), *set_args(sets)]
    result = rb.run_measured(command, env=bench_env(), label=label)
    folders = [p for p in runs_dir.iterdir() if (p / "run.json").exists()]
    if result["rc"] != 0:
        return result
    if len(folders) != 1:
        result["rc"] = -1
        result["stderr"] += f"\nexpected one run folder in {runs_dir}, found {len(folders)}"
        return result
    folder = folders[0]
    metrics = json.loads((folder / "metrics.json").read_text())
    info = json.loads((folder / "run.json").read_text())
    # run.json's parameters are phase 1's; a run with fine_tune lists each phase's under phases.
    phases = info.get("phases") or [info.get("parameters") or {}]
    result.update(
        trainable_params=[phase.get("trainable") for phase in phases],
        run_dir=folder,
        test_accuracy=(metrics.get("test") or {}).get("accuracy"),
        fit_seconds=metrics.get("fit_seconds"),
        epoch_seconds=read_phases(folder / "history.csv"),
    )
    return result


def keras_run(step: str, data: Path, extra: list[str], label: str) -> dict:
    """One run of plain_keras_transfer.py; its JSON line added to run_measured's."""
    command = [PYTHON, str(BENCH / "plain_keras_transfer.py"), step, str(data), *extra]
    result = rb.run_measured(command, env=bench_env(), label=label)
    if result["rc"] == 0:
        lines = [line for line in result["stdout"].splitlines() if line.startswith("{")]
        result.update(json.loads(lines[-1]) if lines else {"rc": -1})
    return result


def pretrain(args, work: Path, files: dict) -> dict:
    """The pretraining run of each side: dltool's run folder and plain Keras's saved model."""
    results = {}
    config = work / "pretrain.yaml"
    config.write_text(
        dltool_config(
            "transfer-pretrain",
            "pretrain",
            data=files["pretrain"],
            epochs=args.pretrain_epochs,
            batch_size=args.pretrain_batch_size,
            args=args,
        )
    )
    for side in SIDES:
        rb.log(f"pretraining: {SIDE_NAMES[side]} ({plural(args.pretrain_epochs, 'epoch')} on digits 0-4)")
        if side == "dltool":
            result = dltool_run(config, [], work / "runs" / "pretrain", "dltool pretrain")
        else:
            saved = work / "pretrained.keras"
            extra = [
                *("--save", str(saved), "--epochs", str(args.pretrain_epochs)),
                *("--batch-size", str(args.pretrain_batch_size), "--seed", str(PRETRAIN_SEED)),
                *("--learning-rate", repr(args.learning_rate), "--steps-per-execution", str(STEPS_PER_EXECUTION)),
            ]
            result = keras_run("pretrain", files["pretrain"], extra, "keras pretrain")
            result["saved"] = saved
        result["load"] = os.getloadavg()[0]
        rb.log(f"  -> test accuracy {result.get('test_accuracy')}, wall {result['wall']:.1f} s, exit {result['rc']}")
        results[side] = result
    return results


def task_configs(args, work: Path, pretrained_run: Path | None) -> dict[str, Path]:
    """One dltool config per way (seed and data.path are --set per run)."""
    configs = {}
    for way in args.ways:
        if way != "scratch" and pretrained_run is None:
            continue
        path = work / f"task-{way}.yaml"
        path.write_text(
            dltool_config(
                f"transfer-{way.replace('_', '-')}",
                way,
                data=work / "task.npz",
                epochs=args.epochs,
                batch_size=args.batch_size,
                args=args,
                pretrained_run=pretrained_run,
            )
        )
        configs[way] = path
    return configs


def run_tasks(args, work: Path, files: dict, pretrained: dict) -> tuple[list[dict], dict[str, str]]:
    """Every (images per class, seed, way, side) run; sides alternate which goes first from seed to seed.

    Returns the runs and, per way, why dltool's side was not measured (its refusal) where it was not."""
    dltool_pre = pretrained["dltool"].get("run_dir") if pretrained["dltool"]["rc"] == 0 else None
    keras_pre = pretrained["keras"]["saved"] if pretrained["keras"]["rc"] == 0 else None
    configs = task_configs(args, work, dltool_pre)
    refused = {}
    for way, config in configs.items():
        sample = files["tasks"][args.per_class[0], args.seed_list[0]]
        message = refusal(config, [f"data.path={sample}"])
        if message:
            refused[way] = message
            rb.log(f"dltool {way}: not measured: dltool refused its config: {message}")
    for way in args.ways:
        if way not in configs and way not in refused:
            refused[way] = "the dltool pretraining run failed: no backbone to reuse"
    runs = []
    count = 0
    total = len(args.per_class) * len(args.seed_list)
    for per_class in args.per_class:
        for turn, seed in enumerate(args.seed_list):
            count += 1
            data = files["tasks"][per_class, seed]
            sides = SIDES if turn % 2 == 0 else SIDES[::-1]
            for side in sides:
                for way in args.ways:
                    label = f"{per_class}/class seed {seed} {way} {side}"
                    rb.log(f"[{count}/{total}] {label}")
                    load = os.getloadavg()[0]
                    if side == "dltool":
                        if way in refused:
                            continue
                        folder = work / "runs" / f"{per_class}-{seed}-{way}"
                        result = dltool_run(configs[way], [f"seed={seed}", f"data.path={data}"], folder, label)
                    else:
                        if way != "scratch" and keras_pre is None:
                            continue
                        extra = [
                            *("--way", way, "--seed", str(seed), "--epochs", str(args.epochs)),
                            *("--fine-tune-epochs", str(args.fine_tune_epochs), "--batch-size", str(args.batch_size)),
                            *("--learning-rate", repr(args.learning_rate)),
                            *("--steps-per-execution", str(STEPS_PER_EXECUTION)),
                            *(("--pretrained", str(keras_pre)) if way != "scratch" else ()),
                        ]
                        result = keras_run("task", data, extra, label)
                    result.update(side=side, way=way, per_class=per_class, seed=seed, load=load)
                    rb.log(f"  -> test accuracy {result.get('test_accuracy')}, wall {result['wall']:.1f} s")
                    runs.append(result)
    return runs, refused


# ----------------------------------------------------------------------------- the report


def accuracies(runs: list[dict], **where) -> list[float]:
    return [
        r["test_accuracy"]
        for r in runs
        if r["rc"] == 0 and r.get("test_accuracy") is not None and all(r[k] == v for k, v in where.items())
    ]


def by_seed(runs: list[dict], **where) -> dict[int, float]:
    return {
        r["seed"]: r["test_accuracy"]
        for r in runs
        if r["rc"] == 0 and r.get("test_accuracy") is not None and all(r[k] == v for k, v in where.items())
    }


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def mean_cell(xs: list[float]) -> str:
    """'mean [min–max]' of accuracies (the mean alone for one)."""
    if not xs:
        return "n/a"
    text = f"{statistics.fmean(xs):.3f}"
    return text + (f" [{min(xs):.3f}–{max(xs):.3f}]" if len(xs) > 1 else "")


def points_cell(pairs: list[float]) -> str:
    """The mean of paired differences in points, with their min–max."""
    if not pairs:
        return "n/a"
    points = [100 * p for p in pairs]
    text = f"{statistics.fmean(points):+.1f}"
    return text + (f" [{min(points):+.1f} to {max(points):+.1f}]" if len(points) > 1 else "")


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a - b for the seeds both have."""
    return [a[s] - b[s] for s in sorted(a) if s in b]


def phase_seconds(runs: list[dict], phase: int, pick=statistics.median, **where) -> list[float]:
    """``pick`` (default the median) of each run's epoch seconds in ``phase`` (0: the first), for the runs
    matching ``where``."""
    found = []
    for r in runs:
        if r["rc"] == 0 and all(r[k] == v for k, v in where.items()):
            phases = r.get("epoch_seconds") or []
            if len(phases) > phase and phases[phase]:
                found.append(pick(phases[phase]))
    return found


def first(xs: list[float]) -> float:
    return xs[0]


def walls(runs: list[dict], **where) -> list[float]:
    return [r["wall"] for r in runs if r["rc"] == 0 and all(r[k] == v for k, v in where.items())]


def seconds_cell(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return rb.spread([1000 * x for x in xs], digits=0, unit=" ms")


def accuracy_section(args, runs: list[dict]) -> list[str]:
    lines = ["## Test accuracy", ""]
    lines.append(
        f"Mean over {plural(len(args.seed_list), 'seed')} [min–max] of `metrics.json` `test.accuracy` (dltool) and of the "
        "plain script's `evaluate` on the same test images; the difference is dltool − plain Keras in points, "
        "paired by seed (mean [min to max])."
    )
    lines.append("")
    for per_class in args.per_class:
        rows = []
        for way in args.ways:
            dl = by_seed(runs, side="dltool", way=way, per_class=per_class)
            ke = by_seed(runs, side="keras", way=way, per_class=per_class)
            rows.append(
                [
                    WAY_NAMES[way],
                    mean_cell(list(dl.values())),
                    mean_cell(list(ke.values())),
                    points_cell(paired(dl, ke)),
                ]
            )
        lines += [f"### {per_class} training images per class ({per_class * len(TASK_DIGITS)} in all)", ""]
        lines += rb.table(["way", "dltool", "plain Keras", "dltool − Keras (points)"], rows)
    lines += ["Per seed (seeds " + ", ".join(str(s) for s in args.seed_list) + "):", ""]
    rows = []
    for per_class in args.per_class:
        for way in args.ways:
            for side in SIDES:
                seeds = by_seed(runs, side=side, way=way, per_class=per_class)
                cells = " ".join(f"{seeds[s]:.3f}" if s in seeds else "—" for s in args.seed_list)
                rows.append([str(per_class), WAY_NAMES[way], SIDE_NAMES[side], cells])
    lines += rb.table(["per class", "way", "side", "test accuracy by seed"], rows)
    return lines


def targets_section(args, runs: list[dict]) -> list[str]:
    """The issue's three targets, each with its figure on both sides."""
    rows = []
    if 10 in args.per_class and {"scratch", "frozen"} <= set(args.ways):
        for side in SIDES:
            margin = paired(
                by_seed(runs, side=side, way="frozen", per_class=10),
                by_seed(runs, side=side, way="scratch", per_class=10),
            )
            ok = statistics.fmean(margin) * 100 >= FROZEN_MARGIN_POINTS if margin else None
            rows.append(
                [
                    f"frozen − scratch at 10/class ≥ {FROZEN_MARGIN_POINTS:g} points ({SIDE_NAMES[side]})",
                    points_cell(margin),
                    rb.met(ok),
                ]
            )
    if {"frozen", "fine_tuned"} <= set(args.ways):
        for per_class in args.per_class:
            for side in SIDES:
                gain = paired(
                    by_seed(runs, side=side, way="fine_tuned", per_class=per_class),
                    by_seed(runs, side=side, way="frozen", per_class=per_class),
                )
                ok = statistics.fmean(gain) * 100 >= -HOLDS_POINTS if gain else None
                rows.append(
                    [
                        f"fine-tuned − frozen at {per_class}/class ≥ −{HOLDS_POINTS:g} ({SIDE_NAMES[side]})",
                        points_cell(gain),
                        rb.met(ok),
                    ]
                )
    for per_class in args.per_class:
        for way in args.ways:
            dl = accuracies(runs, side="dltool", way=way, per_class=per_class)
            ke = accuracies(runs, side="keras", way=way, per_class=per_class)
            gap = 100 * (statistics.fmean(dl) - statistics.fmean(ke)) if dl and ke else None
            rows.append(
                [
                    f"dltool within {SAME_AS_KERAS_POINTS:g} point of plain Keras: {way}, {per_class}/class",
                    "n/a" if gap is None else f"{gap:+.1f}",
                    rb.met(None if gap is None else abs(gap) <= SAME_AS_KERAS_POINTS),
                ]
            )
    return ["## Targets (issue 23)", ""] + rb.table(["target", "figure (points, mean over seeds)", "met"], rows)


def seconds_section(args, runs: list[dict]) -> list[str]:
    rows = []
    for per_class in args.per_class:
        for way in args.ways:
            phases = [("all layers trainable" if way == "scratch" else "backbone frozen", 0)]
            if way == "fine_tuned":
                phases.append(("backbone unfrozen (fine-tuning)", 1))
            for what, phase in phases:
                row = [str(per_class), WAY_NAMES[way], what]
                for pick in (statistics.median, first):
                    for side in SIDES:
                        found = phase_seconds(runs, phase, pick, side=side, way=way, per_class=per_class)
                        row.append(seconds_cell(found))
                if phase == 0:
                    row += [rb.spread(walls(runs, side=side, way=way, per_class=per_class), 1) for side in SIDES]
                else:
                    row += ["", ""]
                rows.append(row)
    header = ["per class", "way", "phase", "epoch: dltool", "epoch: plain Keras", "first epoch: dltool"]
    header += ["first epoch: plain Keras", "wall s: dltool", "wall s: plain Keras"]
    return [
        "## Seconds per epoch",
        "",
        "Each run's median epoch (on_epoch_begin to on_epoch_end: dltool's `history.csv` `epoch_seconds`, split "
        "by its `phase` column; the plain script's callback measures the same span), then the median [min–max] "
        "of those over the seeds; the first epoch of each phase apart (it includes tracing and compiling the "
        "step, again after the recompile that unfreezes the backbone); and the whole process's wall time (Python "
        "start to exit: imports, data, pretrained model, fit, test, and dltool's run folder). An epoch here is "
        f"{' or '.join(str(n * len(TASK_DIGITS)) for n in args.per_class)} images in batches of {args.batch_size}, "
        f"at most {STEPS_PER_EXECUTION} batches per call on both sides: fixed costs per epoch weigh as much as the "
        "arithmetic.",
        "",
    ] + rb.table(header, rows)


def parameters_section(args, runs: list[dict]) -> list[str]:
    """The parameters each side trained in each phase (dltool's run.json, the plain script's trainable_weights)."""
    rows = []
    for way in args.ways:
        cells = []
        for side in SIDES:
            found = {
                tuple(r.get("trainable_params") or ())
                for r in runs
                if r["rc"] == 0 and r["side"] == side and r["way"] == way
            }
            cells.append("; ".join(" then ".join(f"{n:,}" for n in phases) for phases in sorted(found)) or "n/a")
        rows.append([WAY_NAMES[way], *cells])
    return ["## Parameters trained, per phase", ""] + rb.table(["way", "dltool", "plain Keras"], rows)


def pretrain_section(pretrained: dict) -> list[str]:
    rows = []
    for side in SIDES:
        r = pretrained[side]
        phases = r.get("epoch_seconds") or []
        epochs = ", ".join(f"{s:.1f}" for s in (phases[0] if phases else []))
        accuracy = r.get("test_accuracy")
        rows.append(
            [
                SIDE_NAMES[side],
                "FAILED" if r["rc"] != 0 else f"{accuracy:.4f}",
                "n/a" if r.get("fit_seconds") is None else f"{r['fit_seconds']:.1f}",
                epochs or "n/a",
                f"{r['wall']:.1f}",
            ]
        )
    return ["## Pretraining (digits 0–4)", ""] + rb.table(
        ["side", "test accuracy (0–4)", "fit s", "epoch s", "wall s"], rows
    )


def load_line(pretrained: dict, runs: list[dict], loads: tuple[float, float]) -> str:
    during = [r["load"] for r in [*pretrained.values(), *runs] if r.get("load") is not None]
    span = f"; at each run's start {min(during):.2f}–{max(during):.2f}" if during else ""
    return f"- Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}{span} (2 cores)"


def failures(pretrained: dict, runs: list[dict], refused: dict[str, str]) -> list[str]:
    lines = [f"- **dltool, {way}: not measured.** " + message.replace("\n", " ") for way, message in refused.items()]
    for r in [*pretrained.values(), *runs]:
        if r["rc"] != 0:
            what = f"{r.get('per_class', '')}/class seed {r.get('seed')} {r.get('way')}" if "way" in r else "pretrain"
            lines.append(
                f"- **{what} failed** (exit {r['rc']}): `{shlex.join(r['cmd'])}`: `{rb.tail(r['stderr'], 600)}`"
            )
    return (["## Not measured or failed", "", *lines, ""]) if lines else []


def report(args, files: dict, pretrained: dict, runs: list[dict], refused: dict, loads: tuple, command: str) -> str:
    pre_train, pre_test = files["sizes"]["pretrain"]
    task_sizes = ", ".join(
        f"{n}/class: {files['sizes']['task', n][0]} train, {files['sizes']['task', n][1]:,} test"
        for n in args.per_class
    )
    lines = [
        "# Transfer learning: a pretrained backbone on a small task (issue 23)",
        "",
        "A backbone pretrained on MNIST digits 0–4 and reused for digits 5–9 with few images, trained by dltool "
        "(`dltool train` with a `Backbone` layer and `train.fine_tune`) and by the same experiment written in "
        "plain Keras after keras-io's *Transfer learning & fine-tuning* guide, side by side. The data are MNIST "
        "digits, not photos: no ImageNet weights can be downloaded on this machine. Regenerate:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; dltool {rb.version_of('keras-dltool', 'dltool')}",
        f"- Versions: TensorFlow {rb.version_of('tensorflow', 'tensorflow-cpu')}, Keras {rb.version_of('keras')}, "
        f"NumPy {rb.version_of('numpy')}, Python {sys.version.split()[0]}; {os.cpu_count()} cores, CPU only",
        load_line(pretrained, runs, loads),
        f"- Pretraining: the {pre_train:,} training images of digits 0–4 (test: their {pre_test:,} test images), "
        f"{plural(args.pretrain_epochs, 'epoch')}, batch {args.pretrain_batch_size}, adam {args.learning_rate:g}, seed "
        f"{PRETRAIN_SEED}; one run per side, shared by all of that side's task runs. `Conv2D(16, 3, relu) → "
        "MaxPool → Conv2D(32, 3, relu) → MaxPool → Flatten → Dense(64, relu) → Dense(5, softmax)`, inputs / 255.",
        f"- Task: digits 5–9 relabelled 0–4 ({task_sizes}; every test image of 5–9), the training images drawn "
        "per seed (the 10-image draw is part of the 50-image one). No validation split, no early stopping: "
        f"{plural(args.epochs, 'epoch')}, batch {args.batch_size}, adam {args.learning_rate:g}; fine-tuning "
        f"{plural(args.fine_tune_epochs, 'more epoch')} at {args.learning_rate / FINE_TUNE_DIVISOR:g} with the backbone "
        f"unfrozen. steps_per_execution {STEPS_PER_EXECUTION} on both sides; the seed seeds the draw, the new "
        "weights and the shuffles on both sides.",
        "- Ways: scratch (the pretraining architecture, fresh weights); frozen (the pretrained layers up to "
        "Flatten, `up_to: flatten`, under a new Dense(64) → Dense(5)); frozen then fine-tuned; the wrong cut "
        "(the whole pretrained model minus its last layer, `up_to: -2`, frozen, under the same new head).",
        "",
    ]
    lines += pretrain_section(pretrained)
    lines += targets_section(args, runs)
    lines += accuracy_section(args, runs)
    lines += seconds_section(args, runs)
    lines += parameters_section(args, runs)
    lines += failures(pretrained, runs, refused)
    return "\n".join(lines).rstrip() + "\n"


def raw_results(pretrained: dict, runs: list[dict]) -> list[dict]:
    """Every run's figures as JSON-ready dicts (paths as strings, output left out)."""
    keep = ("side", "way", "per_class", "seed", "rc", "wall", "rss_mb", "load", "test_accuracy", "phase_accuracy")
    keep += ("trainable_params",)
    rows = []
    for name, r in [*(("pretrain", r) for r in pretrained.values()), *(("task", r) for r in runs)]:
        row = {k: r[k] for k in keep if k in r}
        row.update(step=name, fit_seconds=r.get("fit_seconds"), epoch_seconds=r.get("epoch_seconds"))
        row["command"] = shlex.join(str(c) for c in r["cmd"])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=MNIST, help="the MNIST .npz (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..SEEDS-1 (default %(default)s)")
    parser.add_argument("--per-class", default="10,50", help="training images per class (default %(default)s)")
    parser.add_argument("--ways", default=",".join(WAYS), help="among " + ", ".join(WAYS))
    parser.add_argument("--epochs", type=int, default=30, help="head (or scratch) epochs (default %(default)s)")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, help="(default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="task batch size (default %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="adam's rate (default %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=2, help="(default %(default)s)")
    parser.add_argument("--pretrain-batch-size", type=int, default=32, help="(default %(default)s)")
    parser.add_argument("--pretrain-images", type=int, help="pretrain on this many of the 0-4 images (default all)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 10/class, 3 + 1 epochs, 3,000 pretrain images")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.per_class, args.epochs, args.fine_tune_epochs = 1, "10", 3, 1
        args.pretrain_epochs, args.pretrain_images = 1, args.pretrain_images or 3000
    args.seed_list = list(range(args.seeds))
    args.per_class = [int(n) for n in args.per_class.split(",")]
    args.ways = [w for w in args.ways.split(",") if w]
    unknown = [w for w in args.ways if w not in WAYS]
    if unknown:
        parser.error(f"--ways: unknown {', '.join(unknown)}; choose among {', '.join(WAYS)}")
    if not args.mnist.exists():
        parser.error(f"{args.mnist}: MNIST not found; give --mnist PATH.npz (x_train, y_train, x_test, y_test)")
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dltool-transfer-") as folder:
        work = Path(folder)
        files = write_data(args, work)
        pretrained = pretrain(args, work, files)
        runs, refused = run_tasks(args, work, files, pretrained)
        loads.append(os.getloadavg()[0])
        rows = raw_results(pretrained, runs)
    command = shlex.join(["python", "benchmarks/measure_transfer.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(args, files, pretrained, runs, refused, tuple(loads), command)
    old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if KEPT_MARKER in old:
        text += "\n" + KEPT_MARKER + old.split(KEPT_MARKER, 1)[1]
    write_atomic(args.output, text)
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    rb.log(f"wrote {args.output}")
    failed = any(r["rc"] != 0 for r in [*pretrained.values(), *runs])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
