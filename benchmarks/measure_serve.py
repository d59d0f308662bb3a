"""Requests/s and latency of `dltool serve` at 1, 8 and 32 concurrent clients: dynamic batching vs none.

Trains --config (default configs/digits_mlp.yaml; --set as for dltool train) once unless --run names a run, starts
`dltool serve` as a subprocess per mode, and drives it from this process with
keep-alive HTTP/1.1 connections written on raw asyncio streams (an HTTP client
library would cost more CPU than the server on a 2-core machine). Each cell
runs --seconds after a short warm-up. Writes a section into RESULTS-serve.md.

    python benchmarks/measure_serve.py [--run RUN | --config CONFIG [--set K=V ...]] [--seconds 4]

Each model gets its own section in --out (default benchmarks/RESULTS-serve.md), replaced when measured again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODES = {"batching (--max-batch 64 --batch-wait-ms 5)": ["--max-batch", "64", "--batch-wait-ms", "5"]}
MODES["one model call per request (--max-batch 1)"] = ["--max-batch", "1"]
CLIENTS = (1, 8, 32)


def train_run(root: Path, config: str, overrides: list[str]) -> str:
    """A run of ``config`` under ``root``: its folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DLTOOL_RUNS_DIR": str(root)}
    sets = [arg for item in overrides for arg in ("--set", item)]
    subprocess.run(
        [sys.executable, "-m", "dltool", "train", config, "--quiet", *sets], env=env, check=True, capture_output=True
    )
    return str(next(p for p in root.iterdir() if p.is_dir()))


def raw_sample(run: str) -> tuple[list, str]:
    """One random raw sample of the run's input shape (values in the range its data had), and a description."""
    import yaml

    config = yaml.safe_load((Path(run) / "config.yaml").read_text())
    shape = config["model"]["input_shape"]
    top = 255 if config["data"].get("scale") == 255 or "mnist" in config["name"] else 16
    sample = np.random.default_rng(0).integers(0, top + 1, size=shape).tolist()
    params = json.loads((Path(run) / "run.json").read_text()).get("params")
    return sample, f"{config['name']} (input {shape}, {params:,} parameters)"


def start_server(run: str, options: list[str]) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "dltool", "serve", run, "--port", "0", *options]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    first = server.stdout.readline()
    if not first.startswith("serving "):
        server.kill()
        raise SystemExit(f"the server did not start: {first}")
    name = first.split()[1]
    return server, first.rsplit(" at ", 1)[1].strip(), name


async def drive(host: str, port: int, request: bytes, clients: int, seconds: float) -> list[float]:
    """Latencies (s) of every request answered in ``seconds`` by ``clients`` closed-loop keep-alive clients."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def client():
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = int(next(v for k, v in _headers(head) if k == b"content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
        writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def _headers(head: bytes):
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            key, value = line.split(b":", 1)
            yield key.strip().lower(), value.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run to serve (default: train --config)")
    parser.add_argument("--config", default=str(REPO / "configs/digits_mlp.yaml"), help="the config to train")
    parser.add_argument("--set", action="append", default=[], help="an override for the training, as dltool train")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument("--out", default=str(REPO / "benchmarks/RESULTS-serve.md"))
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="dltool-serve-bench-")
    run = args.run or train_run(Path(scratch.name), args.config, args.set)
    sample, model = raw_sample(run)
    rows = []
    for mode, options in MODES.items():
        server, url, name = start_server(run, options)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps({"instances": [sample]}).encode()
        request = (
            f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            for clients in CLIENTS:
                asyncio.run(drive(host, int(port), request, clients, 0.5))  # warm-up
                latencies = np.array(asyncio.run(drive(host, int(port), request, clients, args.seconds)))
                rows.append(
                    (
                        mode,
                        clients,
                        len(latencies) / args.seconds,
                        1000 * np.percentile(latencies, 50),
                        1000 * np.percentile(latencies, 99),
                    )
                )
                print(f"{mode:50s} {clients:3d} clients: {rows[-1][2]:8.0f} req/s", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    write_results(Path(args.out), rows, args.seconds, model)


HEADER = """# dltool serve: dynamic batching

`python benchmarks/measure_serve.py [--config CONFIG]`: a run served by `dltool serve`, one raw sample per
`:predict` request, closed-loop keep-alive clients on loopback in the same machine (the client shares the
cores with the server). Each request costs the server's event loop, one Python thread, about 0.1-0.2 ms (HTTP,
JSON, preprocessing) whatever the batching, so batching can at most remove the model's share of the time: the
ratio grows with the model's cost per call and with spare cores. Rerun a model to replace its section.
"""


def write_results(path: Path, rows: list[tuple], seconds: float, model: str) -> None:
    """Write this model's section into ``path``, keeping the other models' sections."""
    batched = {c: r for m, c, r, *_ in rows if m.startswith("batching")}
    single = {c: r for m, c, r, *_ in rows if not m.startswith("batching")}
    title = f"## {model}"
    lines = [
        title,
        "",
        f"{time.strftime('%Y-%m-%d')}, {seconds:g} s per cell after a 0.5 s warm-up. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| server | clients | requests/s | p50 latency (ms) | p99 latency (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {m} | {c} | {r:,.0f} | {p50:.1f} | {p99:.1f} |" for m, c, r, p50, p99 in rows],
        "",
        "Batching against one model call per request, requests/s: "
        + ", ".join(f"{c} clients {batched[c] / single[c]:.1f}x" for c in CLIENTS if c in batched and c in single)
        + ".",
        "",
    ]
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    sections = [f"## {part}" for part in old.split("\n## ")[1:] if not part.startswith(model.split(" (")[0])]
    sections.append("\n".join(lines))
    path.write_text(HEADER + "\n" + "\n".join(s.rstrip() + "\n" for s in sections), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
