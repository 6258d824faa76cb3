"""The gateway never refuses what a plan's contract allows: every plan's API Gateway quota and
throttle (and the stage's default throttle above them) allow at least its hard monthly limit,
read from plans.toml, even in the shortest month."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from infra.stacks.api import DEFAULT_BURST_LIMIT, DEFAULT_RATE_LIMIT

PLANS_TOML = Path(__file__).resolve().parents[3] / "src" / "aimaas" / "data" / "plans.toml"
PLANS = tomllib.loads(PLANS_TOML.read_text())["plans"]
SHORTEST_MONTH_DAYS = 28
#: Quota periods in the shortest month.
PERIODS_PER_MONTH = {"DAY": SHORTEST_MONTH_DAYS, "WEEK": SHORTEST_MONTH_DAYS // 7, "MONTH": 1}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_quota_allows_the_hard_limit(name: str) -> None:
    plan = PLANS[name]
    quota = plan["quota"]
    monthly = quota["limit"] * PERIODS_PER_MONTH[quota["period"].upper()]
    assert monthly >= plan["hard_limits"]["monthly_requests"], name


@pytest.mark.parametrize("name", sorted(PLANS))
def test_throttle_allows_the_hard_limit_and_the_stage_allows_the_throttle(name: str) -> None:
    plan = PLANS[name]
    rate, burst = plan["throttle"]["rate_limit"], plan["throttle"]["burst_limit"]
    assert rate * SHORTEST_MONTH_DAYS * 86_400 >= plan["hard_limits"]["monthly_requests"]
    assert burst >= rate, name  # a bucket smaller than one second's rate throttles below it
    # The stage's per-method default applies to every caller together: it must not bind first.
    assert rate <= DEFAULT_RATE_LIMIT and burst <= DEFAULT_BURST_LIMIT, name
