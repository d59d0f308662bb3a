#!/usr/bin/env python3
"""Issue 26, runs in MLflow: what tracking costs a run, a sweep as parent and child runs, and a server that goes
away mid-run. Writes RESULTS-tracking.md.

    python benchmarks/measure_tracking.py              # ~7 min on 2 cores
    python benchmarks/measure_tracking.py --rounds 1 --output /tmp/t.md

Sections:
- overhead: `dltool train configs/digits_mlp.yaml` (30 epochs) untracked, tracked to a sqlite store
  (`--mlflow sqlite:///...`), and tracked to a local `mlflow server` over HTTP (sqlite behind it), alternating
  (the first of each round rotates). Each store is created and warmed by one untimed run first, so that creating
  its tables is not counted. The figure is Keras's fit time from the run's metrics.json (per epoch), and the wall
  time of the command.
- sweep: `dltool sweep configs/sweeps/digits_lr.yaml` (12 trials) tracked to the server: how many MLflow runs,
  how many of them children of the sweep's parent run, the best trial tagged on the parent.
- server away: a run tracked to the server, the server killed (SIGKILL) once the run's second epoch is in
  history.csv; the run's exit and its warning line; then the server restarted on the same store and
  `dltool runs sync`: each metric's steps and values in MLflow against history.csv.

Only the standard library, numpy and mlflow's client in this process; dltool runs as `python -m dltool` in
subprocesses with temporary --runs-dir folders.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import run_benchmarks as rb

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PYTHON = sys.executable
DLTOOL = [PYTHON, "-m", "dltool"]
CONFIG = REPO / "configs" / "digits_mlp.yaml"
SWEEP = REPO / "configs" / "sweeps" / "digits_lr.yaml"
DEFAULT_OUTPUT = BENCH / "RESULTS-tracking.md"
OVERHEAD_TARGET = 0.05  # logging costs at most 5 % of the fit time (issue 26)
VARIANTS = ["untracked", "sqlite", "server"]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def bench_env() -> dict:
    env = rb.base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("KERAS_BACKEND", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1, its store (sqlite) and artifacts in ``folder``; restartable on its port."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait for /health; the seconds it took."""
        began = time.perf_counter()
        command = [PYTHON, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder}/server.db"]
        command += ["--artifacts-destination", str(self.folder / "artifacts")]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=bench_env()
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - began
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health within 180 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def run_folder(runs_dir: Path) -> Path | None:
    folders = [p for p in runs_dir.iterdir() if (p / "run.json").exists()] if runs_dir.exists() else []
    return max(folders, key=lambda p: p.stat().st_mtime) if folders else None


def train(runs_dir: Path, uri: str | None, label: str, sets: list[str] | None = None) -> dict:
    runs_dir.mkdir(parents=True, exist_ok=True)
    command = [*DLTOOL, "train", str(CONFIG), "-q", "--runs-dir", str(runs_dir)]
    command += ["--mlflow", uri] if uri else []
    command += [arg for value in sets or [] for arg in ("--set", value)]
    result = rb.run_measured(command, env=bench_env(), label=label)
    folder = run_folder(runs_dir)
    if result["rc"] == 0 and folder is not None:
        metrics = json.loads((folder / "metrics.json").read_text())
        info = json.loads((folder / "run.json").read_text())
        result |= {"fit": metrics["fit_seconds"], "epochs": metrics["epochs"], "folder": folder, "info": info}
    return result


# ----------------------------------------------------------------------------- sections


