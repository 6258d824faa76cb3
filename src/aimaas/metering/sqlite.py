"""SQLite usage ledger (local mode and tests).

One database file may hold the key store, the ledger and the audit log. WAL mode lets readers
run while one writer writes; every ``put`` is one ``BEGIN IMMEDIATE`` transaction that inserts
the record (``INSERT OR IGNORE`` on the primary key ``(tenant_id, request_id)``) and, only if
it was new, adds it to the day and month counters. Each thread gets its own connection.

Tables::

    usage_records(tenant_id, request_id, key_id, model, model_version, task, units, unit,
                  latency_ms, status, ts)            PRIMARY KEY (tenant_id, request_id)
    usage_counter_cells(tenant_id, period, bucket, task, model, unit, calls, units)
                              PRIMARY KEY (tenant_id, period, bucket, task, model, unit)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import (
    Period,
    UsageCell,
    UsageRecord,
    UsageTotals,
    day_bucket,
    iso,
    month_bucket,
)


class SqliteDatabase:
    """Thread-local SQLite connections to one file, in WAL mode, with a busy timeout.

    Parameters
    ----------
    path
        The database file; its folder is created if missing. ``:memory:`` is refused because
        each thread would get its own empty database.
    schema
        SQL run once (``CREATE TABLE IF NOT EXISTS ...``) when the object is made.
    """

    def __init__(self, path: Path | str, schema: str = "") -> None:
        if str(path) == ":memory:":
            raise ValueError("use a file path: each thread opens its own connection")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if schema:
            self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_records (
    tenant_id TEXT NOT NULL, request_id TEXT NOT NULL, key_id TEXT NOT NULL,
    model TEXT NOT NULL, model_version TEXT NOT NULL, task TEXT NOT NULL,
    units REAL NOT NULL, unit TEXT NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,
    ts TEXT NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX IF NOT EXISTS usage_records_by_time ON usage_records (tenant_id, ts);
CREATE TABLE IF NOT EXISTS usage_counter_cells (
    tenant_id TEXT NOT NULL, period TEXT NOT NULL, bucket TEXT NOT NULL, task TEXT NOT NULL,
    model TEXT NOT NULL, unit TEXT NOT NULL, calls INTEGER NOT NULL, units REAL NOT NULL,
    PRIMARY KEY (tenant_id, period, bucket, task, model, unit)
);
"""

_UPSERT_COUNTER = """
INSERT INTO usage_counter_cells (tenant_id, period, bucket, task, model, unit, calls, units)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (tenant_id, period, bucket, task, model, unit)
DO UPDATE SET calls = calls + 1, units = units + excluded.units
"""


def _record(row: sqlite3.Row) -> UsageRecord:
    return UsageRecord(
        request_id=row["request_id"],
        tenant_id=row["tenant_id"],
        key_id=row["key_id"],
        model=row["model"],
        model_version=row["model_version"],
        task=row["task"],
        units=row["units"],
        unit=row["unit"],
        latency_ms=row["latency_ms"],
        status=row["status"],
        timestamp=datetime.fromisoformat(row["ts"]),
    )


class SqliteLedger(UsageLedger):
    """The ledger in a SQLite file (see the module docstring for the tables)."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)

    def put(self, record: UsageRecord) -> bool:
        with self.db.transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO usage_records VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.tenant_id,
                    record.request_id,
                    record.key_id,
                    record.model,
                    record.model_version,
                    record.task,
                    float(record.units),
                    record.unit,
                    float(record.latency_ms),
                    int(record.status),
                    iso(record.timestamp),
                ),
            ).rowcount
            if not inserted:
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
                        float(record.units),
                    ),
                )
        return True

    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        row = (
            self.db.connection()
            .execute(
                "SELECT * FROM usage_records WHERE tenant_id = ? AND request_id = ?",
                (tenant_id, request_id),
            )
            .fetchone()
        )
        return _record(row) if row else None

    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT * FROM usage_records WHERE tenant_id = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts, request_id",
                (tenant_id, iso(start), iso(end)),
            )
            .fetchall()
        )
        return (_record(row) for row in rows)

    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        rows = (
            self.db.connection()
            .execute(
                "SELECT unit, SUM(calls) AS calls, SUM(units) AS units FROM usage_counter_cells "
                "WHERE tenant_id = ? AND period = ? AND bucket = ? GROUP BY unit",
                (tenant_id, period, bucket),
            )
            .fetchall()
        )
        return UsageTotals(
            calls=sum(row["calls"] for row in rows),
            units=MappingProxyType({row["unit"]: Decimal(str(row["units"])) for row in rows}),
        )

    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT bucket, task, model, unit, calls, units FROM usage_counter_cells "
                "WHERE tenant_id = ? AND period = 'day' AND bucket >= ? AND bucket <= ? "
                "ORDER BY bucket, task, model, unit",
                (tenant_id, first_day, last_day),
            )
            .fetchall()
        )
        return (
            UsageCell(
                day=row["bucket"],
                task=row["task"],
                model=row["model"],
                unit=row["unit"],
                calls=row["calls"],
                units=Decimal(str(row["units"])),
            )
            for row in rows
        )

    def close(self) -> None:
        self.db.close()
