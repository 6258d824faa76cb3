"""Exactly-once billing through the real HTTP server, on both ledger adapters.

2,000 predictions from 32 concurrent clients against the app served by uvicorn on loopback;
one request in ten is sent a second time under the same ``Idempotency-Key`` (a client retry).
Afterwards the ledger holds exactly one record per distinct request id, every answer was a 2xx,
and the day and month counters equal the sums over the ledger's records. The DynamoDB run uses
moto in process (the server runs in a thread of this process, so moto's mock applies to it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from aimaas.api import create_app
from aimaas.config import Settings
from aimaas.metering import day_bucket, month_bucket
from aimaas.wiring import build_ledger
from aimaas_admin.service import AdminService
from aimaas_testing.metering import moto_tables
from aimaas_testing.paths import REGISTRY
from aimaas_testing.servers import serve_in_thread

PREDICTIONS = 2000
CLIENTS = 32
RETRY_EVERY = 10  # every tenth request id is sent twice


@pytest.fixture(params=["sqlite", "dynamodb"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not (REGISTRY / "all-minilm-l6-v2-int8").is_dir():
        pytest.skip(f"all-minilm-l6-v2-int8 is not in {REGISTRY}; run `make models`")
    with ExitStack() as stack:
        env = {
            "AIMAAS_REGISTRY": str(REGISTRY),
            "AIMAAS_SQLITE_PATH": str(tmp_path / "aimaas.db"),
            "AIMAAS_ONNX_THREADS": "1",
        }
        if request.param == "dynamodb":
            env.update(stack.enter_context(moto_tables()))
            # The AWS admin path also gives each key an API Gateway key in its plan's usage plan.
            boto3.client("apigateway").create_usage_plan(name="aimaas-local-enterprise")
        settings = Settings.from_env(env)
        admin = AdminService(settings, actor="exactly-once-test", host="localhost")
        tenant = admin.create_tenant("exactly once", plan="enterprise")
        _, key = admin.create_key(tenant.tenant_id, label="load")
        for part in (admin.store, admin.ledger, admin.audit):
            getattr(part, "close", lambda: None)()
        app = create_app(settings)
        stack.callback(app.state.container.close)  # after the server below has stopped
        url = stack.enter_context(serve_in_thread(app))
        yield {"url": url, "key": key, "tenant_id": tenant.tenant_id, "settings": settings}


async def _send_all(url: str, key: str) -> list[tuple[str, int, float]]:
    """Send every prediction (and the retries); return (request id, status, billed units)."""
    request_ids = [f"eo-{i:05d}" for i in range(PREDICTIONS)]
    sends = request_ids + request_ids[::RETRY_EVERY]  # the retries come after their originals
    queue: asyncio.Queue[str] = asyncio.Queue()
    for request_id in sends:
        queue.put_nowait(request_id)
    answers: list[tuple[str, int, float]] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                request_id = queue.get_nowait()
                response = await client.post(
                    "/v1/embeddings",
                    headers={"x-api-key": key, "Idempotency-Key": request_id},
                    json={"input": f"request {request_id} asks for an embedding"},
                )
                units = response.json()["usage"]["units"] if response.status_code == 200 else 0.0
                answers.append((request_id, response.status_code, units))

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return answers


@pytest.mark.slow
def test_every_prediction_is_billed_exactly_once(served: dict[str, Any]) -> None:
    answers = asyncio.run(_send_all(served["url"], served["key"]))
    assert len(answers) == PREDICTIONS + PREDICTIONS // RETRY_EVERY
    assert Counter(status for _, status, _ in answers) == {200: len(answers)}
    served_ids = {request_id for request_id, _, _ in answers}
    assert len(served_ids) == PREDICTIONS

    ledger = build_ledger(served["settings"])
    try:
        now = datetime.now(UTC)
        records = list(
            ledger.records(served["tenant_id"], now - timedelta(days=1), now + timedelta(days=1))
        )
        month = ledger.totals(served["tenant_id"], "month", month_bucket(now))
        today = ledger.totals(served["tenant_id"], "day", day_bucket(now))
    finally:
        ledger.close()

    ids = [record.request_id for record in records]
    assert len(ids) == len(set(ids)) == PREDICTIONS  # ledger count = distinct 2xx requests
    assert set(ids) == served_ids
    billed_units = sum((Decimal(str(record.units)) for record in records), Decimal(0))
    answered_units = {request_id: units for request_id, _, units in answers}
    assert float(billed_units) == pytest.approx(sum(answered_units.values()), rel=1e-9)
    # The counters are kept apart from the records (one transaction each in DynamoDB): they
    # must add up to the same calls and units.
    for counter in (month, today):
        assert counter.calls == PREDICTIONS
        assert set(counter.units) == {"1k_tokens"}
        assert float(counter.units["1k_tokens"]) == pytest.approx(float(billed_units), rel=1e-9)
