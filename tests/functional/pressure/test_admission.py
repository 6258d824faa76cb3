"""Issue 16: a flood gets clear 503s with Retry-After, is never billed for them, and full
service comes back once it passes (admission control, :mod:`aimaas.backends.admission`).

Before, every request ran its session at once: no request was ever refused, the tail grew
with the crowd, and one request of 1,200 ended in a reset connection.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.functional.pressure.support import (
    LiveServer,
    assert_error_shape,
    require_model,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

FLOOD = 24
#: 32 texts of ~200 tokens: a run long enough that the flood has to queue.
HEAVY = {"input": ["the quarterly report describes revenue growth in every region " * 20] * 32}


@pytest.fixture(scope="module")
def narrow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One run at a time, two callers queued at most, a short wait."""
    require_model("all-minilm-l6-v2-int8")
    server = start_server(
        tmp_path_factory.mktemp("admission"),
        env={
            "AIMAAS_MAX_CONCURRENT_RUNS": "1",
            "AIMAAS_MAX_WAITING_RUNS": "2",
            "AIMAAS_RUN_WAIT_S": "0.5",
        },
    )
    try:
        yield server
    finally:
        stop_server(server)


def test_a_flood_is_refused_clearly_then_served_again(narrow_server: LiveServer) -> None:
    start = threading.Barrier(FLOOD)

    def one(_: int) -> httpx.Response:
        with narrow_server.client() as client:
            start.wait()
            return client.post("/v1/embeddings", json=HEAVY)

    with ThreadPoolExecutor(FLOOD) as pool:
        responses = list(pool.map(one, range(FLOOD)))

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses  # no reset, no 500, no unbounded wait
    assert statuses[200] >= 1 and statuses[503] >= FLOOD // 2, statuses
    for response in responses:
        if response.status_code == 503:
            assert assert_error_shape(response)["code"] == "overloaded"
            assert int(response.headers["retry-after"]) >= 1
    assert len(narrow_server.records("a")) == statuses[200]  # refusals are not billed

    with narrow_server.client() as client:  # the flood is over: full service
        for _ in range(5):
            assert client.post("/v1/embeddings", json=HEAVY).status_code == 200
    assert len(narrow_server.records("a")) == statuses[200] + 5
