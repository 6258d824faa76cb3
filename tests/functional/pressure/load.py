"""A bounded load generator: N mixed requests from C concurrent asyncio clients over loopback.

Used by ``test_load.py`` (CI: 2,000 requests) and runnable on its own against a fresh local
server for the 10,000-request figure::

    python -m tests.functional.pressure.load --requests 10000 --concurrency 32 \
        --json build/pressure/load.json

Every request carries its own ``Idempotency-Key``, so the ledger can be compared with what was
answered, request by request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from aimaas_testing.media import wav


@dataclass(frozen=True)
class Request:
    """One request of the mix."""

    task: str
    path: str
    kwargs: Mapping[str, Any]
    billed: bool = True  # a served call of this kind leaves one ledger record


@dataclass
class LoadReport:
    """What a run measured."""

    requests: int
    concurrency: int
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    statuses: dict[str, int]
    by_task: dict[str, dict[str, float]]
    billed_ok_ids: list[str] = field(default_factory=list, repr=False)
    failed_ids: list[str] = field(default_factory=list, repr=False)
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    rss_samples_mb: list[tuple[int, float]] = field(default_factory=list)
    transport_retries: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The report without the id lists (for JSON and printing)."""
        data = asdict(self)
        data.pop("billed_ok_ids")
        data.pop("failed_ids")
        return data


def _photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


TEXTS = (
    "The striker scored twice in the cup final.",
    "Shares fell sharply after the central bank raised interest rates.",
    "The new phone has a faster chip and a brighter screen.",
    "Parliament passed the budget after a long night of debate.",
    "你好世界",
)


def default_mix(with_audio: bool = False) -> list[tuple[float, Request]]:
    """(weight, request) pairs: embeddings, topic and zero-shot text, images, catalogue reads."""
    photo = _photo_jpeg()
    mix: list[tuple[float, Request]] = [
        (0.35, Request("embeddings", "/v1/embeddings", {"json": {"input": list(TEXTS[:3])}})),
        (0.2, Request("text", "/v1/text-classification", {"json": {"text": TEXTS[1]}})),
        (
            0.1,
            Request(
                "zero-shot",
                "/v1/text-classification",
                {"json": {"text": TEXTS[0], "labels": ["sports", "finance", "politics"]}},
            ),
        ),
        (
            0.2,
            Request(
                "image",
                "/v1/image-classification",
                {"content": photo, "headers": {"Content-Type": "image/jpeg"}},
            ),
        ),
        (
            0.05,
            Request(
                "image-json",
                "/v1/image-classification",
                {"json": {"image": base64.b64encode(photo).decode(), "top_k": 3}},
            ),
        ),
        (0.1, Request("catalogue", "/v1/models", {"method": "GET"}, billed=False)),
    ]
    if with_audio:
        mix.append((0.1, Request("audio", "/v1/audio-classification", {"content": wav(),
                    "headers": {"Content-Type": "audio/wav"}})))  # fmt: skip
    return mix


