"""Audit events in the local SQLite file (append-only: triggers refuse updates and deletes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from aimaas.audit import AuditEvent, AuditLog
from aimaas.storage import SqliteDatabase, iso
from aimaas.storage.sqlite import insert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    event_id TEXT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, host TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL, outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (at);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class SqliteAuditLog(AuditLog):
    """Audit events in the local SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)

    def append(self, event: AuditEvent) -> None:
        with self.db.transaction() as conn:
            insert(conn, "audit_events", event)

    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        return iter(
            self.db.select(
                AuditEvent,
                "SELECT * FROM audit_events WHERE at >= ? AND at < ? ORDER BY at, event_id",
                (iso(start), iso(end)),
            )
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.db.close()
