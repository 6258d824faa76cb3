"""The cost report (``make cost``): no plan is billed below what a typical call costs in AWS.

It measures real calls (authorizer, inference handler, stream aggregator on moto, real models)
and reads memory and tracing from a synthesis of the dev stage, so a price cut, a bigger
function or a chattier ledger that would sell calls below cost fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from aimaas_testing.paths import has_model
from benchmarks import cost

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip("no model registry; run `make models`")
    return cost.report("dev", calls=2)


def test_no_plan_is_billed_below_cost(result: dict[str, Any]) -> None:
    tasks = {row["task"] for row in result["rows"]}
    assert tasks >= {"embeddings", "text-classification", "image-classification"}
    for row in result["rows"]:
        assert not row["below_cost"], (row["task"], row["cost_usd"], row["price_usd"])


def test_the_measurement_sees_every_part(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        assert row["dynamodb"]["inference"]["write_units"] >= 1  # the ledger's put
        assert row["dynamodb"]["aggregator"]["write_units"] >= 2  # its transaction
        assert row["dynamodb"]["authorizer"]["read_units"] > 0  # key, tenant, month counter
        assert row["log_bytes"] > 0
        assert all(ms > 0 for ms in row["duration_ms"].values())
        assert row["cost_usd"]["total"] > cost.LIST_PRICES["api_gateway_rest_request"]
    assert result["functions"]["inference:text"]["memory_mb"] > 0


def test_capacity_units_follow_the_dynamodb_rules() -> None:
    item = {"pk": {"S": "x" * 1000}, "n": {"N": "12345"}}
    assert cost.item_size(item) == 2 + 1000 + 1 + 4
    assert cost.write_units(cost.item_size(item)) == 1
    assert cost.write_units(1025) == 2 and cost.write_units(10, transactional=True) == 2
    assert cost.read_units(4096, consistent=False) == 0.5
    assert cost.read_units(4097, consistent=True) == 2
