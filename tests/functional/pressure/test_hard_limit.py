"""Issue 13 item 6: the hard monthly limit holds under concurrent calls at the boundary.

Before the fix, a free tenant at 9,995 of 10,000 that sent 40 calls at once ended at 10,010:
every call read the counter before any of them was recorded. Now calls near the limit are
admitted one at a time through the ledger's reservation, and in one process none overshoot.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from aimaas.metering.sqlite import SqliteLedger
from aimaas_testing.metering import bump_sqlite_month_counter
from tests.functional.pressure.support import (
    LiveServer,
    assert_error_shape,
    require_model,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

LIMIT = 10_000  # plans.toml: the free plan's hard_limits.monthly_requests
USED = 9_995
CONCURRENT = 40


@pytest.fixture(scope="module")
def free_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_model("all-minilm-l6-v2-int8")
    server = start_server(tmp_path_factory.mktemp("hard-limit"), tenants={"f": "free", "g": "free"})
    try:
        yield server
    finally:
        stop_server(server)


def _month_calls(server: LiveServer, tenant_id: str) -> int:
    ledger = SqliteLedger(server.db_path)
    try:
        return ledger.month_calls(tenant_id)
    finally:
        ledger.close()


def test_concurrent_calls_at_the_limit_never_pass_it(free_server: LiveServer) -> None:
    tenant_id = free_server.tenants["f"].tenant_id
    bump_sqlite_month_counter(free_server.db_path, tenant_id, USED, datetime.now(UTC))
    start = threading.Barrier(CONCURRENT)

    def one(index: int) -> httpx.Response:
        with free_server.client("f") as client:
            start.wait()
            return client.post("/v1/embeddings", json={"input": f"call number {index}"})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(one, range(CONCURRENT)))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: LIMIT - USED, 429: CONCURRENT - (LIMIT - USED)}, statuses
    for response in responses:
        if response.status_code == 429:
            assert assert_error_shape(response)["code"] == "quota_exceeded"
            assert int(response.headers["retry-after"]) > 0
    assert _month_calls(free_server, tenant_id) == LIMIT
    assert len(free_server.records("f")) == LIMIT - USED


def test_at_the_limit_usage_is_still_readable(free_server: LiveServer) -> None:
    with free_server.client("f") as client:
        assert client.post("/v1/embeddings", json={"input": "one more"}).status_code == 429
        assert client.get("/v1/usage").status_code == 200


def test_a_refused_call_near_the_limit_gives_its_slot_back(free_server: LiveServer) -> None:
    tenant_id = free_server.tenants["g"].tenant_id
    bump_sqlite_month_counter(free_server.db_path, tenant_id, LIMIT - 1, datetime.now(UTC))
    with free_server.client("g") as client:
        for _ in range(3):  # each takes the last slot, fails, and hands it back
            assert client.post("/v1/embeddings", json={"input": ""}).status_code == 422
        assert client.post("/v1/embeddings", json={"input": "the last call"}).status_code == 200
        assert client.post("/v1/embeddings", json={"input": "one too many"}).status_code == 429
    assert _month_calls(free_server, tenant_id) == LIMIT