def overhead(args, work: Path, server: Server) -> tuple[list[dict], list[str]]:
    sqlite_uri = f"sqlite:///{work / 'store' / 'mlflow.db'}"
    (work / "store").mkdir()
    uris = {"untracked": None, "sqlite": sqlite_uri, "server": server.uri}
    for variant in ("sqlite", "server"):  # create each store's tables before anything is timed
        rb.log(f"overhead: warm-up run to {variant}")
        train(work / "warm" / variant, uris[variant], f"warm {variant}", ["train.epochs=2"])
    results = []
    for round_ in range(args.rounds):
        order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
        for variant in order:
            rb.log(f"overhead: round {round_ + 1}, {variant}")
            result = train(work / "overhead" / f"{variant}-{round_}", uris[variant], variant)
            synced = ((result.get("info") or {}).get("tracking") or {}).get("mlflow", {}).get("synced")
            results.append(result | {"variant": variant, "round": round_, "synced": synced})
    lines = [
        "## What tracking costs a run",
        "",
        f"`dltool train configs/digits_mlp.yaml` ({results[0].get('epochs', 30)} epochs of the digits MLP) untracked, "
        "tracked to a sqlite store (`--mlflow sqlite:///...`) and tracked to a local `mlflow server` over HTTP "
        f"(sqlite behind it, 1 worker, on the same 2 cores), {plural(args.rounds, 'round')}, the order rotating each "
        "round. Each store had one untimed warm-up run first (creating its tables). Fit: Keras's fit as metrics.json "
        "records it; wall: the whole command, including the end-of-run uploads (artifacts, the model).",
        "",
    ]
    base = [r["fit"] for r in results if r["variant"] == "untracked" and r["rc"] == 0]
    base_wall = [r["wall"] for r in results if r["variant"] == "untracked" and r["rc"] == 0]
    rows = []
    for variant in VARIANTS:
        mine = [r for r in results if r["variant"] == variant and r["rc"] == 0]
        fits, walls = [r["fit"] for r in mine], [r["wall"] for r in mine]
        cost = statistics.median(fits) / statistics.median(base) - 1 if fits and base else None
        rows.append(
            [
                variant,
                rb.spread(fits, 2),
                rb.spread([f / r["epochs"] * 1000 for f, r in zip(fits, mine)], 1),
                "" if variant == "untracked" or cost is None else f"{cost:+.1%}",
                rb.spread(walls, 1),
                ""
                if variant == "untracked" or not walls
                else f"{statistics.median(walls) - statistics.median(base_wall):+.1f}",
                "" if variant == "untracked" else f"{sum(bool(r['synced']) for r in mine)} of {len(mine)}",
            ]
        )
    lines += rb.table(
        ["store", "fit s", "ms per epoch", "fit vs untracked", "wall s", "wall − untracked (s)", "synced"], rows
    )
    for variant in ("sqlite", "server"):
        fits = [r["fit"] for r in results if r["variant"] == variant and r["rc"] == 0]
        if fits and base:
            cost = statistics.median(fits) / statistics.median(base) - 1
            lines.append(
                f"- {variant}: fit {cost:+.1%} against untracked (target ≤ {OVERHEAD_TARGET:.0%}) → "
                f"{rb.met(cost <= OVERHEAD_TARGET)}"
            )
    return results, lines + [""]


def sweep(args, work: Path, server: Server) -> tuple[list[dict], list[str]]:
    import mlflow

    runs_dir = work / "sweep" / "runs"
    runs_dir.mkdir(parents=True)
    rb.log("sweep: 12 trials tracked to the server")
    command = [*DLTOOL, "sweep", str(SWEEP), "--runs-dir", str(runs_dir), "--mlflow", server.uri]
    result = rb.run_measured(command, env=bench_env(), label="sweep")
    lines = ["## A sweep as one parent and its trials as children", ""]
    if result["rc"] != 0:
        return [result], lines + [f"- the sweep failed (exit {result['rc']}): `{rb.tail(result['stderr'], 400)}`", ""]
    client = mlflow.tracking.MlflowClient(server.uri)
    experiments = client.search_experiments()
    runs = [r for e in experiments for r in client.search_runs([e.experiment_id], max_results=1000)]
    parents = [r for r in runs if r.data.tags.get("dltool.kind") == "sweep"]
    children = [r for r in runs if parents and r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id]
    parent = parents[-1] if parents else None
    trials = len([p for p in runs_dir.iterdir() if (p / "run.json").exists()])
    best = {k: v for k, v in (parent.data.tags.items() if parent else []) if k.startswith("dltool.best")}
    lines += [
        f"`dltool sweep configs/sweeps/digits_lr.yaml --mlflow {server.uri}` (12 trials, TPE, median pruner): "
        f"{trials} run folders; in MLflow {len(parents)} parent run(s) tagged `dltool.kind=sweep` and "
        f"{len(children)} children with `mlflow.parentRunId` = the parent. "
        f"The sweep took {result['wall']:.0f} s.",
        "",
        "- Parent's status: " + (parent.info.status if parent else "none"),
        "- Best trial on the parent: " + (", ".join(f"`{k}` = {v}" for k, v in sorted(best.items())) or "not tagged"),
        "- Children's statuses: "
        + ", ".join(f"{s} {n}" for s, n in sorted(_count(c.info.status for c in children).items())),
        "",
    ]
    return [result | {"parents": len(parents), "children": len(children)}], lines


def _count(values) -> dict:
    counted: dict = {}
    for value in values:
        counted[value] = counted.get(value, 0) + 1
    return counted


