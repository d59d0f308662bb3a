"""Requests/s and latency of `dltool serve` at 1, 8 and 32 concurrent clients: dynamic batching against none.

Trains --config (default configs/digits_mlp.yaml; --set as for dltool train) once unless --run names a run, then
starts two `dltool serve` processes side by side, one per mode, and measures them in alternation: every round
measures each mode at each client count, the modes' order flipped from round to round, so that a change in the
machine's load falls on both. Each cell is measured --repeats times (--seconds each, after a warm-up); the
results file gives the median with its min-max, and the batching ratio per round.

The clients are closed-loop keep-alive HTTP/1.1 connections driven from this process by a small asyncio protocol
(on uvloop where installed): an HTTP client library would cost more CPU than the server it measures. Where the
machine has more than 2 cores, the clients run on a core of their own (sched_setaffinity, as `taskset` does) and
the servers on the rest; on 2 cores they share them, and the results say so.

    python benchmarks/measure_serve.py [--run RUN | --config CONFIG [--set K=V ...]] [--repeats 6] [--seconds 2]
                                       [--server-env K=V ...]

Each model gets its own section in --out (default benchmarks/RESULTS-serve.md), replaced when measured again;
the section keeps a one-line summary of the earlier runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCHING, SINGLE = "batching", "one call per request"
MODES = {
    BATCHING: ["--max-batch", "64", "--batch-wait-ms", "5"],
    SINGLE: ["--max-batch", "1"],
}
CLIENTS = (1, 8, 32)
KEPT_RUNS = 6  # earlier runs summarized in a model's section
SETTLE_S = 0.5  # idle seconds before each cell


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


def start_server(run: str, options: list[str], env: dict) -> tuple[subprocess.Popen, str, str]:
    """A started ``dltool serve`` of ``run``: (process, URL, model name)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", **env}
    command = [sys.executable, "-m", "dltool", "serve", run, "--port", "0", *options]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    first = server.stdout.readline()
    if not first.startswith("serving "):
        server.kill()
        raise SystemExit(f"the server did not start: {first}")
    return server, first.rsplit(" at ", 1)[1].strip(), first.split()[1]


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Client(asyncio.Protocol):
    """One closed-loop keep-alive connection: sends ``request``, reads the whole answer, sends again, until
    ``deadline``; appends each request's latency (s) to ``latencies``."""

    def __init__(self, request: bytes, deadline: float, latencies: list[float], done: asyncio.Future):
        self.request, self.deadline, self.latencies, self.done = request, deadline, latencies, done
        self.buffer, self.started, self.transport = bytearray(), 0.0, None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.buffer.clear()
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        length = _LENGTH.search(head)
        if length is None or len(self.buffer) < end + 4 + int(length[1]):
            return
        if not head.startswith(b"HTTP/1.1 200"):
            self.done.set_exception(RuntimeError(bytes(self.buffer).decode(errors="replace")))
            self.transport.close()
            return
        self.latencies.append(time.perf_counter() - self.started)
        self._send()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the connection"))


async def drive(host: str, port: int, request: bytes, clients: int, seconds: float) -> list[float]:
    """Latencies (s) of every request answered in ``seconds`` by ``clients`` closed-loop keep-alive clients."""
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    finished = []
    for _ in range(clients):
        done = loop.create_future()
        await loop.create_connection(lambda d=done: _Client(request, deadline, latencies, d), host, port)
        finished.append(done)
    await asyncio.gather(*finished)
    return latencies


