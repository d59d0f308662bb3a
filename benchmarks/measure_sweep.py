"""Per-trial overhead and worker memory of `dltool sweep` (issue 12), printed as Markdown rows for RESULTS.md.

Runs one in-process sweep of N trials of configs/digits_mlp.yaml (random widths, 2 epochs each) in a
temporary folder. Overhead of a trial = its wall time in the study (Optuna's start to complete) minus the
run's own fit time (metrics.json fit_seconds): config, data, model build, run files, test evaluation, saving,
plots and the study's bookkeeping. RSS is the worker's resident memory after each trial.

    .venv/bin/python benchmarks/measure_sweep.py --trials 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--trials-per-worker", type=int, default=None, help="passed to dltool sweep (default: dltool's, 20)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dltool-sweep-bench-") as tmp:
        folder = Path(tmp)
        (folder / "sweep.yaml").write_text(
            f"experiment: {REPO / 'configs' / 'digits_mlp.yaml'}\nmethod: random\ntrials: {args.trials}\nseed: 0\n"
            "objective: {metric: val_accuracy, goal: max}\nparameters:\n"
            "  model.layers[0].Dense.units: {int: [16, 128]}\n  train.epochs: {choice: [2]}\n"
        )
        start = time.perf_counter()
        recycle = ["--trials-per-worker", str(args.trials_per_worker)] if args.trials_per_worker is not None else []
        subprocess.run(
            [sys.executable, "-m", "dltool", "sweep", "sweep.yaml", "--runs-dir", "runs", "-q", *recycle],
            cwd=folder,
            check=True,
        )
        wall = time.perf_counter() - start
        import optuna

        sys.path.insert(0, str(REPO))
        from dltool.sweep.run import open_sweep

        study = open_sweep("latest", runs_root=folder / "runs").study
        overheads, rss, pids = [], [], []
        for trial in sorted(study.trials, key=lambda t: t.number):
            if trial.state != optuna.trial.TrialState.COMPLETE:
                continue
            metrics = json.loads((folder / "runs" / trial.user_attrs["run_id"] / "metrics.json").read_text())
            overheads.append((trial.datetime_complete - trial.datetime_start).total_seconds() - metrics["fit_seconds"])
            rss.append(trial.user_attrs.get("rss_mb"))
            pids.append(trial.user_attrs["worker"]["pid"])
    later = overheads[1:]  # trial 0 pays for the first tf.function traces of the process
    per_worker = 20 if args.trials_per_worker is None else args.trials_per_worker
    how = f"workers of {per_worker} trials each" if per_worker else "one process for every trial"
    print(f"| sweep of {len(overheads)} digits_mlp trials (2 epochs), {how} | wall {wall:.1f} s |")
    print(
        f"| per-trial overhead beyond fit, median [min–max] of trials 1..{len(overheads) - 1} | "
        f"{statistics.median(later):.2f} s [{min(later):.2f}–{max(later):.2f}] | target ≤ 0.5 s |"
    )
    if len(rss) >= 50 and rss[4] and rss[49]:
        print(
            f"| worker RSS after trial 5 → trial 50 | {rss[4]:.0f} MB → {rss[49]:.0f} MB "
            f"(growth {rss[49] - rss[4]:+.0f} MB) | target ≤ 100 MB |"
        )
    by_worker: dict[int, list[float]] = {}
    for pid, mb in zip(pids, rss):
        by_worker.setdefault(pid, []).append(mb)
    growth = [mbs[-1] - mbs[4] for mbs in by_worker.values() if len(mbs) > 5 and mbs[4] and mbs[-1]]
    if growth:
        print(
            f"| {len(by_worker)} worker processes; RSS growth within one, its trial 5 → its last | max {max(growth):+.0f} MB |"
        )
    if not (len(rss) >= 50 and rss[4] and rss[49]) and rss and rss[0]:
        print(f"| worker RSS after trial 1 → trial {len(rss)} | {rss[0]:.0f} MB → {rss[-1]:.0f} MB |")


if __name__ == "__main__":
    main()