def server_away(args, work: Path, server: Server) -> tuple[list[dict], list[str]]:
    import mlflow

    runs_dir = work / "away" / "runs"
    runs_dir.mkdir(parents=True)
    rb.log("server away: a tracked run, the server killed after epoch 2")
    command = [*DLTOOL, "train", str(CONFIG), "--runs-dir", str(runs_dir), "--mlflow", server.uri]
    process = subprocess.Popen(command, cwd=REPO, env=bench_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    killed_at = None
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        folder = run_folder(runs_dir)
        history = folder / "history.csv" if folder else None
        if killed_at is None and history is not None and history.exists():
            with open(history, newline="") as handle:
                epochs = sum(1 for _ in csv.DictReader(handle))
            if epochs >= 2:
                server.stop(signal.SIGKILL)
                killed_at = epochs
        time.sleep(0.1)
    output = process.communicate()[0]
    folder = run_folder(runs_dir)
    info = json.loads((folder / "run.json").read_text())
    warnings = [line for line in output.splitlines() if "MLflow" in line]
    record = (info.get("tracking") or {}).get("mlflow", {})
    rb.log("server away: restart and runs sync")
    restart = server.start()
    sync = rb.run_measured([*DLTOOL, "runs", "sync", folder.name, "--runs-dir", str(runs_dir)], env=bench_env(),
                           label="sync")  # fmt: skip
    again = rb.run_measured([*DLTOOL, "runs", "sync", folder.name, "--runs-dir", str(runs_dir)], env=bench_env(),
                            label="sync again")  # fmt: skip
    info = json.loads((folder / "run.json").read_text())
    run_id = info["tracking"]["mlflow"]["run_id"]
    client = mlflow.tracking.MlflowClient(server.uri)
    with open(folder / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    compared, differing = 0, []
    for key in history[0]:
        if key in ("epoch", "phase"):
            continue
        logged = {m.step: m.value for m in client.get_metric_history(run_id, key)}
        expected = {int(row["epoch"]): float(row[key]) for row in history if row[key] not in ("", None)}
        compared += len(expected)
        if set(logged) != set(expected) or any(abs(logged[s] - v) > 1e-6 * max(1, abs(v)) for s, v in expected.items()):
            differing.append(key)
    lines = [
        "## The server killed mid-run, then `runs sync`",
        "",
        f"`dltool train configs/digits_mlp.yaml --mlflow {server.uri}`; the server killed (SIGKILL) once "
        f"history.csv held {killed_at} epochs.",
        "",
        f"- The run: exit {process.returncode}, status {info['status']}, {info.get('epochs_done')} epochs; "
        f"run.json `synced` was {record.get('synced')} before the sync.",
        "- What it printed about MLflow: " + ("; ".join(f"`{w.strip()}`" for w in warnings) or "nothing"),
        f"- The server restarted on the same store in {restart:.0f} s; `dltool runs sync` exit {sync['rc']}: "
        f"`{rb.tail(sync['stdout'], 300)}`",
        f"- A second `runs sync`: exit {again['rc']}: `{rb.tail(again['stdout'], 300)}`",
        f"- MLflow against history.csv: {compared} (metric, epoch) values compared over "
        f"{len(history)} epochs; " + ("all equal" if not differing else "differing: " + ", ".join(differing)),
        "",
    ]
    return [{"rc": process.returncode, "cmd": command, "stderr": output, "stdout": ""}, sync, again], lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="overhead rounds (default %(default)s)")
    parser.add_argument("--sections", default="overhead,sweep,away", help="among overhead, sweep, away")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report (default %(default)s)")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    loads = [os.getloadavg()[0]]
    body: list[str] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="dltool-tracking-") as folder:
        work = Path(folder)
        server = Server(work / "server")
        (work / "server").mkdir()
        started = server.start()
        rb.log(f"mlflow server up in {started:.0f} s at {server.uri}")
        try:
            for name, measure in (("overhead", overhead), ("sweep", sweep), ("away", server_away)):
                if name in sections:
                    results, lines = measure(args, work, server)
                    body += lines
                    failed |= any(r["rc"] != 0 for r in results)
        finally:
            server.stop()
    loads.append(os.getloadavg()[0])
    command = shlex.join(["python", "benchmarks/measure_tracking.py", *(argv if argv is not None else sys.argv[1:])])
    head = [
        "# Runs in MLflow: overhead, a sweep as parent and children, a server away (issue 26)",
        "",
        "Regenerate:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; dltool {rb.version_of('keras-dltool', 'dltool')}; "
        f"MLflow {rb.version_of('mlflow')}, TensorFlow {rb.version_of('tensorflow', 'tensorflow-cpu')}, Keras "
        f"{rb.version_of('keras')}, Python {sys.version.split()[0]}; {os.cpu_count()} cores, CPU only; the server on "
        "the same machine",
        f"- Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}; the `mlflow server` took "
        f"{started:.0f} s to answer /health",
        "",
    ]
    write_atomic(args.output, "\n".join(head + body).rstrip() + "\n")
    rb.log(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
