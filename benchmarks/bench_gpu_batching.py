"""Dynamic batching of the GPU server: throughput and latency with and without it.

Starts the GPU server (``functions/gpu_server/serve``) as a child process once per maximum
batch size (1 = batching off), drives it with 1, 8 and 32 concurrent closed-loop clients
(asyncio + httpx), each sending one text per request to the embeddings model, and prints a
table; the JSON goes to ``benchmarks/results/gpu_batching.json``. Request counts are bounded,
so it stops by itself. On this repository's CPU-only machines it runs with the CPU provider;
``scripts/gpu_check.sh`` runs the same code with ``--target cuda`` on a GPU.

Run: ``.venv/bin/python benchmarks/bench_gpu_batching.py [--target cpu] [--clients 1 8 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from functions.gpu_server.gpuserve.launcher import running_server  # noqa: E402

MODEL = "all-minilm-l6-v2"  # the fp32 model aimaas/data/stages.toml sends to the GPU
HEADER = "X-Amzn-SageMaker-Target-Model"

# Sentences of everyday lengths (5 to ~60 tokens), the traffic an embeddings API sees.
TEXTS = [
    "hello world",
    "How do I reset my password?",
    "The central bank left interest rates unchanged on Thursday, citing slowing inflation.",
    "Best hiking trails near the lake for a family with small children",
    "我喜欢在周末去公园散步。",
    "Quarterly revenue grew twelve percent, driven by strong demand for cloud services and "
    "a recovery in advertising, while operating costs stayed flat compared with last year.",
    "cheap flights to lisbon in may",
    "The match ended in a draw after a late equaliser from the visiting side.",
    "Symptoms of vitamin D deficiency include fatigue, bone pain and muscle weakness.",
    "Can you recommend a good book about the history of mathematics?",
    "New battery chemistry promises faster charging for electric cars.",
    "ok thanks",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def drive(base_url: str, clients: int, requests: int, model: str) -> dict[str, Any]:
    """``clients`` concurrent closed loops sending ``requests`` requests in all."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def loop() -> None:
            nonlocal failures
            for i in counter:
                body = {"task": "embeddings", "texts": [TEXTS[i % len(TEXTS)]]}
                started = time.perf_counter()
                response = await client.post("/invocations", json=body, headers={HEADER: model})
                latencies.append((time.perf_counter() - started) * 1000.0)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "failures": failures, "seconds": elapsed}


