"""Bounded load on loopback: mixed tasks from 32 concurrent clients, then the ledger and memory.

CI sends ``AIMAAS_LOAD_REQUESTS`` requests (2,000 by default); the 10,000-request figure comes
from ``python -m tests.functional.pressure.load`` (or ``python -m benchmarks --load``).

Bounds, stated so they can fail:

- no 5xx and no transport error (every request is answered; 4xx are not expected either);
- the ledger holds exactly one record per billed 2xx answer and none for anything else;
- memory: RSS is sampled 8 times during the run. ONNX Runtime's arenas and the thread pool grow
  with the largest concurrent shapes they meet, then plateau; a leak does not. So the bound is
  on the second half of the run: at most :data:`RSS_SECOND_HALF_MB` of growth (a leak of
  ~32 KB per request would exceed it), and at most :data:`RSS_TOTAL_MB` in all.
- transport errors: at most 1% of requests needed their one retry (same Idempotency-Key).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.functional.pressure.load import default_mix, run_load
from tests.functional.pressure.support import ROOT, LiveServer, has_model

REQUESTS = int(os.environ.get("AIMAAS_LOAD_REQUESTS", "2000"))
CONCURRENCY = 32
RSS_SECOND_HALF_MB = 32.0
RSS_TOTAL_MB = 192.0
REPORT_FILE = ROOT / "build" / "pressure" / "load.json"


@pytest.mark.slow
def test_mixed_load(live_server: LiveServer) -> None:
    headers = live_server.tenants["a"].headers
    mix = default_mix(with_audio=has_model("keyword-spotter"))
    # Warm-up: load every model and fill the pools, so RSS growth measures the steady state.
    warm = run_load(live_server.base_url, headers, requests=96, mix=mix, prefix="warm")
    assert warm.error_rate == 0, warm.statuses
    report = run_load(
        live_server.base_url,
        headers,
        requests=REQUESTS,
        concurrency=CONCURRENCY,
        mix=mix,
        prefix="load",
        rss=live_server.rss_bytes,
    )
    summary = report.summary()
    REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
    REPORT_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))

    assert report.requests == REQUESTS
    assert report.error_rate == 0, report.statuses
    billed = {r.request_id for r in live_server.records("a") if r.request_id.startswith("load-")}
    assert billed == set(report.billed_ok_ids), (
        f"ledger {len(billed)} records vs {len(report.billed_ok_ids)} billed 2xx answers"
    )
    assert report.rss_before_mb is not None and report.rss_after_mb is not None
    samples = report.rss_samples_mb
    assert len(samples) >= 4, samples
    middle = samples[len(samples) // 2 - 1][1]
    assert report.rss_after_mb - middle <= RSS_SECOND_HALF_MB, f"RSS still growing: {samples}"
    assert report.rss_after_mb - report.rss_before_mb <= RSS_TOTAL_MB, samples
    assert len(report.transport_retries) <= REQUESTS // 100, report.transport_retries
    assert live_server.process.poll() is None
