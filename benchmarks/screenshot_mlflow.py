#!/usr/bin/env python3
"""Issue 26: a screenshot of MLflow's UI comparing two dltool runs, taken from a real `mlflow server`.

    python benchmarks/screenshot_mlflow.py                      # writes docs/images/mlflow-compare-runs.png
    python benchmarks/screenshot_mlflow.py --output /tmp/x.png

Starts `mlflow server` on 127.0.0.1 (sqlite store in a temporary folder), trains configs/digits_mlp.yaml twice
with `--mlflow http://127.0.0.1:PORT` (learning rate 0.001, as shipped, and 0.01), then opens MLflow's
compare-runs page for the two runs in headless Chromium and saves what it draws. Needs Chromium
(`apt-get install chromium`, or --chromium PATH) and the tracking extra; ~1 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from measure_tracking import REPO, Server, train

DEFAULT_OUTPUT = REPO / "docs" / "images" / "mlflow-compare-runs.png"
LEARNING_RATES = ["0.001", "0.01"]
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def find_chromium(given: str | None) -> str:
    for candidate in (given, "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise SystemExit("no Chromium found: apt-get install chromium, or pass --chromium PATH")


def page_url(server_uri: str, experiment_id: str, run_ids: list[str], view: str) -> str:
    """MLflow's compare-runs page for ``run_ids``, or the experiment's chart view (its single-page app reads the
    query after the '#')."""
    if view == "chart":
        return f"{server_uri}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
    query = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])})
    return f"{server_uri}/#/compare-runs?{query}"


def screenshot(chromium: str, url: str, output: Path, work: Path, size: str) -> None:
    """Let the page run for 20 s of virtual time (it fetches the runs, then draws), then save it as a PNG."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp.png")
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium'}", f"--window-size={size}"]
    command += ["--virtual-time-budget=20000", f"--screenshot={tmp}", url]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    tmp.replace(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--window-size", default="1600,1700", help="width,height in pixels")
    parser.add_argument("--view", choices=["compare", "chart"], default="compare")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    import mlflow

    with tempfile.TemporaryDirectory(prefix="dltool-mlflow-shot-") as tmp:
        work = Path(tmp)
        (work / "server").mkdir()
        server = Server(work / "server")
        server.start()
        try:
            for rate in LEARNING_RATES:
                result = train(work / "runs", server.uri, f"lr {rate}", [f"train.optimizer.learning_rate={rate}"])
                if result["rc"] != 0:
                    raise SystemExit(f"dltool train failed (exit {result['rc']})")
            client = mlflow.MlflowClient(server.uri)
            experiment = client.get_experiment_by_name("digits-mlp")
            runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
            run_ids = [run.info.run_id for run in runs[-2:]]
            url = page_url(server.uri, experiment.experiment_id, run_ids, args.view)
            screenshot(chromium, url, args.output, work, args.window_size)
        finally:
            server.stop()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
