"""The storage kit: records map themselves to rows and items, the SQLite pool stays bounded,
and a version-1 ledger file (REAL units) is migrated to exact units."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from aimaas.auth.keys import KeyRecord, Tenant
from aimaas.metering.records import UsageRecord
from aimaas.metering.sqlite import SqliteLedger
from aimaas.storage import SqliteDatabase
from aimaas.storage import dynamodb as ddb
from aimaas_admin.audit import AuditEvent

AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
RECORDS = [
    Tenant("t_1", "Acme", "pro", "active", AT),
    KeyRecord("k1", "t_1", "hmac-sha256:ab", created_at=AT, expires_at=AT, label="ci"),
    KeyRecord("k2", "t_1", "hmac-sha256:cd", created_at=AT),  # optional fields left None
    UsageRecord(
        "r1", "t_1", "k1", "m", "1.0.0", "embeddings", Decimal("0.017"), "1k_tokens", 12.5, 200, AT
    ),
    AuditEvent("key.create", "k1", "ops", "host", AT, {"plan": "pro", "n": 2}),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_records_round_trip_through_rows_and_items(record: object) -> None:
    assert type(record).from_row(record.to_row()) == record  # type: ignore[attr-defined]
    wire = ddb.to_wire(record.to_item())  # type: ignore[attr-defined]
    assert type(record).from_item(ddb.from_wire(wire)) == record  # type: ignore[attr-defined]
    assert None not in record.to_item().values()  # type: ignore[attr-defined]


def test_usage_units_are_exact_decimals() -> None:
    record = RECORDS[3]
    assert record.to_row()["units"] == "0.017000"
    assert record.to_row()["ts"] == "2026-03-04T05:06:07.891011+00:00"  # the column alias
    assert UsageRecord.from_row({**record.to_row(), "units": "0.1"}).units == Decimal("0.1")
    # A float computed by a caller is taken as the number it prints, to the micro-unit.
    assert replace(record, units=0.1 + 0.2).units == Decimal("0.3")


def test_pool_keeps_descriptors_bounded_over_short_lived_threads(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "x.db", "CREATE TABLE IF NOT EXISTS t (v INTEGER)", max_idle=3)
    barrier = threading.Barrier(12)

    def work() -> None:
        barrier.wait()
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (1)")

    for _ in range(5):  # five waves of twelve fresh threads
        threads = [threading.Thread(target=work) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert db.open_connections <= 3
    assert db.rows("SELECT COUNT(*) AS n FROM t")[0]["n"] == 60
    db.close()
    assert db.open_connections == 0


def test_a_version_1_ledger_file_is_migrated_to_exact_units(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE usage_records (tenant_id TEXT, request_id TEXT, key_id TEXT, model TEXT,
            model_version TEXT, task TEXT, units REAL, unit TEXT, latency_ms REAL,
            status INTEGER, ts TEXT, PRIMARY KEY (tenant_id, request_id));
        CREATE TABLE usage_counter_cells (tenant_id TEXT, period TEXT, bucket TEXT, task TEXT,
            model TEXT, unit TEXT, calls INTEGER, units REAL,
            PRIMARY KEY (tenant_id, period, bucket, task, model, unit));
        INSERT INTO usage_records VALUES ('t', 'r', 'k', 'm', '1', 'embeddings', 0.017,
            '1k_tokens', 1.0, 200, '2026-03-04T05:06:07.000000+00:00');
        INSERT INTO usage_counter_cells VALUES ('t', 'month', '2026-03', 'embeddings', 'm',
            '1k_tokens', 3, 1.7269999999999985);
        """
    )
    conn.close()
    ledger = SqliteLedger(path)
    assert ledger.get("t", "r").units == Decimal("0.017")  # type: ignore[union-attr]
    assert ledger.totals("t", "month", "2026-03").units == {"1k_tokens": Decimal("1.727")}
    SqliteLedger(path).close()  # a second open finds nothing to migrate
    ledger.close()
