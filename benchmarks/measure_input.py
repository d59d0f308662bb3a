#!/usr/bin/env python3
"""Issue 22, data larger than memory: image folders, decoding, Parquet and two processes. Writes RESULTS-input.md.

    python benchmarks/measure_input.py                    # full: 30,000 PNGs of 224x224, 10M Parquet rows, 2 repeats
    python benchmarks/measure_input.py --quick            # smoke pass: 600 PNGs of 64x64, 200k rows, 1 repeat
    python benchmarks/measure_input.py --only pipeline,parquet --rows 1000000 --out /tmp/input.md

Sections (--only): photos (dltool against keras-io's image_dataset_from_directory on a photo folder made from
MNIST, and data.cache: disk), pipeline (images decoded per second per core by dltool's reader), parquet (Parquet
against the streamed CSV on the same rows), processes (`dltool launch -n 2` on a streamed folder). Each measured
command is a subprocess: wall = perf_counter around it, peak RSS = /usr/bin/time %M; variants alternate over
--repeats and are reported as median [min-max] (the helpers of run_benchmarks.py). The photo folder is generated
once (a pool of 2 processes) and kept for the next run; Parquet and CSV files are deleted after their section.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import run_benchmarks as rb  # the harness's helpers: run_measured, alternate, spread, table, machine facts

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PYTHON = sys.executable
DLTOOL = [PYTHON, "-m", "dltool"]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
SECTIONS = ["photos", "pipeline", "parquet", "processes"]
MARKER = ".dltool-bench-photos.json"  # hidden: neither dltool nor keras counts it as an image or a class

# Sizes: (full, --quick).
PHOTOS = (30_000, 600)
PHOTO_SIDE = (224, 64)
DECODE_FILES = (2_000, 200)
PROCESS_IMAGES = (3_000, 300)
ROWS = (10_000_000, 200_000)
PARQUET_FILES = 8
ROW_GROUP_ROWS = 1_000_000  # at most; each file is written in at least two row groups
FEATURES = 20
SYNTHETIC_IMAGES = (2_048, 512)  # the CNN alone, fed from memory
JPEG_QUALITY = 90
IMAGENET_SIZE = (500, 375)  # the commonest ImageNet photo size (width, height)
GPU_REFERENCE_RATE = 10_000  # images/s: a round figure for a GPU on this small CNN (stated as such, not measured)

# Targets stated in issue 22.
PHOTOS_RSS_MB = 3 * 1024
PHOTOS_WALL_RATIO = 1.0
ACCURACY_POINTS = 3.0
FIRST_STEP_SECONDS = 10.0
CACHE_SPEEDUP = 2.0
PARQUET_RSS_MB = 1.5 * 1024

PUBLISHED_DECODE = (
    "261–864 ImageNet-validation JPEGs/s on one thread over 12 Python decoders × 5 server CPUs, Pillow 360–726 "
    "(decode to RGB only: bytes pre-loaded in memory, no resize): the single-thread table of "
    "github.com/ternaus/imread_benchmark's README (Iglovikov & Kosarevsky, arXiv:2605.08731); the issue's "
    "'about 270–860' is that table's range"
)

STATE: dict = {}  # what a section leaves for a later one: the photo folder, the CNN's fit rates


class Refused(Exception):
    """dltool refused a config or its data (exit 2): the keys this benchmark needs may not be there yet."""


# ----------------------------------------------------------------------------- helpers


def sizes(args, pair: tuple):
    return pair[1] if args.quick else pair[0]


def bench_env(**extra: str) -> dict:
    """The environment every measured command runs in: this checkout's dltool, the default Keras backend."""
    env = rb.base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("KERAS_BACKEND", None)  # keras-io's script and dltool both train on TensorFlow, the default
    env.update(extra)
    return env


def set_args(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]


def preflight(config: Path, sets: list[str], what: str) -> None:
    """Refuse early and clearly when dltool does not accept a config this section needs (no TensorFlow, ~0.5 s)."""
    proc = subprocess.run(
        [*DLTOOL, "validate", str(config), "--schema-only", *set_args(sets)],
        cwd=REPO,
        env=bench_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise Refused(
            f"dltool refused the config of {what} (`dltool validate --schema-only`, exit {proc.returncode}); "
            f"the keys this benchmark uses may not be merged yet. dltool said:\n{(proc.stderr or proc.stdout).strip()}"
        )


def preflight_all(checks: dict[str, tuple[Path, list[str]]]) -> tuple[list[str], list[str]]:
    """The variants dltool accepts, and a report line for each one it refuses (measured without it)."""
    accepted, refused = [], []
    for name, (config, sets) in checks.items():
        try:
            preflight(config, sets, f"'{name}'")
            accepted.append(name)
        except Refused as exc:
            rb.log(f"  {name}: not measured: {exc}")
            refused.append(f"**{name}: not measured.** " + str(exc).replace("\n", " "))
    return accepted, refused


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename: a reader never sees half a report."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def rate_cell(runs: list[dict], key: str) -> str:
    """'median [min–max]' of a per-second rate, in whole units with thousands separators."""
    xs = rb.values(runs, key)
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:,.0f}"
    return f"{rb.med(xs):,.0f} [{min(xs):,.0f}–{max(xs):,.0f}]"


def data_cell(runs: list[dict]) -> str:
    """How the runs held their data, from run.json's data.streamed (absent: in memory)."""
    kinds = {"streamed" if r.get("streamed") else "in memory" for r in runs if r["rc"] == 0 and "streamed" in r}
    return " / ".join(sorted(kinds)) or "—"


def median_of(results: list[dict], key: str):
    return rb.med(rb.values(results, key))


