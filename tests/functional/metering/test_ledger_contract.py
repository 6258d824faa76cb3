"""The usage-ledger contract, run against both adapters (SQLite and DynamoDB on moto)."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aimaas.config import Settings
from aimaas.metering import UsageLedger, summarize, usage_summary
from aimaas.metering.aggregator import StreamAggregator
from aimaas.metering.dynamodb import DynamoDbLedger
from aimaas.metering.layout import RECORD_SHARDS, shard_of
from aimaas.wiring import build_ledger
from aimaas_testing.metering import MOTO_TABLES, StreamPump, moto_tables, sample_record

T0 = datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC)


def test_put_is_idempotent_per_tenant_and_request_id(ledger: UsageLedger) -> None:
    record = sample_record("req-1", timestamp=T0, units=2.5)
    assert ledger.put(record) is True
    assert ledger.put(record) is False
    # The same id from another tenant is a different call.
    assert ledger.put(sample_record("req-1", tenant_id="t-other", timestamp=T0)) is True
    assert ledger.get("t-test", "req-1") == record
    assert ledger.get("t-test", "missing") is None
    totals = ledger.totals("t-test", "day", "2026-01-31")
    assert totals.calls == 1
    assert totals.units == {"1k_tokens": Decimal("2.5")}


def test_counters_split_by_day_month_and_unit(ledger: UsageLedger) -> None:
    ledger.put(sample_record("a", timestamp=T0, units=1.25))
    ledger.put(sample_record("b", timestamp=T0 + timedelta(minutes=2), units=0.5))  # Feb 1st
    ledger.put(sample_record("c", timestamp=T0, units=3, unit="image", task="image-classification"))
    assert ledger.totals("t-test", "day", "2026-01-31").calls == 2
    assert ledger.totals("t-test", "day", "2026-02-01").units == {"1k_tokens": Decimal("0.5")}
    january = ledger.totals("t-test", "month", "2026-01")
    assert january.calls == 2
    assert january.units == {"1k_tokens": Decimal("1.25"), "image": Decimal("3")}
    assert ledger.month_calls("t-test", T0) == 2
    assert ledger.month_calls("t-test", T0 + timedelta(days=1)) == 1
    assert ledger.totals("t-nobody", "month", "2026-01").calls == 0


def test_records_range_is_half_open_and_ordered(ledger: UsageLedger) -> None:
    stamps = [T0 - timedelta(days=40), T0 - timedelta(hours=1), T0, T0 + timedelta(days=3)]
    for i, stamp in enumerate(reversed(stamps)):
        ledger.put(sample_record(f"r{i}", timestamp=stamp))
    got = list(ledger.records("t-test", T0 - timedelta(days=45), T0))
    assert [r.timestamp for r in got] == stamps[:2]  # T0 itself is excluded
    got = list(ledger.records("t-test", T0, T0 + timedelta(days=30)))
    assert [r.timestamp for r in got] == stamps[2:]
    assert list(ledger.records("t-other", T0 - timedelta(days=99), T0 + timedelta(days=99))) == []


def test_dynamodb_layout_and_ttl_on_raw_records_only() -> None:
    with moto_tables():
        ledger = DynamoDbLedger(MOTO_TABLES["usage"], retention_days=10)
        ledger.put(sample_record("x", timestamp=T0))
        assert ledger.totals("t-test", "month", "2026-01").calls == 1  # the aggregator ran
        client = boto3.client("dynamodb")
        items = client.scan(TableName=MOTO_TABLES["usage"])["Items"]
        by_pk = {item["pk"]["S"]: item for item in items}
        copy = f"REC#t-test#2026-01#{shard_of('x', RECORD_SHARDS)}"
        assert set(by_pk) == {"REQ#t-test#x", copy, "CTR#t-test"}
        expected_ttl = int(T0.timestamp()) + 10 * 86400
        assert int(by_pk["REQ#t-test#x"]["expires_at"]["N"]) == expected_ttl
        assert int(by_pk[copy]["expires_at"]["N"]) == expected_ttl
        counters = [item for item in items if item["pk"]["S"] == "CTR#t-test"]
        assert {c["sk"]["S"].rsplit("#", 1)[0] for c in counters} == {
            "DAY#2026-01-31",
            "MONTH#2026-01",
        }
        assert all("expires_at" not in c for c in counters)
        ttl = client.describe_time_to_live(TableName=MOTO_TABLES["usage"])
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def _count_calls(client: Any) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.*",
        lambda params, model, **_: calls.append(model.name),
    )
    return calls


def test_dynamodb_put_is_one_conditional_put_of_one_write_unit() -> None:
    """The hot path is one PutItem of a record under 1 KB (one write unit): it was a
    TransactWriteItems of four items (eight write units)."""
    with moto_tables(aggregate=False):
        client = boto3.client("dynamodb")
        calls = _count_calls(client)
        ledger = DynamoDbLedger(MOTO_TABLES["usage"], client=client)
        assert ledger.put(sample_record("one", timestamp=T0)) is True
        assert ledger.put(sample_record("one", timestamp=T0)) is False
        assert calls == ["PutItem", "PutItem"]
        (item,) = client.scan(TableName=MOTO_TABLES["usage"])["Items"]
        assert len(json.dumps(item)) < 1024


def test_dynamodb_aggregator_counts_each_record_once_however_often_it_is_delivered() -> None:
    """A stream delivers at least once, and a batch may come again cut differently: every
    record is counted once."""
    with moto_tables(aggregate=False):
        ledger = DynamoDbLedger(MOTO_TABLES["usage"])
        records = [
            sample_record(f"s{i}", timestamp=T0, units=0.25 * (i % 3 + 1)) for i in range(60)
        ]
        for record in records:
            ledger.put(record)
        pump = StreamPump(MOTO_TABLES["usage"], "us-east-1", batch_size=7, redeliver_every=1)
        assert pump.drain() == 60
        aggregator = StreamAggregator(MOTO_TABLES["usage"])
        assert aggregator.aggregate(records[10:40]) == 0  # a later, overlapping redelivery
        assert aggregator.aggregate(reversed(records)) == 0
        totals = ledger.totals("t-test", "day", "2026-01-31")
        assert totals.calls == 60
        assert totals.units["1k_tokens"] == sum((r.units for r in records), Decimal(0))
        listed = list(ledger.records("t-test", T0 - timedelta(days=1), T0 + timedelta(days=1)))
        assert sorted(r.request_id for r in listed) == sorted(r.request_id for r in records)


def test_dynamodb_failed_aggregation_leaves_nothing_and_a_redelivery_counts_once() -> None:
    """A chunk's copies and counters are one transaction: a failing counter update (the daily
    counter holds a string, so ADD fails) leaves no copy and no count; once the fault is gone,
    the stream's next delivery counts the record exactly once."""
    with moto_tables(aggregate=False):
        client = boto3.client("dynamodb")
        ledger = DynamoDbLedger(MOTO_TABLES["usage"])
        record = sample_record("y", timestamp=T0)
        assert ledger.put(record) is True  # the hot path never touches counters
        shard = f"{zlib.crc32(b'y') % 8:02d}"
        broken = {"pk": {"S": "CTR#t-test"}, "sk": {"S": f"DAY#2026-01-31#{shard}"}}
        client.put_item(TableName=MOTO_TABLES["usage"], Item={**broken, "calls": {"S": "x"}})
        aggregator = StreamAggregator(MOTO_TABLES["usage"], attempts=2, sleep=lambda _: None)
        with pytest.raises(ClientError):
            aggregator.aggregate([record])
        assert ledger.get("t-test", "y") == record
        assert list(ledger.records("t-test", T0 - timedelta(days=1), T0 + timedelta(days=1))) == []
        assert ledger.totals("t-test", "month", "2026-01").calls == 0
        client.delete_item(TableName=MOTO_TABLES["usage"], Key=broken)
        assert aggregator.aggregate([record]) == 1
        assert aggregator.aggregate([record]) == 0
        assert ledger.totals("t-test", "month", "2026-01").calls == 1


