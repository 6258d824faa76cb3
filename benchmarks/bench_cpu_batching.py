"""Dynamic batching on the CPU path: the local server with and without it, side by side.

Starts ``aimaas_local serve`` twice per round (``AIMAAS_CPU_BATCHING=true`` and ``false``, both
with the run gate and one ONNX thread), alternating, and drives each with 1, 8 and 32
closed-loop clients (asyncio + httpx) sending one or 16 sentences per embeddings request to the
fp32 MiniLM (the int8 models are never merged: see ``aimaas.backends.batched.merges_exactly``).
Prints requests/s, p50/p99, errors and the server's resident memory (idle after warm-up, and
the peak), and writes ``benchmarks/results/cpu_batching.json``. Request counts are bounded, so
it stops by itself.

Run: ``.venv/bin/python benchmarks/bench_cpu_batching.py [--quick] [--clients 1 8 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from aimaas_testing.paths import REGISTRY
from aimaas_testing.servers import ServerProcess, launch_local_server

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "cpu_batching.json"
MODEL = "all-minilm-l6-v2"
SENTENCES = [
    "The central bank left interest rates unchanged on Thursday.",
    "The striker scored twice in the final minutes of the match.",
    "A new vaccine trial reported strong results in older adults.",
    "Shares fell sharply after the quarterly earnings report.",
    "The parliament passed the budget late on Friday night.",
    "Astronomers found water vapour on a distant planet.",
    "The city opened three new libraries this year.",
    "Heavy rain is expected across the north this weekend.",
]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def _drive(url: str, key: str, clients: int, total: int, sentences: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    remaining = total
    headers = {"Authorization": f"Bearer {key}"}

    def body(i: int) -> dict[str, Any]:
        texts = [SENTENCES[(i + j) % len(SENTENCES)] for j in range(sentences)]
        return {"input": texts if sentences > 1 else texts[0], "model": MODEL}

    async def client(http: httpx.AsyncClient, offset: int) -> None:
        nonlocal remaining, errors
        sent = 0
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            response = await http.post(
                f"{url}/v1/embeddings", json=body(offset + sent), headers=headers
            )
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status_code != 200
            sent += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "sentences": sentences,
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def _server(work: Path, batching: bool, round_: int) -> ServerProcess:
    name = f"{'batched' if batching else 'gated'}-{round_}"
    return launch_local_server(
        registry=REGISTRY,
        db=work / f"{name}.db",
        log_path=work / f"{name}.log",
        args=["--show-key", "--log-level", "warning"],
        env={
            "AIMAAS_ONNX_THREADS": "1",
            "AIMAAS_CPU_BATCHING": "true" if batching else "false",
        },
    )


def measure(
    batching: bool, levels: list[int], sentences: int, total: int, work: Path, round_: int
) -> dict[str, Any]:
    """One server, warmed up, then each level of clients in turn."""
    server = _server(work, batching, round_)
    try:
        key = server.demo_key()
        asyncio.run(_drive(server.url, key, 4, 40, sentences))  # load the model, fill arenas
        idle_kb = _status_kb(server.process.pid, "VmRSS")
        rows = [
            asyncio.run(_drive(server.url, key, clients, total, sentences)) for clients in levels
        ]
        peak_kb = _status_kb(server.process.pid, "VmHWM")
    finally:
        server.stop()
    return {
        "batching": batching,
        "sentences": sentences,
        "levels": rows,
        "rss_idle_mb": idle_kb / 1024,
        "rss_peak_mb": peak_kb / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for sentences, total in ((1, 100 if args.quick else 400), (16, 40 if args.quick else 160)):
            for round_, batching in enumerate((True, False, True, False)[: 2 if args.quick else 4]):
                runs.append(measure(batching, args.clients, sentences, total, work, round_))
    load = os.getloadavg()

    print(f"\nCPU dynamic batching, {MODEL} embeddings, one uvicorn process, ONNX threads 1")
    print(
        f"   {'mode':<9}{'texts':>6}{'clients':>8}{'req/s':>9}{'texts/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'errors':>7}{'RSS idle':>10}{'peak MB':>9}"
    )
    for run in runs:
        mode = "batched" if run["batching"] else "gated"
        for row in run["levels"]:
            print(
                f"   {mode:<9}{run['sentences']:>6}{row['clients']:>8}{row['req_per_s']:>9.1f}"
                f"{row['req_per_s'] * run['sentences']:>9.1f}{row['p50_ms']:>9.1f}"
                f"{row['p99_ms']:>9.1f}{row['errors']:>7}{run['rss_idle_mb']:>10.1f}"
                f"{run['rss_peak_mb']:>9.1f}"
            )
    print(f"\n   load average during the run: {load[0]:.1f} (2 cores; other work shares them)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "cpu_batching",
                "model": MODEL,
                "host": {
                    "machine": platform.machine(),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load_average_1m": load[0],
                },
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