def parse_json_line(text: str) -> dict:
    """The last line of ``text`` that is a JSON object (the plain scripts print one)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def du_mb(path: Path) -> float:
    """Megabytes under ``path`` (0 for what cannot be read: a folder of another user, a file just removed)."""
    try:
        if path.is_file():
            return path.stat().st_size / 2**20
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    except OSError:
        return 0.0


def dltool_version() -> str:
    version = rb.version_of("keras-dltool", "dltool")
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{version} ({commit})" if commit else version


# ----------------------------------------------------------------------------- running dltool


def read_history(folder: Path) -> list[float]:
    history = folder / "history.csv"
    if not history.exists():
        return []
    with open(history, newline="") as handle:
        return [float(row["epoch_seconds"]) for row in csv.DictReader(handle) if row.get("epoch_seconds")]


def cache_entries(info, prefix: str = "") -> dict:
    """Every entry of run.json whose key mentions a cache (where dltool says it put one), flattened."""
    found = {}
    if isinstance(info, dict):
        for key, value in info.items():
            name = f"{prefix}{key}"
            if "cache" in key.lower():
                found[name] = value
            else:
                found.update(cache_entries(value, name + "."))
    return found


def read_dltool_run(folder: Path) -> dict:
    """A finished run folder's figures: fit and first-step seconds, epochs, test accuracy, training rate."""
    info = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    epochs = read_history(folder)
    train = (info.get("data") or {}).get("train")
    fit = info.get("fit_seconds")
    done = info.get("epochs_done") or len(epochs)
    return {
        "status": info.get("status"),
        "fit_seconds": fit,
        "first_step_seconds": info.get("first_step_seconds"),
        "epoch_seconds": epochs,
        "epoch1": epochs[0] if epochs else None,
        "epoch2": epochs[1] if len(epochs) > 1 else None,
        "test_accuracy": (metrics.get("test") or {}).get("accuracy"),
        "train_samples": train,
        "per_s": train * done / fit if train and fit else None,
        "data_info": info.get("data"),
        "streamed": (info.get("data") or {}).get("streamed"),
        "cache_info": cache_entries(info),
        "run_dir": folder,
    }