def summarise(clients: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one level: total requests over total time, pooled percentiles."""
    latencies = [x for r in rounds for x in r["latencies"]]
    seconds = sum(r["seconds"] for r in rounds)
    cpu_s = sum(r["server_cpu_s"] for r in rounds)
    return {
        "clients": clients,
        "requests": len(latencies),
        "rounds": len(rounds),
        "failures": sum(r["failures"] for r in rounds),
        "seconds": round(seconds, 3),
        "throughput_rps": round(len(latencies) / seconds, 2),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        # Robust to other load on the machine: CPU the server spent per request.
        "server_cpu_ms_per_request": round(cpu_s * 1000.0 / len(latencies), 2),
    }


def server_cpu_s(base_url: str) -> float:
    return float(httpx.get(f"{base_url}/metrics", timeout=30).json()["process"]["cpu_s"])


async def warm(base_url: str, model: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for text in TEXTS:
            await client.post(
                "/invocations",
                json={"task": "embeddings", "texts": [text]},
                headers={HEADER: model},
            )


def server_env(max_batch: int, args: argparse.Namespace) -> dict[str, str]:
    env = {
        "AIMAAS_REGISTRY": str(args.registry),
        "AIMAAS_GPU_PRELOAD": args.model,
        "AIMAAS_BATCH_MAX_SIZE": str(max_batch),
        "AIMAAS_BATCH_MAX_WAIT_MS": str(args.max_wait_ms),
        "AIMAAS_GPU_METRICS_S": "0",
        "AIMAAS_GPU_FP16": args.fp16,
        "AIMAAS_GPU_REQUIRE": "0" if args.target == "cpu" else "1",
    }
    if args.threads:
        env["AIMAAS_ONNX_THREADS"] = str(args.threads)
    return env


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One server per max batch size, all up at once; rounds alternate between them so a
    change in background load hits every configuration alike."""
    with contextlib.ExitStack() as stack:
        urls = {
            b: stack.enter_context(
                running_server(server_env(b, args), target=args.target, timeout_s=300)
            )
            for b in args.batch_sizes
        }
        for url in urls.values():
            asyncio.run(warm(url, args.model))
        raw: dict[int, dict[int, list[dict[str, Any]]]] = {b: {} for b in urls}
        for clients in args.clients:
            requests = max(args.min_requests, clients * args.per_client)
            for _ in range(args.rounds):
                for b, url in urls.items():
                    before = server_cpu_s(url)
                    result = asyncio.run(drive(url, clients, requests, args.model))
                    result["server_cpu_s"] = server_cpu_s(url) - before
                    raw[b].setdefault(clients, []).append(result)
        runs = []
        for b, url in urls.items():
            model = next(iter(httpx.get(f"{url}/metrics").json()["models"].values()))
            runs.append(
                {
                    "max_batch_size": b,
                    "providers": model["providers"],
                    "precision": model["precision"],
                    "io_binding": model["io_binding"],
                    "notes": model["notes"],
                    "mean_batch_rows": model["batches"]["mean_batch_rows"],
                    "levels": [summarise(c, rounds) for c, rounds in raw[b].items()],
                }
            )
    return runs


async def _engine_level(worker: Any, clients: int, requests: int) -> dict[str, Any]:
    from aimaas.inference.wire import EmbeddingsRequest

    latencies: list[float] = []
    counter = iter(range(requests))

    async def loop() -> None:
        for i in counter:
            started = time.perf_counter()
            await worker.infer(EmbeddingsRequest(texts=[TEXTS[i % len(TEXTS)]]))
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(loop() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return {
        "latencies": latencies,
        "failures": 0,
        "seconds": seconds,
        "server_cpu_s": time.process_time() - cpu,
    }


def run_engine(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same load on the server's model pool in this process: batcher and model, no HTTP.

    It separates what batching saves in the model from what the HTTP layer and the load
    generator cost, which on a small shared CPU machine dominate the end-to-end numbers.
    """
    from aimaas.batching import BatchingOptions
    from aimaas.registry import FolderStore, ModelRegistry
    from functions.gpu_server.gpuserve.engine import EngineOptions, build_target
    from functions.gpu_server.gpuserve.models import ModelPool

    registry = ModelRegistry(FolderStore(args.registry))
    manifest = registry.resolve(args.model)
    engine = EngineOptions(threads=args.threads, fp16=args.fp16, require_gpu=args.target != "cpu")
    target = build_target(args.target, engine)
    runs = []
    for b in args.batch_sizes:

        async def one(b: int = b) -> dict[str, Any]:
            options = BatchingOptions(
                max_batch_size=b,
                max_wait_ms=args.max_wait_ms,
                max_concurrent_batches=target.concurrency,
            )
            pool = ModelPool(registry, target, lambda _m, _c: options)
            try:
                worker = await pool.worker(manifest)
                levels = []
                for clients in args.clients:
                    requests = max(args.min_requests, clients * args.per_client)
                    rounds = [
                        await _engine_level(worker, clients, requests) for _ in range(args.rounds)
                    ]
                    levels.append(summarise(clients, rounds))
                stats = worker.batcher.stats.snapshot()
                return {
                    "max_batch_size": b,
                    "mean_batch_rows": stats["mean_batch_rows"],
                    "levels": levels,
                }
            finally:
                await pool.aclose()

        runs.append(asyncio.run(one()))
    return runs


def print_table(title: str, runs: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'max batch':>9} {'clients':>7} {'requests':>8} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu ms/req':>10} {'fail':>4}"
    )
    for run in runs:
        for level in run["levels"]:
            print(
                f"{run['max_batch_size']:>9} {level['clients']:>7} {level['requests']:>8} "
                f"{level['throughput_rps']:>9.1f} {level['p50_ms']:>8.1f} "
                f"{level['p99_ms']:>8.1f} {level['server_cpu_ms_per_request']:>10.2f} "
                f"{level['failures']:>4}"
            )
        where = f"providers {run['providers']}, {run['precision']}, " if "providers" in run else ""
        print(f"{'':>9} {where}mean batch rows {run['mean_batch_rows']}")


def verdict_of(runs: list[dict[str, Any]], top: int, label: str) -> dict[str, Any]:
    """Batched (largest max batch) against unbatched (max batch 1) at ``top`` clients."""
    off = next((r for r in runs if r["max_batch_size"] == 1), None)
    on = max(
        (r for r in runs if r["max_batch_size"] > 1),
        key=lambda r: r["max_batch_size"],
        default=None,
    )
    if not (off and on):
        return {}
    a = next(lv for lv in off["levels"] if lv["clients"] == top)
    b = next(lv for lv in on["levels"] if lv["clients"] == top)
    speedup = b["throughput_rps"] / a["throughput_rps"]
    p99_ratio = b["p99_ms"] / a["p99_ms"]
    cpu_ratio = a["server_cpu_ms_per_request"] / b["server_cpu_ms_per_request"]
    verdict = {
        "clients": top,
        "max_batch_size": on["max_batch_size"],
        "throughput_speedup": round(speedup, 2),
        "p99_ratio": round(p99_ratio, 2),
        "cpu_per_request_saving": round(cpu_ratio, 2),
        "target_met": bool(speedup >= 2.0 and p99_ratio <= 2.0),
    }
    print(
        f"{label}: at {top} clients batching gives {speedup:.2f}x throughput (target >= 2x), "
        f"p99 {p99_ratio:.2f}x of unbatched (target <= 2x): "
        f"{'MET' if verdict['target_met'] else 'NOT MET'}; CPU per request {cpu_ratio:.2f}x lower"
    )
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu", choices=["cpu", "cuda", "tensorrt", "auto"])
    parser.add_argument(
        "--registry",
        type=Path,
        default=Path(os.environ.get("AIMAAS_REGISTRY", REPO / "build/registry")),
    )
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 32],
        help="server max batch sizes to compare; 1 = batching off",
    )
    parser.add_argument("--per-client", type=int, default=12, help="requests per client")
    parser.add_argument("--min-requests", type=int, default=60)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="ORT threads (default: 1 on cpu, else auto)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per level")
    parser.add_argument("--no-engine", action="store_true", help="skip the in-process table")
    parser.add_argument("--fp16", default="auto", choices=["auto", "off", "force"])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/gpu_batching.json")
    args = parser.parse_args(argv)

    if args.threads is None:
        # On a small CPU machine the load generator shares the cores: leave it one.
        args.threads = 1 if args.target == "cpu" else 0
    runs = run_all(args)

    engine = [] if args.no_engine else run_engine(args)

    print(
        f"\nGPU server dynamic batching - model {args.model}, target {args.target}, "
        f"max wait {args.max_wait_ms} ms, ORT threads {args.threads or 'auto'}, "
        f"{os.cpu_count()} CPUs, {args.rounds} alternating rounds per level"
    )
    print_table("End to end: HTTP server (subprocess) and asyncio + httpx clients", runs)
    if engine:
        print_table("Engine only: the server's model pool in process, no HTTP", engine)
    print()
    top = max(args.clients)
    verdict = {"http": verdict_of(runs, top, "HTTP")}
    if engine:
        verdict["engine"] = verdict_of(engine, top, "Engine")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1):
        print(
            f"(load average {load:.1f} on {os.cpu_count()} CPUs: other processes share this "
            "machine; wall-clock numbers are noisy, CPU per request is not)"
        )

    failures = sum(lv["failures"] for r in runs for lv in r["levels"])
    report = {
        "benchmark": "gpu_batching",
        "model": args.model,
        "target": args.target,
        "max_wait_ms": args.max_wait_ms,
        "onnx_threads": args.threads,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "runs": runs,
        "engine_runs": engine,
        "verdict": verdict,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