def test_reservations_admit_up_to_the_allowance_atomically(ledger: UsageLedger) -> None:
    month = "2026-01"
    results = [ledger.reserve("t-test", month, 100, 5) for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    ledger.release("t-test", month, 100)
    assert ledger.reserve("t-test", month, 100, 99) is True  # the first allowance holds
    assert ledger.reserve("t-test", month, 100, 99) is False
    # Another limit (a plan change) or month is another reservation.
    assert ledger.reserve("t-test", month, 200, 1) is True
    assert ledger.reserve("t-test", "2026-02", 100, 1) is True
    assert ledger.reserve("t-other", month, 100, 0) is False


def test_exact_units_end_to_end(ledger: UsageLedger) -> None:
    """Decimal units, summed by counters as exactly as by hand (REAL sums gave
    1.7269999999999985 on an invoice)."""
    parts = ["0.017", "0.109", "1.601"] * 3
    for i, units in enumerate(parts):
        ledger.put(sample_record(f"u{i}", timestamp=T0, units=Decimal(units)))
    expected = sum((Decimal(u) for u in parts), Decimal(0))
    assert ledger.totals("t-test", "month", "2026-01").units["1k_tokens"] == expected
    (cell,) = ledger.daily_cells("t-test", "2026-01-31", "2026-01-31")
    assert str(cell.units.normalize()) == "5.181"
    records = list(ledger.records("t-test", T0 - timedelta(days=1), T0 + timedelta(days=1)))
    assert sum((r.units for r in records), Decimal(0)) == expected
    assert all(isinstance(r.units, Decimal) for r in records)


def test_build_ledger_by_name(tmp_path) -> None:
    sqlite = build_ledger(Settings(ledger="sqlite", sqlite_path=tmp_path / "x.db"))
    assert type(sqlite).__name__ == "SqliteLedger"
    with pytest.raises(ValueError, match="unknown ledger"):
        build_ledger(Settings(ledger="postgres"))
    with pytest.raises(ValueError, match="AIMAAS_USAGE_TABLE"):
        build_ledger(Settings(ledger="dynamodb"))


def test_daily_cells_and_both_summary_paths_agree(ledger: UsageLedger) -> None:
    specs = [
        ("a", T0, 1.25, "1k_tokens", "embeddings", "all-minilm-l6-v2"),
        ("b", T0 + timedelta(minutes=2), 0.5, "1k_tokens", "embeddings", "all-minilm-l6-v2"),
        ("c", T0, 0.75, "1k_tokens", "embeddings", "all-minilm-l6-v2-int8"),
        ("d", T0, 3, "image", "image-classification", "mobilenet-v2"),
        ("e", T0 - timedelta(days=3), 2, "image", "image-classification", "mobilenet-v2"),
    ]
    for request_id, stamp, units, unit, task, model in specs:
        ledger.put(
            sample_record(
                request_id, timestamp=stamp, units=units, unit=unit, task=task, model=model
            )
        )
    ledger.put(sample_record("a", timestamp=T0, units=99))  # a duplicate changes nothing
    cells = list(ledger.daily_cells("t-test", "2026-01-28", "2026-01-31"))
    assert [(c.day, c.model, c.calls, c.units) for c in cells] == [
        ("2026-01-28", "mobilenet-v2", 1, Decimal("2")),
        ("2026-01-31", "all-minilm-l6-v2", 1, Decimal("1.25")),
        ("2026-01-31", "all-minilm-l6-v2-int8", 1, Decimal("0.75")),
        ("2026-01-31", "mobilenet-v2", 1, Decimal("3")),
    ]
    assert [c.day for c in ledger.daily_cells("t-test", "2026-02-01", "2026-02-01")] == [
        "2026-02-01"
    ]
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    for group_by in (["day"], ["model"], ["task", "day"], ["day", "model", "task"]):
        from_cells = usage_summary(ledger, "t-test", "pro", start, end, group_by)
        from_records = summarize(ledger.records("t-test", start, end), "pro", group_by)
        assert from_cells == from_records
    # A time of day, or a finer grouping, reads the records.
    partial = usage_summary(ledger, "t-test", "pro", T0 + timedelta(minutes=1), end, ["day"])
    assert partial.calls == 1
    by_key = usage_summary(ledger, "t-test", "pro", start, end, ["key"])
    assert by_key.calls == 5
