"""Bounded load on loopback: mixed tasks from 32 concurrent clients, then the ledger and memory.

CI sends ``AIMAAS_LOAD_REQUESTS`` requests (2,000 by default); the 10,000-request figure comes
from ``python -m tests.functional.pressure.load`` (or ``python -m benchmarks --only load``).

Bounds, stated so they can fail:

- no 5xx and no transport error (every request is answered; 4xx are not expected either);
- the ledger holds exactly one record per billed 2xx answer and none for anything else;
- memory: RSS is sampled 8 times during the run. Per task it plateaus (measured on 4,000
  requests each: /health flat, embeddings with ledger writes +1.8 MB, audio flat within noise,
  images +8 MB after a first jump); the mix keeps raising ONNX Runtime's and malloc's high-water
  marks a little longer (10,000 requests: +40, +29, +13, +19, +13, +5, +6, +8 MB per 1,250).
  Most likely ONNX Runtime's CPU arena, which extends in power-of-two chunks when a new peak of
  concurrent runs on one session needs it: growth comes in steps of tens of MB. The bounds,
  after a 400-request warm-up: the second half of the run grows at most
  :data:`RSS_SECOND_HALF_MB` (a leak of 64 KB per request would exceed it; measured 22-44 MB),
  the whole run at most :data:`RSS_TOTAL_MB`, and the process stays under :data:`RSS_CAP_MB`
  (three quarters of the smallest inference Lambda, 2,048 MB, though this one process holds
  every model; 1,134 MB measured once the default text classifier became multilingual: two
  int8 E5 graphs with a 250k-token vocabulary, where MiniLM's was 30k).
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
RSS_SECOND_HALF_MB = 64.0
RSS_TOTAL_MB = 192.0
RSS_CAP_MB = 1536.0
REPORT_FILE = ROOT / "build" / "pressure" / "load.json"


@pytest.mark.slow
def test_mixed_load(live_server: LiveServer) -> None:
    headers = live_server.tenants["a"].headers
    mix = default_mix(with_audio=has_model("keyword-spotter"))
    # Warm-up: load every model and fill the pools, so RSS growth measures the steady state.
    warm = run_load(live_server.base_url, headers, requests=400, mix=mix, prefix="warm")
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
    assert max(mb for _, mb in samples) <= RSS_CAP_MB, samples
    assert len(report.transport_retries) <= REQUESTS // 100, report.transport_retries
    assert live_server.process.poll() is None
