"""Metering end to end: N successful calls are N calls in the API's usage and the admin's."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.e2e.support import CHINESE, ENGLISH, REPO, AdminCli, Target, Tenant

N_EMBED = 3
N_CLASSIFY = 2


def _expected_cost(usages: list[dict[str, Any]], plan: str) -> Decimal:
    """Units x list price x the plan's multiplier, read from config/plans.toml directly."""
    prices = tomllib.loads((REPO / "config" / "plans.toml").read_text())
    multiplier = Decimal(str(prices["plans"][plan]["price_multiplier"]))
    total = Decimal(0)
    for usage in usages:
        model = usage["model"].split("@")[0]
        price = prices["prices"]["models"].get(model) or prices["prices"]["tasks"][usage["task"]]
        assert usage["unit"] == price["unit"]
        total += Decimal(str(usage["units"])) * Decimal(str(price["usd"])) * multiplier
    return total


def test_usage_counts_exactly_the_successful_calls(
    new_tenant: Callable[[], Tenant],
    admin: AdminCli,
    call: Callable[..., requests.Response],
    target: Target,
) -> None:
    tenant = new_tenant()
    usages: list[dict[str, Any]] = []
    for i in range(N_EMBED):
        response = call("POST", "/v1/text-classification", key=tenant.key, json={"text": ENGLISH})
        assert response.status_code == 200, response.text
        usages.append(
            {
                **response.json()["usage"],
                "task": "text-classification",
                "model": response.json()["model"],
            }
        )
        del i
    for text in [CHINESE] * N_CLASSIFY:
        response = call("POST", "/v1/text-classification", key=tenant.key, json={"text": text})
        assert response.status_code == 200, response.text
    # A failed call (bad input) must not be billed.
    bad = call("POST", "/v1/text-classification", key=tenant.key, json={"text": ""})
    assert bad.status_code == 422, bad.text

    n = N_EMBED + N_CLASSIFY
    api = call("GET", "/v1/usage", key=tenant.key)
    assert api.status_code == 200, api.text
    assert api.json()["total"]["calls"] == n, api.json()
    from_admin = admin.usage(tenant.tenant_id)
    assert from_admin["total"]["calls"] == n, from_admin
    pytest.approx(float(_expected_cost(usages, tenant.plan)))
