"""plans.toml as data: plans, prices, unit conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aimaas.config import load_toml
from aimaas.plans import (
    MICRO_USD,
    Price,
    load_catalog,
    parse_catalog,
    price,
    to_billing_units,
    usage_plan_name,
)


def test_every_plan_has_the_shape_the_cdk_app_reads() -> None:
    raw = load_toml("plans.toml")
    catalog = load_catalog()
    assert set(catalog.plans) == set(raw["plans"]) >= {"free", "pro", "enterprise"}
    for name, plan in catalog.plans.items():
        body = raw["plans"][name]
        assert plan.throttle.rate_limit == body["throttle"]["rate_limit"]
        assert plan.throttle.burst_limit == body["throttle"]["burst_limit"]
        assert plan.quota.limit == body["quota"]["limit"]
        assert plan.quota.period in {"DAY", "WEEK", "MONTH"}
        assert plan.monthly_requests == body["hard_limits"]["monthly_requests"]
        assert plan.throttle.burst_limit >= plan.throttle.rate_limit
    # Cheaper per unit as plans grow.
    multipliers = [catalog.plan(p).price_multiplier for p in ("free", "pro", "enterprise")]
    assert multipliers == sorted(multipliers, reverse=True)


def test_price_uses_model_override_then_task_and_plan_multiplier() -> None:
    catalog = load_catalog()
    model_price = catalog.model_prices["embeddings", "all-minilm-l6-v2"].usd
    task_price = catalog.task_prices["embeddings"].usd
    assert model_price != task_price
    pro = catalog.plan("pro").price_multiplier
    fee = catalog.request_fee_usd
    assert price("embeddings", "all-minilm-l6-v2", 3, "pro") == (3 * model_price + fee) * pro
    assert price("embeddings", "all-minilm-l6-v2-int8", 3, "pro") == (3 * task_price + fee) * pro
    # 2,500 tokens are 2.5 billing units of 1k tokens; four calls pay four fees.
    assert price("embeddings", "x", 2500, "free", "tokens", calls=4) == (
        Decimal("2.5") * task_price + 4 * fee
    )


def test_unknown_things_are_errors_not_guesses() -> None:
    with pytest.raises(KeyError, match="unknown plan"):
        price("embeddings", None, 1, "platinum")
    with pytest.raises(KeyError, match="no price"):
        price("translation", None, 1, "free")
    with pytest.raises(ValueError, match="cannot convert"):
        to_billing_units(1, "image", "1k_tokens")
    assert to_billing_units(1500, "audio_ms", "audio_second") == Decimal("1.5")


def test_parse_catalog_and_usage_plan_names() -> None:
    catalog = parse_catalog(
        {
            "plans": {
                "x": {
                    "throttle": {"rate_limit": 1, "burst_limit": 2},
                    "quota": {"limit": 3, "period": "DAY"},
                    "hard_limits": {"monthly_requests": 4},
                }
            },
            "prices": {"tasks": {"t": {"unit": "call", "usd": 0.1}}},
        }
    )
    assert catalog.plan("x").price_multiplier == 1
    assert catalog.price("t", None, 3, "x") == Decimal("0.3")  # exact, not 0.30000000000000004
    assert usage_plan_name("dev", "pro") == "aimaas-dev-pro"


def test_a_model_price_applies_only_to_its_task() -> None:
    catalog = load_catalog()
    embeddings = catalog.model_prices["embeddings", "all-minilm-l6-v2"]
    assert catalog.list_price("embeddings", "all-minilm-l6-v2") == embeddings
    # The same encoder scoring zero-shot labels is billed as text classification.
    assert catalog.list_price("text-classification", "all-minilm-l6-v2") == (
        catalog.task_prices["text-classification"]
    )


def test_a_model_price_outside_a_task_is_refused() -> None:
    raw = load_toml("plans.toml")
    flat = {**raw, "prices": {**raw["prices"], "models": {"m": {"unit": "image", "usd": 1}}}}
    with pytest.raises(ValueError, match=r"prices\.models\.m"):
        parse_catalog(flat)


def test_a_batch_line_pays_the_discounted_unit_price_and_the_whole_request_fee() -> None:
    from aimaas.plans import batch_task

    catalog = load_catalog()
    assert catalog.batch_discount == Decimal("0.5")
    assert batch_task("embeddings") == batch_task("embeddings+batch") == "embeddings+batch"
    for task, model in [("embeddings", "all-minilm-l6-v2"), ("audio-classification+vad", None)]:
        base = catalog.list_price(task, model)
        batch = catalog.list_price(batch_task(task), model)
        assert (batch.unit, batch.usd) == (base.unit, base.usd / 2)
        pro = catalog.plan("pro").price_multiplier
        fee = catalog.request_fee_usd
        assert catalog.price(batch_task(task), model, 4, "pro") == (4 * base.usd / 2 + fee) * pro
    with pytest.raises(KeyError, match="no price"):
        catalog.list_price("translation+batch")
    with pytest.raises(ValueError, match="batch_discount"):
        parse_catalog({"plans": {}, "prices": {"batch_discount": 1.5}})


def test_input_and_output_tokens_have_their_own_prices() -> None:
    catalog = load_catalog()
    prices = catalog.token_prices["text-generation"]
    assert prices.output_usd > prices.input_usd > 0  # decoding a token costs more than reading
    # 1,234 prompt and 56 completion tokens at list price, in millionths of a dollar, exactly.
    charge = catalog.token_charge("text-generation", 1234, 56)
    assert charge == (1234 * prices.input_usd + 56 * prices.output_usd) * 1000
    assert catalog.list_price("text-generation", "any-model") == Price(MICRO_USD, Decimal("1e-6"))
    # Billed like any quantity: the multiplier and the request fee apply on top.
    enterprise = catalog.plan("enterprise").price_multiplier
    assert catalog.price("text-generation", "m", charge, "enterprise") == (
        (charge / 1_000_000 + catalog.request_fee_usd) * enterprise
    )
    with pytest.raises(KeyError, match="no token prices"):
        catalog.token_charge("embeddings", 1, 1)


def test_each_plan_caps_the_completion_tokens_of_a_call() -> None:
    catalog = load_catalog()
    caps = [catalog.plan(p).max_completion_tokens for p in ("free", "pro", "enterprise")]
    assert all(caps) and caps == sorted(caps)  # type: ignore[type-var]
    raw = {
        "plans": {
            "x": {
                "throttle": {"rate_limit": 1, "burst_limit": 2},
                "quota": {"limit": 3, "period": "DAY"},
                "hard_limits": {"monthly_requests": 4},
                "max_completion_tokens": 0,
            }
        }
    }
    with pytest.raises(ValueError, match="max_completion_tokens"):
        parse_catalog(raw)
    del raw["plans"]["x"]["max_completion_tokens"]
    assert parse_catalog(raw).plan("x").max_completion_tokens is None