def _ok(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


async def _run(
    base_url: str,
    headers: Mapping[str, str],
    plan: list[Request],
    concurrency: int,
    prefix: str,
    rss: Callable[[], int] | None,
    samples: list[tuple[int, float]],
    retried: list[str],
) -> tuple[list[tuple[str, Request, int | str, float]], float]:
    sample_every = max(1, len(plan) // 8)
    queue: asyncio.Queue[tuple[int, Request]] = asyncio.Queue()
    for index, request in enumerate(plan):
        queue.put_nowait((index, request))
    results: list[tuple[str, Request, int | str, float]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while True:
            try:
                index, request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            request_id = f"{prefix}-{index}"
            kwargs = dict(request.kwargs)
            method = kwargs.pop("method", "POST")
            extra = {"Idempotency-Key": request_id, **kwargs.pop("headers", {})}
            started = time.perf_counter()
            status: int | str = "not sent"
            # One retry after a transport error (a keep-alive connection the server closed as
            # it was reused): safe because the Idempotency-Key makes the retry bill once.
            for attempt in range(2):
                try:
                    response = await client.request(method, request.path, headers=extra, **kwargs)
                    status = response.status_code
                    break
                except httpx.TransportError as exc:
                    status = type(exc).__name__  # counted as an error if the retry fails too
                    if attempt == 0:
                        retried.append(f"{request_id}: {type(exc).__name__}")
            results.append((request_id, request, status, time.perf_counter() - started))
            if rss is not None and len(results) % sample_every == 0:
                samples.append((len(results), round(rss() / 2**20, 1)))

    async with httpx.AsyncClient(
        base_url=base_url, headers=dict(headers), timeout=120.0, limits=limits
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return results, wall


def run_load(
    base_url: str,
    headers: Mapping[str, str],
    *,
    requests: int = 2000,
    concurrency: int = 32,
    mix: list[tuple[float, Request]] | None = None,
    seed: int = 7,
    prefix: str = "load",
    rss: Callable[[], int] | None = None,
) -> LoadReport:
    """Send ``requests`` requests drawn from ``mix`` with ``concurrency`` clients.

    Parameters
    ----------
    base_url, headers
        The server and the auth headers.
    requests, concurrency
        How many requests in all, and how many clients send at once.
    mix
        Weighted requests (:func:`default_mix` by default).
    seed
        Seed of the draw, so a run can be repeated.
    prefix
        Prefix of the ``Idempotency-Key`` of each request (unique per run).
    rss
        Returns the server's resident memory in bytes; read before and after the run.

    Returns
    -------
    LoadReport
        Throughput, latency percentiles, error rate, statuses and the ids of billed successes.
    """
    mix = mix or default_mix()
    rng = random.Random(seed)  # noqa: S311 - a reproducible draw, not a secret
    weights = [w for w, _ in mix]
    plan = rng.choices([r for _, r in mix], weights=weights, k=requests)
    rss_before = rss() / 2**20 if rss else None
    samples: list[tuple[int, float]] = []
    retried: list[str] = []
    results, wall = asyncio.run(
        _run(base_url, headers, plan, concurrency, prefix, rss, samples, retried)
    )
    rss_after = rss() / 2**20 if rss else None
    latencies = [seconds * 1000.0 for *_, seconds in results]
    statuses = Counter(str(status) for _, _, status, _ in results)
    errors = sum(1 for _, _, status, _ in results if not _ok(status))
    by_task: dict[str, dict[str, float]] = {}
    for task in sorted({r.task for _, r in mix}):
        own = [s * 1000.0 for _, r, status, s in results if r.task == task]
        by_task[task] = {
            "count": len(own),
            "p50_ms": round(_percentile(own, 50), 2),
            "p95_ms": round(_percentile(own, 95), 2),
        }
    return LoadReport(
        requests=len(results),
        concurrency=concurrency,
        wall_s=round(wall, 3),
        throughput_rps=round(len(results) / wall, 2) if wall else 0.0,
        p50_ms=round(_percentile(latencies, 50), 2),
        p95_ms=round(_percentile(latencies, 95), 2),
        p99_ms=round(_percentile(latencies, 99), 2),
        error_rate=round(errors / max(1, len(results)), 5),
        statuses=dict(sorted(statuses.items())),
        by_task=by_task,
        billed_ok_ids=[rid for rid, r, status, _ in results if r.billed and _ok(status)],
        failed_ids=[rid for rid, _, status, _ in results if not _ok(status)],
        rss_before_mb=None if rss_before is None else round(rss_before, 1),
        rss_after_mb=None if rss_after is None else round(rss_after, 1),
        rss_samples_mb=samples,
        transport_retries=retried,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start a local server, run the load, check the ledger, print (and save) the report."""
    import tempfile

    from tests.functional.pressure.support import has_model, start_server, stop_server

    parser = argparse.ArgumentParser(prog="python -m tests.functional.pressure.load")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aimaas-load-") as tmp:
        server = start_server(Path(tmp))
        try:
            headers = server.tenants["a"].headers
            mix = default_mix(with_audio=has_model("keyword-spotter"))
            run_load(server.base_url, headers, requests=64, mix=mix, prefix="warm")
            report = run_load(
                server.base_url,
                headers,
                requests=args.requests,
                concurrency=args.concurrency,
                mix=mix,
                rss=server.rss_bytes,
            )
            billed = {r.request_id for r in server.records("a")}
            summary = report.summary()
            summary["ledger_matches"] = set(report.billed_ok_ids) <= billed and not (
                billed & set(report.failed_ids)
            )
        finally:
            stop_server(server)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["ledger_matches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
