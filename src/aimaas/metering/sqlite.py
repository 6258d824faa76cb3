"""SQLite usage ledger (local mode and tests).

One database file may hold the key store, the ledger and the audit log. WAL mode lets readers
run while one writer writes; every ``put`` is one ``BEGIN IMMEDIATE`` transaction that inserts
the record (``INSERT OR IGNORE`` on the primary key ``(tenant_id, request_id)``) and, only if
it was new, adds it to the day and month counters, so counters here are never behind.

Quantities are exact: a record keeps its units as a decimal string, a counter as an integer
count of micro-units (``units_micro``), so sums never pick up binary floating-point error
(version 1 of this file kept REAL columns: an invoice read ``1.7269999999999985``; it is
migrated on open).

Tables (record columns named as :class:`~aimaas.metering.UsageRecord`'s fields)::

    usage_records(tenant_id, request_id, key_id, model, model_version, task, units, unit,
                  latency_ms, status, ts)            PRIMARY KEY (tenant_id, request_id)
    usage_counter_cells(tenant_id, period, bucket, task, model, unit, calls, units_micro)
                              PRIMARY KEY (tenant_id, period, bucket, task, model, unit)
    usage_reservations(tenant_id, month, monthly_limit, allowance, admitted)
                              PRIMARY KEY (tenant_id, month, monthly_limit)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import (
    Period,
    UsageCell,
    UsageRecord,
    UsageTotals,
    day_bucket,
    from_micro,
    iso,
    month_bucket,
    to_micro,
)
from aimaas.storage import SqliteDatabase
from aimaas.storage.sqlite import insert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_records (
    tenant_id TEXT NOT NULL, request_id TEXT NOT NULL, key_id TEXT NOT NULL,
    model TEXT NOT NULL, model_version TEXT NOT NULL, task TEXT NOT NULL,
    units TEXT NOT NULL, unit TEXT NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,
    ts TEXT NOT NULL, request_digest TEXT,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX IF NOT EXISTS usage_records_by_time ON usage_records (tenant_id, ts);
CREATE TABLE IF NOT EXISTS usage_counter_cells (
    tenant_id TEXT NOT NULL, period TEXT NOT NULL, bucket TEXT NOT NULL, task TEXT NOT NULL,
    model TEXT NOT NULL, unit TEXT NOT NULL, calls INTEGER NOT NULL,
    units_micro INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, period, bucket, task, model, unit)
);
CREATE TABLE IF NOT EXISTS usage_reservations (
    tenant_id TEXT NOT NULL, month TEXT NOT NULL, monthly_limit INTEGER NOT NULL,
    allowance INTEGER NOT NULL, admitted INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month, monthly_limit)
);
"""

_UPSERT_COUNTER = """
INSERT INTO usage_counter_cells
    (tenant_id, period, bucket, task, model, unit, calls, units_micro)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (tenant_id, period, bucket, task, model, unit)
DO UPDATE SET calls = calls + 1, units_micro = units_micro + excluded.units_micro
"""

_RESERVE = """
INSERT INTO usage_reservations (tenant_id, month, monthly_limit, allowance, admitted)
VALUES (?, ?, ?, ?, 1)
ON CONFLICT (tenant_id, month, monthly_limit)
DO UPDATE SET admitted = admitted + 1 WHERE admitted < allowance
"""


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    return {row[1]: row[2].upper() for row in conn.execute(f"PRAGMA table_info({table})")}


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Version 1 kept units as REAL: move both tables aside and copy them exactly once."""
    records, cells = _columns(conn, "usage_records"), _columns(conn, "usage_counter_cells")
    if records.get("units") != "REAL" and "units" not in cells:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE usage_records RENAME TO usage_records_v1")
        conn.execute("DROP INDEX IF EXISTS usage_records_by_time")
        conn.execute("ALTER TABLE usage_counter_cells RENAME TO usage_counter_cells_v1")
        for statement in _SCHEMA.split(";"):  # executescript would COMMIT half-way
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO usage_records (tenant_id, request_id, key_id, model, model_version,"
            " task, units, unit, latency_ms, status, ts) SELECT tenant_id, request_id, key_id,"
            " model,"
            " model_version, task, printf('%.6f', units), unit, latency_ms, status, ts"
            " FROM usage_records_v1"
        )
        conn.execute(
            "INSERT INTO usage_counter_cells SELECT tenant_id, period, bucket, task, model, unit,"
            " calls, CAST(ROUND(units * 1000000) AS INTEGER) FROM usage_counter_cells_v1"
        )
        conn.execute("DROP TABLE usage_records_v1")
        conn.execute("DROP TABLE usage_counter_cells_v1")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older file up to the current tables (each step runs only where it is due)."""
    _migrate_v1(conn)
    records = _columns(conn, "usage_records")
    if records and "request_digest" not in records:  # version 2: no request digest
        conn.execute("ALTER TABLE usage_records ADD COLUMN request_digest TEXT")


class SqliteLedger(UsageLedger):
    """The ledger in a SQLite file (see the module docstring for the tables)."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA, migrate=_migrate)

    def put(self, record: UsageRecord) -> bool:
        with self.db.transaction() as conn:
            if not insert(conn, "usage_records", record, or_ignore=True):
                return False
            for period, key in (
                ("day", day_bucket(record.timestamp)),
                ("month", month_bucket(record.timestamp)),
            ):
                conn.execute(
                    _UPSERT_COUNTER,
                    (
                        record.tenant_id,
                        period,
                        key,
                        record.task,
                        record.model,
                        record.unit,
                        to_micro(record.units),
                    ),
                )
        return True

    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        found = self.db.select(
            UsageRecord,
            "SELECT * FROM usage_records WHERE tenant_id = ? AND request_id = ?",
            (tenant_id, request_id),
        )
        return found[0] if found else None

    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        return iter(
            self.db.select(
                UsageRecord,
                "SELECT * FROM usage_records WHERE tenant_id = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts, request_id",
                (tenant_id, iso(start), iso(end)),
            )
        )

    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        rows = self.db.rows(
            "SELECT unit, SUM(calls) AS calls, SUM(units_micro) AS units_micro"
            " FROM usage_counter_cells WHERE tenant_id = ? AND period = ? AND bucket = ?"
            " GROUP BY unit",
            (tenant_id, period, bucket),
        )
        return UsageTotals(
            calls=sum(row["calls"] for row in rows),
            units=MappingProxyType({row["unit"]: from_micro(row["units_micro"]) for row in rows}),
        )

    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        rows = self.db.rows(
            "SELECT bucket, task, model, unit, calls, units_micro FROM usage_counter_cells "
            "WHERE tenant_id = ? AND period = 'day' AND bucket >= ? AND bucket <= ? "
            "ORDER BY bucket, task, model, unit",
            (tenant_id, first_day, last_day),
        )
        return (
            UsageCell(
                day=row["bucket"],
                task=row["task"],
                model=row["model"],
                unit=row["unit"],
                calls=row["calls"],
                units=from_micro(row["units_micro"]),
            )
            for row in rows
        )

    def reserve(self, tenant_id: str, month: str, limit: int, allowance: int) -> bool:
        if allowance < 1:
            return False
        with self.db.transaction() as conn:
            return bool(conn.execute(_RESERVE, (tenant_id, month, limit, allowance)).rowcount)

    def release(self, tenant_id: str, month: str, limit: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE usage_reservations SET admitted = admitted - 1 WHERE tenant_id = ?"
                " AND month = ? AND monthly_limit = ? AND admitted > 0",
                (tenant_id, month, limit),
            )

    def close(self) -> None:
        self.db.close()
