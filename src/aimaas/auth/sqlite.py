"""SQLite key store (local mode and tests); shares the database file with the ledger.

Tables::

    tenants(tenant_id PRIMARY KEY, name, plan, status, created_at)
    api_keys(key_id PRIMARY KEY, tenant_id, key_hash, status, created_at, last_used_at,
             expires_at, label, apigw_key_id, usage_identifier)
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from aimaas.auth.keys import KeyRecord, KeyStore, Tenant
from aimaas.metering.records import iso
from aimaas.metering.sqlite import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, key_hash TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, last_used_at TEXT, expires_at TEXT,
    label TEXT NOT NULL DEFAULT '', apigw_key_id TEXT, usage_identifier TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, created_at);
"""


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _tenant(row: sqlite3.Row) -> Tenant:
    return Tenant(
        tenant_id=row["tenant_id"],
        name=row["name"],
        plan=row["plan"],
        status=row["status"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        key_hash=row["key_hash"],
        status=row["status"],
        created_at=datetime.fromisoformat(row["created_at"]),
        last_used_at=_time(row["last_used_at"]),
        expires_at=_time(row["expires_at"]),
        label=row["label"],
        apigw_key_id=row["apigw_key_id"],
        usage_identifier=row["usage_identifier"],
    )


def _key_values(record: KeyRecord) -> tuple[object, ...]:
    return (
        record.tenant_id,
        record.key_hash,
        record.status,
        iso(record.created_at),
        iso(record.last_used_at) if record.last_used_at else None,
        iso(record.expires_at) if record.expires_at else None,
        record.label,
        record.apigw_key_id,
        record.usage_identifier,
        record.key_id,
    )


class SqliteKeyStore(KeyStore):
    """Tenants and keys in a SQLite file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)

    def create_tenant(self, tenant: Tenant) -> None:
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO tenants VALUES (?,?,?,?,?)",
                    (
                        tenant.tenant_id,
                        tenant.name,
                        tenant.plan,
                        tenant.status,
                        iso(tenant.created_at),
                    ),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"tenant {tenant.tenant_id!r} already exists") from None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = (
            self.db.connection()
            .execute("SELECT * FROM tenants WHERE tenant_id = ?", (tenant_id,))
            .fetchone()
        )
        return _tenant(row) if row else None

    def list_tenants(self) -> list[Tenant]:
        rows = self.db.connection().execute("SELECT * FROM tenants ORDER BY tenant_id").fetchall()
        return [_tenant(row) for row in rows]

    def save_tenant(self, tenant: Tenant) -> None:
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE tenants SET name = ?, plan = ?, status = ? WHERE tenant_id = ?",
                (tenant.name, tenant.plan, tenant.status, tenant.tenant_id),
            ).rowcount
        if not changed:
            raise KeyError(f"unknown tenant {tenant.tenant_id!r}")

    def create_key(self, record: KeyRecord) -> None:
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO api_keys (tenant_id, key_hash, status, created_at, last_used_at,"
                    " expires_at, label, apigw_key_id, usage_identifier, key_id)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    _key_values(record),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"key {record.key_id!r} already exists") from None

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = (
            self.db.connection()
            .execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,))
            .fetchone()
        )
        return _key(row) if row else None

    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
                (tenant_id,),
            )
            .fetchall()
        )
        return [_key(row) for row in rows]

    def save_key(self, record: KeyRecord) -> None:
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE api_keys SET tenant_id = ?, key_hash = ?, status = ?, created_at = ?,"
                " last_used_at = ?, expires_at = ?, label = ?, apigw_key_id = ?,"
                " usage_identifier = ? WHERE key_id = ?",
                _key_values(record),
            ).rowcount
        if not changed:
            raise KeyError(f"unknown key {record.key_id!r}")

    def touch_key(self, key_id: str, at: datetime, min_interval_s: int = 300) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE key_id = ? AND "
                "(last_used_at IS NULL OR last_used_at < ?)",
                (iso(at), key_id, iso(at - timedelta(seconds=min_interval_s))),
            )

    def close(self) -> None:
        self.db.close()
