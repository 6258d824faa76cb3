"""The usage-ledger contract, run against both adapters (SQLite and DynamoDB on moto)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError

from aimaas.config import Settings
from aimaas.metering import UsageLedger, summarize, usage_summary
from aimaas.metering.dynamodb import DynamoDbLedger
from aimaas.wiring import build_ledger
from aimaas_testing.metering import MOTO_TABLES, moto_tables, sample_record

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
        client = boto3.client("dynamodb")
        items = client.scan(TableName=MOTO_TABLES["usage"])["Items"]
        by_pk = {item["pk"]["S"]: item for item in items}
        assert set(by_pk) == {"REQ#t-test#x", "REC#t-test#2026-01", "CTR#t-test"}
        expected_ttl = int(T0.timestamp()) + 10 * 86400
        assert int(by_pk["REQ#t-test#x"]["expires_at"]["N"]) == expected_ttl
        assert int(by_pk["REC#t-test#2026-01"]["expires_at"]["N"]) == expected_ttl
        counters = [item for item in items if item["pk"]["S"] == "CTR#t-test"]
        shard = f"{zlib.crc32(b'x') % 8:02d}"
        assert {c["sk"]["S"] for c in counters} == {
            f"DAY#2026-01-31#{shard}",
            f"MONTH#2026-01#{shard}",
        }
        assert all("expires_at" not in c for c in counters)
        ttl = client.describe_time_to_live(TableName=MOTO_TABLES["usage"])
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_dynamodb_failed_transaction_leaves_nothing() -> None:
    """The record and its counters are one transaction: a failing counter update (here the
    daily counter holds a string, so ADD fails) cancels the record too."""
    shard = f"{zlib.crc32(b'y') % 8:02d}"
    with moto_tables():
        client = boto3.client("dynamodb")
        client.put_item(
            TableName=MOTO_TABLES["usage"],
            Item={
                "pk": {"S": "CTR#t-test"},
                "sk": {"S": f"DAY#2026-01-31#{shard}"},
                "calls": {"S": "x"},
            },
        )
        ledger = DynamoDbLedger(MOTO_TABLES["usage"])
        with pytest.raises(ClientError):
            ledger.put(sample_record("y", timestamp=T0))
        assert ledger.get("t-test", "y") is None
        assert list(ledger.records("t-test", T0 - timedelta(days=1), T0 + timedelta(days=1))) == []
        assert ledger.totals("t-test", "month", "2026-01").calls == 0


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