def run_client(coroutine):
    """Run ``coroutine`` on uvloop where installed (the cheaper client leaves more of the cores to the server)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def place_processes(servers: list[int]) -> str:
    """Give the clients (this process) a core of their own where there are more than 2; say where each runs."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= 2:
        return f"clients and servers shared the same {len(cores)} cores (no pinning: too few cores to split)"
    client_core, server_cores = cores[-1:], cores[:-1]
    os.sched_setaffinity(0, client_core)
    for pid in servers:
        os.sched_setaffinity(pid, server_cores)
    return f"clients pinned to core {client_core[0]}, servers to cores {server_cores[0]}-{server_cores[-1]} (taskset)"


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat's first line: user ... steal), or None off Linux."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> str:
    """The share of CPU time the hypervisor gave to other machines between two readings (a VM's "steal")."""
    if before is None or after is None:
        return "CPU steal unknown"
    spent = [b - a for a, b in zip(before, after)]
    return f"CPU steal {100 * spent[7] / max(1, sum(spent)):.1f} %"


def versions() -> str:
    """The packages that decide a server's speed, as installed."""
    names = ("tensorflow", "keras", "uvicorn", "httptools", "uvloop", "orjson", "starlette", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def request_bytes(url: str, name: str, sample: list) -> tuple[str, int, bytes]:
    """(host, port, one raw HTTP ``:predict`` request of ``sample``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"instances": [sample]}).encode()
    head = (
        f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return host, int(port), head.encode() + body


def measure(servers: dict, sample: list, repeats: int, seconds: float) -> dict:
    """{(mode, clients): [(requests/s, p50 ms, p99 ms) per round]}, the modes alternating."""
    cells: dict = {}
    for round_ in range(repeats):
        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
        for clients in CLIENTS:
            for mode in order:
                host, port, request = servers[mode]["request"]
                time.sleep(SETTLE_S)  # the previous cell's server goes idle (TensorFlow's threads stop spinning)
                run_client(drive(host, port, request, clients, 0.3))  # warm-up: connections, the model's batch sizes
                latencies = np.array(run_client(drive(host, port, request, clients, seconds)))
                cell = (
                    len(latencies) / seconds,
                    1000 * np.percentile(latencies, 50),
                    1000 * np.percentile(latencies, 99),
                )
                cells.setdefault((mode, clients), []).append(cell)
                print(f"round {round_ + 1}/{repeats} {mode:22s} {clients:3d} clients: {cell[0]:8.0f} req/s", flush=True)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run to serve (default: train --config)")
    parser.add_argument("--config", default=str(REPO / "configs/digits_mlp.yaml"), help="the config to train")
    parser.add_argument("--set", action="append", default=[], help="an override for the training, as dltool train")
    parser.add_argument(
        "--repeats", type=int, default=6, help="measurements per cell (rounds; even, so each mode goes first as often)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell and round")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        help="K=V for both servers' environment (e.g. TF_NUM_INTRAOP_THREADS=1)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks/RESULTS-serve.md"))
    args = parser.parse_args()
    server_env = dict(item.split("=", 1) for item in args.server_env)
    scratch = tempfile.TemporaryDirectory(prefix="dltool-serve-bench-")
    run = args.run or train_run(Path(scratch.name), args.config, args.set)
    sample, model = raw_sample(run)
    servers: dict = {}
    try:
        for mode, options in MODES.items():
            process, url, name = start_server(run, options, server_env)
            servers[mode] = {"process": process, "request": request_bytes(url, name, sample)}
        placement = place_processes([s["process"].pid for s in servers.values()])
        load_before, times_before = os.getloadavg(), cpu_times()
        cells = measure(servers, sample, args.repeats, args.seconds)
        load_after, times_after = os.getloadavg(), cpu_times()
    finally:
        for server in servers.values():
            server["process"].terminate()
            server["process"].wait(30)
    environment = {
        "placement": placement,
        "load": f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        + steal_share(times_before, times_after),
        "versions": versions(),
        "server_env": " ".join(args.server_env) or "none",
    }
    write_results(Path(args.out), cells, args, model, environment)


HEADER = """# dltool serve: dynamic batching

`python benchmarks/measure_serve.py [--config CONFIG]`: a run served by two `dltool serve` processes side by side,
one with dynamic batching (`--max-batch 64 --batch-wait-ms 5`) and one calling the model once per request
(`--max-batch 1`), measured in alternation, each cell several times. One raw sample per `:predict` request;
closed-loop keep-alive clients on loopback in the same machine. Requests/s and latencies are the median over the
rounds with the min-max in brackets; the batching ratio is taken per round (the two modes measured back to back)
and given as median [min-max]. Each model's section says where the clients ran, the load average (the
benchmark's own client and servers make about 1.5 of it on 2 cores), the CPU time the hypervisor gave to other
machines (steal), and the packages that decide the speed. Rerun a model to replace its section; its earlier runs
stay summarized.

**Where the time goes** (py-spy on the server, digits MLP, 32 clients, batching, 2 cores shared with the
clients). The event loop, one Python thread, is busy in about 70 % of the samples and is what limits requests/s
once batching has merged the model calls; the model's thread in about 40 %. Half of the event loop's time is
uvicorn and uvloop (reading and parsing HTTP, a task per request, writing the response), the rest is dltool's
work per request: the JSON (orjson), the array and its type check, the run's preprocessing, the batcher, the
metrics. Without batching the model call is the limit instead: Keras's `predict_on_batch` takes about 0.5 ms for
one digits sample (0.6 ms for 64) and 0.8 ms for one MNIST image (2.1 ms for 32, 3.3 ms for 64) on this machine,
so one call per request tops out near 1,000-1,300 and 650-950 requests/s. The batching ratio is the event loop's
requests/s over those single calls/s: it grows with the model's cost per call and with spare cores, and shrinks
with anything that makes a single call cheaper.

**The spread.** This machine is a virtual machine with 2 cores: the hypervisor's steal reached 17 % (top) between
these runs, and absolute figures changed by 2x between runs minutes apart (the MNIST CNN's lone client,
687 then 325 requests/s). The ratios move less, the two modes being measured back to back, but a single 2 s cell
still ranges widely: read the medians and the brackets, not one number.
"""


def _cell(values: list[float], fmt: str) -> str:
    return f"{format(np.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def write_results(path: Path, cells: dict, args, model: str, environment: dict) -> None:
    """Write this model's section into ``path``, keeping the other models' sections."""
    day = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    for mode in MODES:
        for clients in CLIENTS:
            rounds = cells[(mode, clients)]
            rps, p50, p99 = ([r[i] for r in rounds] for i in range(3))
            rows.append(f"| {mode} | {clients} | {_cell(rps, ',.0f')} | {_cell(p50, '.2f')} | {_cell(p99, '.2f')} |")
    ratios = {c: [b[0] / s[0] for b, s in zip(cells[(BATCHING, c)], cells[(SINGLE, c)])] for c in CLIENTS}
    ratio_text = ", ".join(f"{c} client{'s' if c > 1 else ''} {_cell(ratios[c], '.1f')}x" for c in CLIENTS)
    summary = f"- {day}: {ratio_text}; {environment['load']}; server env: {environment['server_env']}"
    if args.server_env:
        model += f", servers with {' '.join(args.server_env)}"
    title = f"## {model}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    others, earlier = [], []
    for part in old.split("\n## ")[1:]:
        if f"## {part.splitlines()[0]}" == title:
            earlier = [line for line in part.splitlines() if line.startswith("- 20")]
        else:
            others.append(f"## {part}")
    lines = [
        title,
        "",
        f"{day}; {args.repeats} round{'s' if args.repeats > 1 else ''} of {args.seconds:g} s per cell, after {SETTLE_S:g} s idle and a 0.3 s warm-up. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"{environment['placement']}; {environment['load']}. Server environment: {environment['server_env']}. "
        f"{environment['versions']}.",
        "",
        "| server | clients | requests/s | p50 latency (ms) | p99 latency (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Batching against one model call per request, requests/s per round: {ratio_text}.",
        "",
        "Runs of this benchmark for this model (the latest first):",
        "",
        summary,
        *earlier[: KEPT_RUNS - 1],
        "",
    ]
    sections = [*others, "\n".join(lines)]
    text = HEADER + "\n" + "\n".join(s.rstrip() + "\n" for s in sections)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
