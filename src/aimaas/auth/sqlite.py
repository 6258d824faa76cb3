"""SQLite key store (local mode and tests); shares the database file with the ledger.

Tables (columns named as the fields of :class:`~aimaas.auth.keys.Tenant` and
:class:`~aimaas.auth.keys.KeyRecord`, which map themselves to rows)::

    tenants(tenant_id PRIMARY KEY, name, plan, status, created_at)
    api_keys(key_id PRIMARY KEY, tenant_id, key_hash, status, created_at, last_used_at,
             expires_at, label, apigw_key_id, usage_identifier)
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from aimaas.auth.keys import KeyRecord, KeyStore, Tenant
from aimaas.storage import SqliteDatabase, iso
from aimaas.storage.sqlite import insert, update

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


class SqliteKeyStore(KeyStore):
    """Tenants and keys in a SQLite file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)

    def create_tenant(self, tenant: Tenant) -> None:
        try:
            with self.db.transaction() as conn:
                insert(conn, "tenants", tenant)
        except sqlite3.IntegrityError:
            raise ValueError(f"tenant {tenant.tenant_id!r} already exists") from None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        found = self.db.select(Tenant, "SELECT * FROM tenants WHERE tenant_id = ?", (tenant_id,))
        return found[0] if found else None

    def list_tenants(self) -> list[Tenant]:
        return self.db.select(Tenant, "SELECT * FROM tenants ORDER BY tenant_id")

    def save_tenant(self, tenant: Tenant) -> None:
        with self.db.transaction() as conn:
            changed = update(conn, "tenants", tenant, key=("tenant_id",))
        if not changed:
            raise KeyError(f"unknown tenant {tenant.tenant_id!r}")

    def create_key(self, record: KeyRecord) -> None:
        try:
            with self.db.transaction() as conn:
                insert(conn, "api_keys", record)
        except sqlite3.IntegrityError:
            raise ValueError(f"key {record.key_id!r} already exists") from None

    def get_key(self, key_id: str) -> KeyRecord | None:
        found = self.db.select(KeyRecord, "SELECT * FROM api_keys WHERE key_id = ?", (key_id,))
        return found[0] if found else None

    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        return self.db.select(
            KeyRecord,
            "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
            (tenant_id,),
        )

    def save_key(self, record: KeyRecord) -> None:
        with self.db.transaction() as conn:
            changed = update(conn, "api_keys", record, key=("key_id",))
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
