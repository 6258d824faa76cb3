"""Summaries and invoice arithmetic (no storage)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from aimaas.metering import summarize
from aimaas.metering.invoice import REQUEST_FEE_LINE, build_invoice, render_csv, render_json
from aimaas.metering.records import UsageRecord, next_month_start
from aimaas.plans import load_catalog
from aimaas_testing.metering import sample_record

T0 = datetime(2026, 2, 27, 12, tzinfo=UTC)


def records() -> list[UsageRecord]:
    return [
        sample_record("a", timestamp=T0, units=1.5),
        sample_record("b", timestamp=T0 + timedelta(days=1), units=0.25),
        sample_record(
            "c",
            timestamp=T0,
            units=2,
            unit="image",
            task="image-classification",
            model="mobilenet-v2",
        ),
        sample_record("d", timestamp=T0 + timedelta(days=5), units=9),  # March: not on invoice
    ]


def test_summarize_groups_and_prices_exactly() -> None:
    catalog = load_catalog()
    summary = summarize(records()[:3], "pro", ["task"], catalog)
    by_task = {line.group["task"]: line for line in summary.lines}
    pro = catalog.plan("pro").price_multiplier
    assert by_task["embeddings"].calls == 2
    assert by_task["embeddings"].units == Decimal("1.75")
    fee = catalog.request_fee_usd
    assert fee > 0
    assert by_task["embeddings"].cost == (
        (Decimal("1.75") * catalog.task_prices["embeddings"].usd + 2 * fee) * pro
    )
    assert by_task["image-classification"].cost == (
        (2 * catalog.task_prices["image-classification"].usd + 1 * fee) * pro
    )
    assert summary.cost == sum(line.cost for line in summary.lines)
    with pytest.raises(ValueError, match="cannot group"):
        summarize([], "pro", ["tenant"])


def test_invoice_lines_days_and_total() -> None:
    catalog = load_catalog()
    invoice = build_invoice(
        records(),
        tenant_id="t-test",
        tenant_name="Test",
        plan="free",
        month="2026-02",
        catalog=catalog,
    )
    assert invoice.total_calls == 3
    assert len(invoice.days) == 28
    assert sum(d.calls for d in invoice.days) == 3
    assert sum(d.cost for d in invoice.days) == invoice.total
    expected = (
        Decimal("1.75") * catalog.task_prices["embeddings"].usd
        + 2 * catalog.task_prices["image-classification"].usd
        + 3 * catalog.request_fee_usd  # the free plan's multiplier is 1
    )
    (fee_line,) = [line for line in invoice.lines if line.task == REQUEST_FEE_LINE]
    assert (fee_line.calls, fee_line.unit, fee_line.amount) == (
        3,
        "call",
        3 * catalog.request_fee_usd,
    )
    assert invoice.total == expected
    assert invoice.amount_due == expected.quantize(Decimal("0.01"))
    assert Decimal(json.loads(render_json(invoice))["total"]) == expected
    assert Decimal(render_csv(invoice).splitlines()[-1].split(",")[7]) == expected


def test_next_month_start_rolls_over_the_year() -> None:
    assert next_month_start(datetime(2026, 12, 31, 23, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_a_generation_is_one_invoice_line_of_its_token_charge() -> None:
    catalog = load_catalog()
    charge = catalog.token_charge("text-generation", 26, 8)  # both prices, one exact quantity
    generation = sample_record(
        "g", timestamp=T0, units=charge, unit="micro_usd", task="text-generation", model="qwen"
    )
    invoice = build_invoice(
        [generation], tenant_id="t", tenant_name="T", plan="pro", month="2026-02", catalog=catalog
    )
    (line,) = [line for line in invoice.lines if line.task == "text-generation"]
    pro = catalog.plan("pro").price_multiplier
    assert (line.unit, line.quantity, line.calls) == ("micro_usd", charge, 1)
    assert line.amount == charge * Decimal("0.000001") * pro
    assert invoice.total == line.amount + catalog.request_fee_usd * pro
    summary = summarize([generation], "pro", ["task"], catalog)
    assert summary.cost == invoice.total
