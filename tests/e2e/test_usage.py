"""Metering end to end: N successful calls are exactly N billed calls, priced per the plan,
in the tenant's own ``GET /v1/usage`` and in the operator's ``admin usage`` alike."""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.e2e.support import CHINESE, ENGLISH, REPO, AdminCli, Tenant

# (route, body, task): a mix of tasks so the per-task prices and units both show.
CALLS = [
    ("/v1/text-classification", {"text": ENGLISH}, "text-classification"),
    ("/v1/text-classification", {"text": CHINESE}, "text-classification"),
    ("/v1/text-classification", {"text": [ENGLISH, CHINESE]}, "text-classification"),
    ("/v1/embeddings", {"input": ENGLISH}, "embeddings"),
    ("/v1/embeddings", {"input": [CHINESE, ENGLISH]}, "embeddings"),
]


def _list_price(task: str, model: str) -> tuple[str, float]:
    """(unit, USD per unit) read from plans.toml here, not through the platform's code."""
    prices = tomllib.loads((REPO / "src/aimaas/data/plans.toml").read_text())["prices"]
    price = prices.get("models", {}).get(task, {}).get(model) or prices["tasks"][task]
    return price["unit"], float(price["usd"])


def _request_fee() -> float:
    return float(
        tomllib.loads((REPO / "src/aimaas/data/plans.toml").read_text())["prices"].get(
            "request_fee_usd", 0
        )
    )


def _multiplier(plan: str) -> float:
    plans = tomllib.loads((REPO / "src/aimaas/data/plans.toml").read_text())["plans"]
    return float(plans[plan]["price_multiplier"])


@pytest.fixture(scope="module")
def metered(
    new_tenant: Callable[[], Tenant], call: Callable[..., requests.Response]
) -> tuple[Tenant, list[dict[str, Any]]]:
    """A fresh tenant, the successful calls it made (task, model, units) and one failed call."""
    tenant = new_tenant()
    made: list[dict[str, Any]] = []
    for path, body, task in CALLS:
        response = call("POST", path, key=tenant.key, json=body)
        assert response.status_code == 200, response.text
        document = response.json()
        made.append({"task": task, "model": document["model"], **document["usage"]})
    # A refused call (empty text: 422) is never billed.
    refused = call("POST", "/v1/text-classification", key=tenant.key, json={"text": ""})
    assert refused.status_code == 422, refused.text
    return tenant, made


def _expected(made: list[dict[str, Any]], plan: str) -> dict[str, dict[str, float]]:
    """Per task: calls, units and cost = (units x list price + the request fee) x the plan's
    multiplier."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "units": 0.0, "cost": 0.0})
    for usage in made:
        unit, usd = _list_price(usage["task"], usage["model"].split("@")[0])
        assert usage["unit"] == unit, usage
        row = out[usage["task"]]
        row["calls"] += 1
        row["units"] += usage["units"]
        row["cost"] += (usage["units"] * usd + _request_fee()) * _multiplier(plan)
    return dict(out)


def test_each_response_states_its_price(metered: tuple[Tenant, list[dict[str, Any]]]) -> None:
    tenant, made = metered
    for usage in made:
        unit, usd = _list_price(usage["task"], usage["model"].split("@")[0])
        assert usage["unit"] == unit
        assert usage["units"] > 0
        expected = (usage["units"] * usd + _request_fee()) * _multiplier(tenant.plan)
        assert usage["price_usd"] == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_usage_api_counts_exactly_the_successful_calls(
    metered: tuple[Tenant, list[dict[str, Any]]], call: Callable[..., requests.Response]
) -> None:
    tenant, made = metered
    response = call("GET", "/v1/usage?group_by=task", key=tenant.key)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["tenant_id"] == tenant.tenant_id
    assert report["plan"] == tenant.plan
    assert report["total_calls"] == len(CALLS)
    expected = _expected(made, tenant.plan)
    rows = {row["task"]: row for row in report["rows"]}
    assert set(rows) == set(expected)
    for task, want in expected.items():
        assert rows[task]["calls"] == want["calls"], rows[task]
        assert rows[task]["units"] == pytest.approx(want["units"], rel=1e-9)
        assert rows[task]["cost"] == pytest.approx(want["cost"], rel=1e-6, abs=1e-12)
    total = sum(row["cost"] for row in expected.values())
    assert report["total_cost"] == pytest.approx(total, rel=1e-6, abs=1e-12)
    assert Counter(u["task"] for u in made) == Counter(
        {task: int(row["calls"]) for task, row in rows.items()}
    )


def test_admin_usage_matches(metered: tuple[Tenant, list[dict[str, Any]]], admin: AdminCli) -> None:
    tenant, made = metered
    report = admin.usage(tenant.tenant_id, group_by="task")
    assert report["calls"] == len(CALLS), report
    assert report["plan"] == tenant.plan
    expected = _expected(made, tenant.plan)
    lines = {line["task"]: line for line in report["lines"]}
    assert set(lines) == set(expected)
    for task, want in expected.items():
        assert lines[task]["calls"] == want["calls"], lines[task]
        assert float(lines[task]["units"]) == pytest.approx(want["units"], rel=1e-9)
        assert float(lines[task]["cost"]) == pytest.approx(want["cost"], rel=1e-6, abs=1e-12)
    total = sum(row["cost"] for row in expected.values())
    assert float(report["cost"]) == pytest.approx(total, rel=1e-6, abs=1e-12)