def dltool_command(command: list[str], runs_dir: Path, label: str) -> dict:
    """Run one dltool command (train or launch) in ``runs_dir``; a refusal (exit 2) stops the section."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in runs_dir.iterdir()}
    result = rb.run_measured([*DLTOOL, *command, "--runs-dir", str(runs_dir)], env=bench_env(), label=label)
    if result["rc"] == 2:
        raise Refused(f"dltool refused {label} (exit 2): {shlex.join(result['cmd'])}\n{result['stderr'].strip()}")
    new = [p for p in runs_dir.iterdir() if p.name not in before and (p / "run.json").exists()]
    if result["rc"] == 0 and len(new) == 1:
        result.update(read_dltool_run(new[0]))
    elif result["rc"] == 0:
        result["rc"] = -1  # counted as a failure: the run folder is missing
        result["stderr"] += f"\nexpected one new run folder in {runs_dir}, found {len(new)}"
    return result


def dltool_train(config: Path, sets: list[str], runs_dir: Path, label: str) -> dict:
    return dltool_command(["train", str(config), "-q", *set_args(sets)], runs_dir, label)


# ----------------------------------------------------------------------------- the photo folder

_DIGITS: dict = {}  # each pool worker's copy of MNIST's training digits


def _load_digits(mnist: str) -> None:
    with np.load(mnist) as data:
        _DIGITS["x"], _DIGITS["y"] = data["x_train"], data["y_train"]


def tinted_photo(digit: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 digit as a side x side RGB photo: upscaled, a random dark background and light ink, noise."""
    from PIL import Image

    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
    ink = ink[..., None] / 255
    background = rng.uniform(0, 110, 3)
    colour = rng.uniform(140, 255, 3)
    # Noise of 8 grey levels keeps the PNGs from compressing to almost nothing, as real photos would not.
    pixels = background * (1 - ink) + colour * ink + rng.normal(0, 8, (side, side, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _write_photos(job: tuple) -> int:
    """Write photos ``start`` to ``stop`` (MNIST training indices) into their class folders."""
    from PIL import Image

    folder, start, stop, side = job
    for index in range(start, stop):
        rng = np.random.default_rng([22, index])  # per image: the same folder whatever the chunking
        label = int(_DIGITS["y"][index])
        photo = tinted_photo(_DIGITS["x"][index], side, rng)
        Image.fromarray(photo).save(Path(folder) / str(label) / f"{index:05d}.png")
    return stop - start


def photo_marker(count: int, side: int) -> dict:
    return {"count": count, "side": side, "made_from": "MNIST x_train[:count], tinted", "version": 1}


def count_pngs(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.png"))


def ensure_photos(args) -> Path:
    """The photo folder: reused when it holds the expected images, else generated (slow: a pool of 2)."""
    if "photos" in STATE:
        return STATE["photos"]
    count = args.images or sizes(args, PHOTOS)
    side = args.side
    folder = Path(args.folder or Path(tempfile.gettempdir()) / f"dltool-bench-photos-{count}x{side}")
    marker = folder / MARKER
    if folder.exists():
        if marker.exists() and json.loads(marker.read_text()) == photo_marker(count, side):
            if count_pngs(folder) == count:
                rb.log(f"photos: reusing {folder} ({count:,} PNGs of {side}x{side})")
                STATE["photos"] = folder
                return folder
        raise SystemExit(
            f"{folder} exists but does not hold this benchmark's {count:,} PNGs of {side}x{side} (its {MARKER} "
            "differs or files are missing); give another --folder, or delete that folder to have it generated again"
        )
    if not Path(args.mnist).exists():
        raise SystemExit(f"{args.mnist}: MNIST not found; the photo folder is made from it: give --mnist PATH.npz")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier generation that was interrupted
    for label in range(10):
        (partial / str(label)).mkdir(parents=True)
    started = time.perf_counter()
    rb.log(f"photos: generating {count:,} PNGs of {side}x{side} from MNIST into {folder} (pool of 2)")
    chunk = 250
    jobs = [(str(partial), start, min(start + chunk, count), side) for start in range(0, count, chunk)]
    done = 0
    # fork where there is one: the workers need nothing re-imported (the harness holds numpy, never TensorFlow).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(2, initializer=_load_digits, initargs=(str(args.mnist),)) as pool:
        for written in pool.imap_unordered(_write_photos, jobs):
            done += written
            if done % 5000 < chunk:
                rb.log(f"  {done:,}/{count:,} written")
    (partial / MARKER).write_text(json.dumps(photo_marker(count, side)))
    partial.rename(folder)  # complete or absent: a half-written folder is never reused
    STATE["generated"] = f"generated in {time.perf_counter() - started:.0f} s"
    rb.log(f"photos: {STATE['generated']} ({du_mb(folder):,.0f} MB)")
    STATE["photos"] = folder
    return folder


def photo_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.png"))


def describe_photos(folder: Path, args) -> str:
    files = photo_files(folder)
    size = sum(p.stat().st_size for p in files) / 2**20
    return (
        f"The photo folder `{folder}`: {len(files):,} PNGs of {args.side}×{args.side} RGB in 10 class folders "
        f"(`0`–`9`), {size:,.0f} MB ({size * 1024 / max(len(files), 1):.0f} kB per file), "
        f"{STATE.get('generated', 'reused from an earlier run')}. Each is one of the first {len(files):,} "
        "real MNIST training digits (`x_train`), upscaled from 28×28 with a bilinear filter, coloured as a random "
        "light ink (0.55–1.0 of full scale per channel) on a random dark background (0–0.43), plus Gaussian "
        "noise of σ = 8 grey levels per pixel and channel (so the PNGs, saved with Pillow's defaults, do not "
        "compress to almost nothing), seeded per image."
    )


CNN_LAYERS = """\
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 16, kernel_size: 5, strides: 4, activation: relu}}
    - Conv2D: {{filters: 32, kernel_size: 3, strides: 2, activation: relu}}
    - MaxPooling2D
    - Conv2D: {{filters: 64, kernel_size: 3, strides: 2, activation: relu}}
    - GlobalAveragePooling2D
    - Dense: {{units: 10, activation: softmax}}
"""

PHOTOS_CONFIG = (
    """\
name: bench-photos
seed: 42
data: {{source: images, path: {path}, image_size: [{side}, {side}], test: 0.2, validation: null}}
model:
  input_shape: [{side}, {side}, 3]
  layers:
"""
    + CNN_LAYERS
    + """\
train: {{optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: {epochs},
        batch_size: 64, tensorboard: false}}
"""
)


def write_photos_config(path: Path, folder: Path, side: int, epochs: int) -> Path:
    """The config a user writes for the folder: no stream or cache key, so data.stream: auto decides."""
    path.write_text(PHOTOS_CONFIG.format(path=json.dumps(str(folder)), side=side, epochs=epochs))
    return path


# ----------------------------------------------------------------------------- section: photos


def keras_io_run(folder: Path, side: int, epochs: int, seed: int) -> dict:
    result = rb.run_measured(
        [
            PYTHON,
            str(BENCH / "plain_keras_images.py"),
            str(folder),
            "--epochs",
            str(epochs),
            "--image-size",
            str(side),
            "--seed",
            str(seed),
        ],
        env=bench_env(),
        label="keras-io",
    )
    figures = parse_json_line(result["stdout"]) if result["rc"] == 0 else {}
    epochs_seen = figures.get("epoch_seconds") or []
    result.update(figures)
    result.update(
        {
            "epoch1": epochs_seen[0] if epochs_seen else None,
            "epoch2": epochs_seen[1] if len(epochs_seen) > 1 else None,
            "per_s": figures.get("images_per_second"),
            "streamed": True,  # image_dataset_from_directory decodes from disk every epoch
        }
    )
    return result


def repeat_seed(repeat: int) -> int:
    """The seed of both sides in a repeat: the same initial weights (keras.utils.set_random_seed before the same
    layers), so the accuracies compare the pipelines over a few draws rather than one draw against many."""
    return 1 + repeat


def watched_dirs(folder: Path) -> list[Path]:
    """Where a disk cache might be written outside the run folder: the data folder, ~/.cache, the temp dir."""
    return [folder, Path.home() / ".cache", Path(tempfile.gettempdir())]


def listing(dirs: list[Path]) -> set[Path]:
    return {p for d in dirs if d.is_dir() for p in d.iterdir()}


def looks_like_cache(path: Path, folder: Path) -> bool:
    """Whether a new entry is dltool's (anything new in the data folder; elsewhere, a name saying so)."""
    if path.parent == folder:
        return True
    name = path.name.lower()
    return ("dltool" in name or "cache" in name) and not name.startswith("dltool-bench-")


def cached_pair(config: Path, folder: Path, work: Path, repeat: int) -> dict:
    """data.cache: disk, twice in the same runs folder: run 1 writes the cache, run 2 finds it."""
    runs_dir = work / f"runs-cache-{repeat}"
    before = listing(watched_dirs(folder))
    sets = ["data.cache=disk", f"seed={repeat_seed(repeat)}"]
    first = dltool_train(config, sets, runs_dir, "dltool cache: disk, run 1")
    written = sorted(listing(watched_dirs(folder)) - before)
    second = dltool_train(config, sets, runs_dir, "dltool cache: disk, run 2")
    first["second"] = second
    first["cache_written"] = [f"{p} ({du_mb(p):,.0f} MB)" for p in written if looks_like_cache(p, folder)]
    first["cache_in_runs"] = f"{du_mb(runs_dir):,.0f} MB"
    # The next repeat's run 1 must start cold: remove the cache this pair left in the data folder or ~/.cache.
    for path in written:
        if path.parent == folder or (path.parent == Path.home() / ".cache" and "dltool" in path.name.lower()):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    shutil.rmtree(runs_dir, ignore_errors=True)
    return first


def second_runs(results: dict[str, list[dict]]) -> list[dict]:
    """The cache variant's second runs (the ones that found the cache run 1 wrote)."""
    return [r["second"] for r in results.get("dltool cache: disk", []) if "second" in r]


def photo_rows(results: dict[str, list[dict]]) -> list[list[str]]:
    seconds = rb.spread
    rows = []
    named = {
        "keras-io `image_dataset_from_directory`": results.get("keras-io", []),
        "dltool (data.stream: auto)": results.get("dltool", []),
        "dltool, data.cache: disk, run 1": results.get("dltool cache: disk", []),
        "dltool, data.cache: disk, run 2 (cache reused)": second_runs(results),
    }
    for name, runs in named.items():
        if not runs:
            continue
        rows.append(
            [
                name,
                data_cell(runs),
                seconds(rb.values(runs, "wall"), 1, " s"),
                seconds(rb.values(runs, "fit_seconds"), 1, " s"),
                seconds(rb.values(runs, "first_step_seconds"), 1, " s"),
                seconds(rb.values(runs, "epoch1"), 1, " s"),
                seconds(rb.values(runs, "epoch2"), 1, " s"),
                rate_cell(runs, "per_s"),
                seconds(rb.values(runs, "test_accuracy"), 4),
                seconds(rb.values(runs, "rss_mb"), 0, " MB"),
            ]
        )
    return rows


def photo_targets(results: dict[str, list[dict]]) -> list[list[str]]:
    keras_io, auto, cached = (results.get(name, []) for name in ("keras-io", "dltool", "dltool cache: disk"))
    rows = []
    for name, runs in (("data.stream: auto", auto), ("data.cache: disk, run 1", cached)):
        if not runs:
            continue
        rss = median_of(runs, "rss_mb")
        rows.append(
            [
                f"dltool peak RSS ({name})",
                rb.spread(rb.values(runs, "rss_mb"), 0, " MB"),
                f"≤ {PHOTOS_RSS_MB:,} MB (3 GiB)",
                rb.met(None if rss is None else rss <= PHOTOS_RSS_MB),
            ]
        )
    ratio, text = rb.ratio_cell(auto, keras_io, "wall")
    rows.append(["wall, dltool / keras-io", text, f"≤ {PHOTOS_WALL_RATIO:.1f}×", rb.met(ratio and ratio <= 1.0)])
    ours, theirs = median_of(auto, "test_accuracy"), median_of(keras_io, "test_accuracy")
    gap = None if ours is None or theirs is None else 100 * (ours - theirs)
    rows.append(
        [
            "test accuracy, dltool − keras-io",
            "n/a" if gap is None else f"{gap:+.1f} points ({ours:.4f} vs {theirs:.4f})",
            f"within ±{ACCURACY_POINTS:.0f} points",
            rb.met(None if gap is None else abs(gap) <= ACCURACY_POINTS),
        ]
    )
    first = median_of(auto, "first_step_seconds")
    rows.append(
        [
            "dltool: process start → end of the first training batch (run.json `first_step_seconds`)",
            "n/a (not in run.json)" if first is None else rb.spread(rb.values(auto, "first_step_seconds"), 1, " s"),
            f"≤ {FIRST_STEP_SECONDS:.0f} s",
            rb.met(None if first is None else first <= FIRST_STEP_SECONDS),
        ]
    )
    speedups = [r["epoch1"] / r["epoch2"] for r in cached if r["rc"] == 0 and r.get("epoch1") and r.get("epoch2")]
    speedup = rb.med(speedups)
    rows.append(
        [
            "data.cache: disk, run 1: epoch 1 / epoch 2 time",
            rb.spread(speedups, 2, "×"),
            f"≥ {CACHE_SPEEDUP:.0f}×",
            rb.met(None if speedup is None else speedup >= CACHE_SPEEDUP),
        ]
    )
    seconds = second_runs(results)
    _, wall_text = rb.ratio_cell(seconds, cached, "wall")
    _, epoch_text = rb.ratio_cell(seconds, cached, "epoch1")
    rows.append(["data.cache: disk, run 2 / run 1: wall; epoch 1", f"{wall_text}; {epoch_text}", "(reported)", ""])
    return rows


def photo_details(results: dict[str, list[dict]]) -> list[str]:
    lines = []
    auto = [r for r in results.get("dltool", []) if r["rc"] == 0]
    if auto:
        lines.append(f"- run.json `data` of the data.stream: auto run: `{json.dumps(auto[-1].get('data_info'))}`")
    cached = [r for r in results.get("dltool cache: disk", []) if r["rc"] == 0]
    if cached:
        last = cached[-1]
        lines.append(f"- run.json entries naming a cache (run 1): `{json.dumps(last.get('cache_info'), default=str)}`")
        written = ", ".join(last["cache_written"]) or "nothing new in the data folder, ~/.cache or the temp dir"
        lines.append(f"- written outside the runs folder by run 1: {written}; the runs folder: {last['cache_in_runs']}")
    return lines + ([""] if lines else [])


def photos_section(args) -> list[str]:
    """dltool against keras-io's pipeline on the photo folder, and data.cache: disk run twice."""
    folder = ensure_photos(args)
    work = Path(tempfile.mkdtemp(prefix="dltool-bench-input-photos-"))
    epochs = 2
    try:
        config = write_photos_config(work / "photos.yaml", folder, args.side, epochs)
        accepted, refused = preflight_all({"dltool": (config, []), "dltool cache: disk": (config, ["data.cache=disk"])})
        if not accepted:
            raise Refused(" ".join(refused))
        variants = {
            "keras-io": lambda i: keras_io_run(folder, args.side, epochs, repeat_seed(i)),
            "dltool": lambda i: dltool_train(
                config, [f"seed={repeat_seed(i)}"], work / f"runs-auto-{i}", "dltool (stream: auto)"
            ),
            "dltool cache: disk": lambda i: cached_pair(config, folder, work, i),
        }
        variants = {name: run for name, run in variants.items() if name == "keras-io" or name in accepted}
        results = rb.alternate(variants, args.repeats, "photos")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    STATE["fit_rates"] = {name: median_of(results.get(name, []), "per_s") for name in ("dltool", "keras-io")}
    lines = ["## A photo folder: dltool against keras-io's pipeline", "", describe_photos(folder, args), ""]
    if args.quick:
        lines += ["*Quick pass: too few images and epochs for the accuracies to mean anything.*", ""]
    lines += [
        f"The same CNN on both sides (Rescaling(1/255) → Conv2D(16, 5, strides 4) → Conv2D(32, 3, strides 2) → "
        f"MaxPooling2D → Conv2D(64, 3, strides 2) → GlobalAveragePooling2D → Dense(10, softmax)), {epochs} "
        "epochs, batch 64, Adam, 20 % held out for the test. keras-io: `benchmarks/plain_keras_images.py FOLDER` "
        "(`image_dataset_from_directory(validation_split=0.2, subset='both')`, `.prefetch(AUTOTUNE)`, fit, "
        "evaluate on the held-out 20 %). dltool: `python -m dltool train CONFIG -q` with `data: {source: images, "
        "path: FOLDER, image_size: [S, S], test: 0.2, validation: null}` and `train.tensorboard: false`, no "
        "stream or cache key (data.stream: auto decides); checkpoints and plots as by default. The cache variant "
        "adds `--set data.cache=disk` and trains twice in the same runs folder; the cache it leaves is removed "
        f"before the next repeat. Repeat r seeds both sides with r (`--seed r`, `--set seed=r`: "
        "keras.utils.set_random_seed, so both start from the same weights; dltool's seed also draws its split "
        f"and shuffles). Variants alternated, {args.repeats} repeat(s); wall and peak RSS of the whole "
        "process; first step = from the process's start to the end of the first training batch (for dltool, "
        "the end of its first call into TensorFlow: 32 batches, `train.steps_per_execution`'s default); images/s = "
        "training images × epochs / fit seconds; epoch 1 includes tracing the train function.",
        "",
    ]
    lines += rb.table(
        [
            "pipeline",
            "data",
            "wall",
            "fit",
            "first step",
            "epoch 1",
            "epoch 2",
            "images/s in fit",
            "test accuracy",
            "peak RSS",
        ],
        photo_rows(results),
    )
    lines += rb.table(["comparison", "figure", "target", "met?"], photo_targets(results))
    lines += photo_details(results)
    lines += [line for message in refused for line in (message, "")]
    return lines + rb.failures({**results, "dltool cache: disk, run 2": second_runs(results)})


# ----------------------------------------------------------------------------- section: pipeline

DECODE_SCRIPT = """\\
import json, sys, time
from pathlib import Path
from dltool.data.images import ImageSettings, read_image
paths = [Path(line) for line in Path(sys.argv[1]).read_text().splitlines() if line]
settings = ImageSettings(size=(int(sys.argv[2]), int(sys.argv[2])))
for path in paths:
    path.read_bytes()  # into the page cache: decoding is measured, not the disk
if sys.argv[3] == "pillow":
    def decode_all():
        for path in paths:
            read_image(path, settings)
else:  # the streamed pipeline's decoder (dltool.data.image_pipeline) in a tf.data map on one thread
    import tensorflow as tf
    from dltool.data.image_pipeline import file_decoder
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    decode = file_decoder(settings, lambda row: read_image(paths[int(row)], settings))
    rows = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], list(range(len(paths)))))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    decoded = rows.map(decode, num_parallel_calls=1).batch(64).with_options(options)  # batched, as in training
    def decode_all():
        for _ in decoded:
            pass
read_image(paths[0], settings)  # Pillow loads its format plugins on first use
wall, cpu = time.perf_counter(), time.process_time()
decode_all()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"images": len(paths), "seconds": wall, "cpu_seconds": cpu}))
"""


def decode_sets(folder: Path, work: Path, count: int, side: int) -> dict[str, Path]:
    """{name: a file listing the images}: PNGs of the folder, their JPEG copies, and ImageNet-sized JPEGs."""
    from PIL import Image

    files = photo_files(folder)
    chosen = files[:: max(1, len(files) // count)][:count]  # spread over the classes
    (work / "jpeg").mkdir()
    (work / "imagenet").mkdir()
    width, height = IMAGENET_SIZE
    jpegs, large = [], []
    for path in chosen:
        with Image.open(path) as image:
            image = image.convert("RGB")
            jpegs.append(work / "jpeg" / (path.stem + ".jpg"))
            image.save(jpegs[-1], quality=JPEG_QUALITY)
            large.append(work / "imagenet" / (path.stem + ".jpg"))
            image.resize((width, height), Image.Resampling.BICUBIC).save(large[-1], quality=JPEG_QUALITY)
    sets = {
        f"PNG {side}×{side} → {side}×{side} (the folder's files)": chosen,
        f"JPEG {side}×{side} (quality {JPEG_QUALITY}) → {side}×{side}": jpegs,
        f"JPEG {width}×{height} (quality {JPEG_QUALITY}, ImageNet's commonest size) → {side}×{side}": large,
    }
    lists = {}
    for index, (name, paths) in enumerate(sets.items()):
        lists[name] = work / f"list-{index}.txt"
        lists[name].write_text("\n".join(str(p) for p in paths) + "\n")
    return lists


def decode_run(list_file: Path, side: int, label: str, decoder: str = "pillow") -> dict:
    result = rb.run_measured(
        [PYTHON, "-c", DECODE_SCRIPT, str(list_file), str(side), decoder],
        env=bench_env(OMP_NUM_THREADS="1"),
        label=label,
    )
    figures = parse_json_line(result["stdout"]) if result["rc"] == 0 else {}
    if figures:
        result["per_s"] = figures["images"] / figures["seconds"]
        result["per_cpu_s"] = figures["images"] / figures["cpu_seconds"]
        result["images"] = figures["images"]
    return result


def model_alone(args) -> dict:
    """The CNN trained on random images held in memory: the rate it consumes images at with no decoding."""
    count = sizes(args, SYNTHETIC_IMAGES)
    result = rb.run_measured(
        [
            PYTHON,
            str(BENCH / "plain_keras_images.py"),
            "--synthetic",
            str(count),
            "--image-size",
            str(args.side),
            "--epochs",
            "3",
        ],
        env=bench_env(),
        label="CNN alone",
    )
    figures = parse_json_line(result["stdout"]) if result["rc"] == 0 else {}
    if figures:
        result["per_s"] = count / min(figures["epoch_seconds"][1:])  # after the first: no tracing
    return result


def gpu_verdict(decode_per_core: float | None, model: dict) -> list[str]:
    """Would dltool's reader keep an accelerator busy on this CNN? The decode rate against what the model eats."""
    if decode_per_core is None:
        return ["The PNG decode rate is missing (see the failures below): no verdict.", ""]
    cores = os.cpu_count() or 1
    supply = decode_per_core * cores
    rates = STATE.get("fit_rates") or {}
    fit = ", ".join(f"{name} {rate:,.0f} images/s" for name, rate in rates.items() if rate)
    lines = [
        f"Decoding the folder's PNGs on all {cores} cores would supply about {supply:,.0f} images/s "
        f"({decode_per_core:,.0f} per core). The CNN's training rate on the photo folder, decoding included: "
        f"{fit or 'not measured in this run (run the photos section with it)'}."
    ]
    consumed = model.get("per_s")
    if not consumed:
        return lines + ["The CNN-alone rate is missing (see the failures below): no verdict.", ""]
    gpus = rb.detect_gpus()["names"]
    where = "on " + ", ".join(gpus) if gpus else "on this CPU"
    lines.append(
        f"The CNN alone, fed random images from memory {where} (`plain_keras_images.py --synthetic`, the epochs "
        f"after the first), consumes {consumed:,.0f} images/s: decoding on every core supplies "
        f"{supply / consumed:.2f}× that, so {'decoding keeps up' if supply >= consumed else 'decoding is the bottleneck'}"
        " here."
    )
    if not gpus:
        needed = math.ceil(GPU_REFERENCE_RATE / decode_per_core)
        lines.append(
            "No GPU is visible, so a GPU's own rate is not measured: a GPU training this CNN at R images/s needs "
            f"R / {decode_per_core:,.0f} cores decoding PNGs like these. At {GPU_REFERENCE_RATE:,} images/s (a "
            "round, conservative figure for a model of about 15 MFLOPs per image, not measured) that is "
            f"{needed} cores, {'more than' if needed > cores else 'within'} the {cores} of this machine."
        )
    return lines + [""]


def pipeline_section(args) -> list[str]:
    """Images decoded and resized per second on one core by dltool's reader, beside published decode rates."""
    folder = ensure_photos(args)
    count = sizes(args, DECODE_FILES)
    work = Path(tempfile.mkdtemp(prefix="dltool-bench-input-decode-"))
    try:
        rb.log(f"pipeline: writing JPEG copies of {count:,} photos")
        lists = decode_sets(folder, work, count, args.side)
        sizes_kb = {}
        for name, lst in lists.items():
            paths = lst.read_text().split()
            sizes_kb[name] = sum(Path(p).stat().st_size for p in paths) / 1024 / len(paths)
        variants = {}
        for name, lst in lists.items():
            variants[f"{name}, Pillow"] = lambda i, lst=lst, n=name: decode_run(lst, args.side, n)
            if "ImageNet" not in name:  # at the model's size: the streamed pipeline decodes with TensorFlow
                variants[f"{name}, TensorFlow"] = lambda i, lst=lst, n=name: decode_run(lst, args.side, n, "tensorflow")
        results = rb.alternate(variants, args.repeats, "pipeline")
        model = model_alone(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        [
            name,
            f"{sizes_kb[name.rsplit(', ', 1)[0]]:.0f} kB",
            rate_cell(runs, "per_s"),
            rate_cell(runs, "per_cpu_s"),
        ]
        for name, runs in results.items()
    ]
    lines = [
        "## The pipeline alone: images decoded and resized per core",
        "",
        "Two decoders, as a streamed folder uses them: TensorFlow's (`dltool.data.image_pipeline.file_decoder` in "
        "a tf.data map on one thread) for PNG and JPEG files already at the model's size, and Pillow's "
        f"(`dltool.data.images.read_image(path, ImageSettings(size=({args.side}, {args.side})))`: decode, "
        "convert to RGB, resize bilinearly when the size differs) for every other file, and in predict. Each over "
        f"the files one after another on one thread, in a fresh process (`OMP_NUM_THREADS=1`), files read once beforehand so they are in the page "
        f"cache; {count:,} files per set, {args.repeats} repeat(s), sets alternated. images/s per core = images "
        "/ the process's CPU seconds while decoding (equal to the wall rate when nothing else runs). The JPEGs "
        f"are copies of the same photos saved by Pillow at quality {JPEG_QUALITY}, at the folder's size and "
        f"enlarged (bicubic) to {IMAGENET_SIZE[0]}×{IMAGENET_SIZE[1]}.",
        "",
    ]
    lines += rb.table(["files", "average file", "images/s (wall, one thread)", "images/s per core (CPU time)"], rows)
    lines += [f"Published for comparison: {PUBLISHED_DECODE}.", ""]
    png = next(runs for name, runs in results.items() if name.startswith("PNG") and name.endswith("TensorFlow"))
    lines += gpu_verdict(median_of(png, "per_cpu_s"), model)
    return lines + rb.failures({**results, "CNN alone": [model]})


# ----------------------------------------------------------------------------- section: parquet


def label_rows(x: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3 balanced classes from a noisy linear score: x·w + noise cut at its 1/3 and 2/3 quantiles (normal)."""
    scale = float(np.linalg.norm(weights))
    score = x @ weights + rng.normal(0, 0.2 * scale, len(x))
    cut = 0.4307 * scale * math.sqrt(1 + 0.2**2)  # the normal's 2/3 quantile times the score's std
    return np.digitize(score, [-cut, cut]).astype(np.int64)


def write_table_data(work: Path, rows: int) -> tuple[Path, Path, int]:
    """``rows`` rows of 20 float32 features x0..x19 and a 3-class label, as 8 Parquet files and one CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    names = [f"x{i}" for i in range(FEATURES)] + ["label"]
    schema = pa.schema([(n, pa.float32()) for n in names[:-1]] + [("label", pa.int64())])
    weights = np.random.default_rng(0).normal(size=FEATURES)
    per_file = math.ceil(rows / PARQUET_FILES)
    row_group = min(ROW_GROUP_ROWS, math.ceil(per_file / 2))
    folder = work / "parquet"
    folder.mkdir()
    csv_path = work / "rows.csv"
    with open(csv_path, "wb") as sink:
        # The header by hand: pyarrow quotes column names ("x0"), which few CSV files do.
        sink.write((",".join(names) + "\n").encode())
        csv_writer = pacsv.CSVWriter(sink, schema, write_options=pacsv.WriteOptions(include_header=False))
        for index in range(PARQUET_FILES):
            rng = np.random.default_rng([22, index])
            n = min(per_file, rows - index * per_file)
            if n <= 0:  # fewer rows than files
                break
            x = rng.standard_normal((n, FEATURES), dtype=np.float32)
            y = label_rows(x, weights, rng)
            columns = [pa.array(np.ascontiguousarray(x[:, j])) for j in range(FEATURES)]
            table = pa.Table.from_arrays([*columns, pa.array(y)], schema=schema)
            pq.write_table(table, folder / f"part-{index:02d}.parquet", row_group_size=row_group)
            csv_writer.write_table(table)
            rb.log(f"  parquet: file {index + 1}/{PARQUET_FILES} ({n:,} rows)")
        csv_writer.close()
    return folder, csv_path, row_group


TABLE_CONFIG = """\
name: bench-{name}
seed: 42
data: {{source: {source}, path: {path}, target: label, test: 0.1, validation: null{stream}}}
model:
  input_shape: [{features}]
  layers: [{{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 3, activation: softmax}}}}]
train: {{optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 1, batch_size: 1024,
        tensorboard: false}}
"""


def table_configs(work: Path, parquet: Path, csv_path: Path) -> dict[str, Path]:
    """The three variants' configs: Parquet streamed, Parquet as a user leaves it (auto), the CSV streamed."""
    variants = {
        "parquet, stream: true": ("parquet", json.dumps(str(parquet / "part-*.parquet")), ", stream: true"),
        "parquet, stream: auto": ("parquet", json.dumps(str(parquet / "part-*.parquet")), ""),
        "csv, stream: true": ("csv", json.dumps(str(csv_path)), ", stream: true"),
    }
    configs = {}
    for index, (name, (source, path, stream)) in enumerate(variants.items()):
        configs[name] = work / f"table-{index}.yaml"
        configs[name].write_text(
            TABLE_CONFIG.format(name=source, source=source, path=path, stream=stream, features=FEATURES)
        )
    return configs


def parquet_section(args) -> list[str]:
    """One epoch of a small MLP on Parquet files against the streamed CSV holding the same rows."""
    try:
        import pyarrow  # noqa: F401  (only to say clearly that it is missing)
    except ImportError:
        raise Refused("pyarrow is not installed: `pip install pyarrow` (or dltool's parquet extra)") from None
    rows = args.rows or sizes(args, ROWS)
    work = Path(tempfile.mkdtemp(prefix="dltool-bench-input-parquet-"))
    try:
        # Configs first: a refused key is said in a second, before minutes of writing data.
        configs = table_configs(work, work / "parquet", work / "rows.csv")
        accepted, refused = preflight_all({name: (config, []) for name, config in configs.items()})
        if not any(name.startswith("parquet") for name in accepted):
            raise Refused(" ".join(refused))
        rb.log(f"parquet: writing {rows:,} rows x {FEATURES} features as {PARQUET_FILES} Parquet files and a CSV")
        parquet, csv_path, row_group = write_table_data(work, rows)
        on_disk = {"parquet": du_mb(parquet), "csv": du_mb(csv_path)}
        variants = {
            name: (lambda i, c=config, n=name, k=index: dltool_train(c, [], work / f"runs-{k}-{i}", n))
            for index, (name, config) in enumerate(configs.items())
            if name in accepted
        }
        results = rb.alternate(variants, args.repeats, "parquet")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows_out = [
        [
            name,
            f"{on_disk[name.split(',')[0]]:,.0f} MB",
            data_cell(runs),
            rb.spread(rb.values(runs, "wall"), 1, " s"),
            rb.spread(rb.values(runs, "fit_seconds"), 1, " s"),
            rate_cell(runs, "per_s"),
            rb.spread(rb.values(runs, "test_accuracy"), 4),
            rb.spread(rb.values(runs, "rss_mb"), 0, " MB"),
        ]
        for name, runs in results.items()
    ]
    lines = [
        "## Parquet against the streamed CSV",
        "",
        f"{rows:,} rows of {FEATURES} float32 features (standard normal) and a 3-class label (a noisy linear score "
        "cut at its terciles, so a linear model can learn it), written with pyarrow as "
        f"{PARQUET_FILES} Parquet files (`part-*.parquet`, row groups of {row_group:,} rows, pyarrow's default "
        "compression) and the same rows as one CSV. One epoch of Dense(32, relu) → Dense(3, softmax), batch 1024, "
        "test 0.1, no validation, `train.tensorboard: false`; `data.path` is the glob for Parquet. "
        f"{args.repeats} repeat(s), variants alternated; rows/s = training rows / fit seconds; wall and peak RSS "
        "of the whole `dltool train` process (TensorFlow's import, the scan, training, the streamed test).",
        "",
    ]
    lines += rb.table(
        ["variant", "on disk", "data", "wall", "fit", "rows/s in fit", "test accuracy", "peak RSS"], rows_out
    )
    streamed, csv_runs = results.get("parquet, stream: true", []), results.get("csv, stream: true", [])
    rss = median_of(streamed, "rss_mb")
    _, rate = rb.ratio_cell(streamed, csv_runs, "per_s")
    _, wall = rb.ratio_cell(streamed, csv_runs, "wall")
    lines += rb.table(
        ["comparison", "figure", "target", "met?"],
        [
            [
                "peak RSS, Parquet (stream: true)",
                rb.spread(rb.values(streamed, "rss_mb"), 0, " MB"),
                f"≤ {PARQUET_RSS_MB:,.0f} MB (1.5 GiB)",
                rb.met(None if rss is None else rss <= PARQUET_RSS_MB),
            ],
            ["rows/s in fit, Parquet / streamed CSV", rate, "(reported)", ""],
            ["wall, Parquet / streamed CSV", wall, "(reported)", ""],
        ],
    )
    auto = [r for r in results.get("parquet, stream: auto", []) if r["rc"] == 0]
    if auto:
        lines += [f"run.json `data` of the stream: auto run: `{json.dumps(auto[-1].get('data_info'))}`", ""]
    lines += [line for message in refused for line in (message, "")]
    return lines + rb.failures(results)


# ----------------------------------------------------------------------------- section: processes


def subset_folder(folder: Path, work: Path, count: int) -> Path:
    """``count`` photos (an equal share per class) as hard links in a folder of their own."""
    subset = work / "subset"
    per_class = max(1, count // 10)
    for label in sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (subset / label).mkdir(parents=True)
        for path in sorted((folder / label).glob("*.png"))[:per_class]:
            try:
                os.link(path, subset / label / path.name)
            except OSError:  # another filesystem
                os.symlink(path, subset / label / path.name)
    return subset


def final_digests(run_dir: Path) -> dict[str, str | None]:
    """The final weights digest each worker logged: worker 0 in train.log, worker i in workers/i.log."""
    logs = {"worker 0": run_dir / "train.log", "worker 1": run_dir / "workers" / "1.log"}
    found = {}
    for worker, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else ""
        match = re.findall(r"final weights ([0-9a-f]+)", text)
        found[worker] = match[-1] if match else None
    return found


def launch_run(config: Path, runs_dir: Path) -> dict:
    command = ["launch", "-n", "2", str(config), "--backend", "jax", "-q", "--set", "data.stream=true"]
    result = dltool_command(command, runs_dir, "dltool launch -n 2")
    if result["rc"] == 0:
        result.update(final_digests(result["run_dir"]))
    shutil.rmtree(runs_dir, ignore_errors=True)
    return result


def processes_section(args) -> list[str]:
    """`dltool launch -n 2` (JAX, loopback) on a streamed subset of the photo folder: both workers' weights agree."""
    if rb.version_of("jax") == "not installed":
        raise Refused("JAX is not installed: `pip install -e '.[jax]'` (dltool launch trains on JAX)")
    folder = ensure_photos(args)
    count = sizes(args, PROCESS_IMAGES)
    work = Path(tempfile.mkdtemp(prefix="dltool-bench-input-processes-"))
    try:
        subset = subset_folder(folder, work, count)
        config = write_photos_config(work / "processes.yaml", subset, args.side, epochs=1)
        preflight(config, ["data.stream=true", "backend=jax"], "the photo subset with data.stream: true")
        variants = {"launch": lambda i: launch_run(config, work / f"runs-{i}")}
        results = rb.alternate(variants, args.repeats, "processes")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, agreed = [], []
    for index, run in enumerate(results["launch"], 1):
        same = run["rc"] == 0 and run.get("worker 0") is not None and run.get("worker 0") == run.get("worker 1")
        agreed.append(same and run.get("status") == "COMPLETED")
        rows.append(
            [
                str(index),
                f"exit {run['rc']}, {run.get('status') or 'no run'}",
                f"{run['wall']:.1f} s",
                "n/a" if run.get("fit_seconds") is None else f"{run['fit_seconds']:.1f} s",
                "n/a" if run.get("test_accuracy") is None else f"{run['test_accuracy']:.4f}",
                "n/a" if run.get("rss_mb") is None else f"{run['rss_mb']:,.0f} MB",
                f"`{run.get('worker 0')}`",
                f"`{run.get('worker 1')}`",
                rb.met(agreed[-1]),
            ]
        )
    lines = [
        "## Two processes on a streamed photo folder",
        "",
        f"`python -m dltool launch -n 2 CONFIG --backend jax -q --set data.stream=true` (2 workers over loopback, "
        f"gloo on CPU) on a subset of the photo folder: {count:,} of its images ({count // 10:,} per class, hard "
        f"links in a folder of their own), streamed (`data.stream: true` set explicitly: at this size auto could "
        "load them), the photos section's CNN, 1 epoch, batch 64 (the global batch). Each worker logs a digest "
        "of its final weights (`final weights …` in train.log and workers/1.log); the check is that the run "
        f"completes and both digests are equal. {args.repeats} run(s); peak RSS of the largest process.",
        "",
    ]
    lines += rb.table(
        [
            "run",
            "result",
            "wall",
            "fit",
            "test accuracy",
            "peak RSS",
            "worker 0 digest",
            "worker 1 digest",
            "completes, same digest?",
        ],
        rows,
    )
    return lines + rb.failures(results)


# ----------------------------------------------------------------------------- report


def machine_lines(args) -> list[str]:
    rb.log("machine: CPU, memory, versions, GPU detection (TensorFlow in a subprocess)")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.lower().startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {rb.version_of(*packages)}"
        for name, packages in (
            ("TensorFlow", ("tensorflow", "tensorflow-cpu")),
            ("Keras", ("keras",)),
            ("JAX", ("jax",)),
            ("NumPy", ("numpy",)),
            ("Pillow", ("pillow", "Pillow")),
            ("pyarrow", ("pyarrow",)),
        )
    )
    return [
        f"Machine: {cpu}, {os.cpu_count()} cores, {memory:.1f} GiB RAM, {platform.platform()}; "
        f"{rb.gpu_line()}. Python {platform.python_version()}, {versions}, dltool {dltool_version()}.",
        "",
    ]


SECTION_FUNCS = {
    "photos": photos_section,
    "pipeline": pipeline_section,
    "parquet": parquet_section,
    "processes": processes_section,
}


def run_section(name: str, args) -> tuple[list[str], bool]:
    """One section's lines, and whether it ran; a refusal or a crash is written down instead of lost."""
    before = rb.load_snapshot()
    started = time.perf_counter()
    rb.log(f"=== section {name} (load average {before})")
    ok = True
    try:
        lines = SECTION_FUNCS[name](args)
    except Refused as exc:
        ok = False
        rb.log(f"section {name} not measured: {exc}")
        message = str(exc).replace("\n", " ")
        lines = [f"## {name}", "", f"**Not measured**: {message}", ""]
    except Exception as exc:  # one broken section must not lose the others
        ok = False
        rb.log(f"section {name} crashed: {exc!r}")
        lines = [f"## {name}", "", f"**Harness error**: `{exc!r}`", ""]
    footer = (
        f"<sub>section {name}: {time.perf_counter() - started:.0f} s, load average (1/5/15 min) before "
        f"{before}, after {rb.load_snapshot()}</sub>"
    )
    return lines + [footer, ""], ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated sections among {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke pass: 1 repeat, 600 PNGs of 64x64, 200k rows")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of every comparison (default 2)")
    parser.add_argument("--folder", help="the photo folder (default: under the temp dir; generated once, reused)")
    parser.add_argument("--images", type=int, help="photos in the folder (default 30,000; --quick 600)")
    parser.add_argument("--side", type=int, help="photo width and height (default 224; --quick 64)")
    parser.add_argument("--rows", type=int, help="Parquet/CSV rows (default 10,000,000; --quick 200,000)")
    parser.add_argument("--mnist", default=str(MNIST), help=f"MNIST .npz the photos are made from (default {MNIST})")
    parser.add_argument("--out", default=str(BENCH / "RESULTS-input.md"), help="the report (default %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    args.side = args.side or sizes(args, PHOTO_SIDE)
    chosen = SECTIONS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose among {', '.join(SECTIONS)}")
    if not rb.GNU_TIME:
        rb.log("warning: /usr/bin/time not found; peak RSS will be n/a")
    out = Path(args.out).resolve()
    command = shlex.join(["python", "benchmarks/measure_input.py", *(argv if argv is not None else sys.argv[1:])])
    header = [
        "# Data larger than memory (issue 22)",
        "",
        f"Generated {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by `{command}` "
        f"({'quick pass, ' if args.quick else ''}{args.repeats} repeat(s); sections: {', '.join(chosen)}). "
        "Each measured command is a subprocess: wall = `time.perf_counter()` around it, peak RSS = "
        "`/usr/bin/time -f %M` (the largest process of the command). Variants alternate, their order rotating "
        "every repeat; figures are median [min–max] over the repeats; ratios are ratios of medians with the "
        "per-repeat paired ratios in brackets (see benchmarks/README.md).",
        "",
        *machine_lines(args),
    ]
    kept = rb.previous_sections(out, chosen, SECTIONS) if args.only else {}
    if kept:
        header += [f"Sections {', '.join(kept)} are kept from the previous report (not re-run this time).", ""]
    started, body, all_ok = time.perf_counter(), [], True
    for name in [s for s in SECTIONS if s in chosen or s in kept]:
        if name in kept:
            body += kept[name]
            continue
        lines, ok = run_section(name, args)
        body += lines
        all_ok = all_ok and ok
        write_atomic(out, "\n".join(header + body + ["*(in progress)*"]) + "\n")
    footer = [f"Total time: {(time.perf_counter() - started) / 60:.1f} min."]
    write_atomic(out, "\n".join(header + body + footer) + "\n")
    rb.log(f"wrote {out} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
