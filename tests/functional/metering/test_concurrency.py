"""Many threads, duplicate request ids: the ledger holds each id once and counters = sums.

SQLite runs 32 threads x 2,000 records (64,000 puts). The DynamoDB adapter runs on moto, which
costs ~4 ms per transaction in-process (~11 ms under 32 contending threads), so it runs
32 threads x 64 records (2,048 puts) by default; AIMAAS_HAMMER_DDB_PER_THREAD=2000 runs the
full size (about 12 minutes on 2 cores).
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from aimaas.metering import UsageLedger
from aimaas.metering.dynamodb import DynamoDbLedger
from aimaas.metering.records import day_bucket, month_bucket
from aimaas.metering.sqlite import SqliteLedger
from aimaas_testing.metering import MOTO_TABLES, hammer, moto_tables

START = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)
END = datetime(2026, 6, 1, tzinfo=UTC)


def check_ledger_matches(ledger: UsageLedger, result, threads: int, per_thread: int) -> None:
    assert not result.failed
    assert result.sent == threads * per_thread
    # Every thread sends the same "shared-i" ids: exactly one of the racing writers wins.
    assert result.new == result.unique_ids
    assert result.duplicates == result.sent - len(result.unique_ids)
    day_calls: dict[tuple[str, str], int] = defaultdict(int)
    day_units: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    month_calls: dict[tuple[str, str], int] = defaultdict(int)
    seen = set()
    for tenant in ("t-a", "t-b"):
        for record in ledger.records(tenant, START, END):
            seen.add(f"{tenant}/{record.request_id}")
            day_calls[tenant, day_bucket(record.timestamp)] += 1
            day_units[tenant, day_bucket(record.timestamp)] += Decimal(str(record.units))
            month_calls[tenant, month_bucket(record.timestamp)] += 1
    assert len(seen) == sum(day_calls.values())  # no record twice
    assert seen == result.unique_ids
    for (tenant, day), calls in day_calls.items():
        totals = ledger.totals(tenant, "day", day)
        assert totals.calls == calls
        # Units are quarters: exact in binary floating point and in DynamoDB decimals.
        assert totals.units["1k_tokens"] == day_units[tenant, day]
    for (tenant, month), calls in month_calls.items():
        assert ledger.totals(tenant, "month", month).calls == calls
    for tenant in ("t-a", "t-b"):
        cells = {c.day: c for c in ledger.daily_cells(tenant, "2026-01-01", "2026-12-31")}
        assert {day: c.calls for day, c in cells.items()} == {
            day: n for (t, day), n in day_calls.items() if t == tenant
        }
        assert {day: c.units for day, c in cells.items()} == {
            day: u for (t, day), u in day_units.items() if t == tenant
        }
    assert len(month_calls) >= 2  # the run crosses a month boundary


@pytest.mark.slow
def test_sqlite_32_threads_x_2000(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "hammer.db")
    result = hammer(ledger.put, threads=32, per_thread=2000, start=START)
    check_ledger_matches(ledger, result, 32, 2000)
    assert len(result.unique_ids) > 57_000
    ledger.close()


@pytest.mark.slow
def test_dynamodb_32_threads() -> None:
    per_thread = int(os.environ.get("AIMAAS_HAMMER_DDB_PER_THREAD", "64"))
    with moto_tables():
        ledger = DynamoDbLedger(MOTO_TABLES["usage"])
        result = hammer(ledger.put, threads=32, per_thread=per_thread, start=START)
        check_ledger_matches(ledger, result, 32, per_thread)
