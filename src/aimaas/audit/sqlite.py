"""Audit events in the local SQLite file (append-only: triggers refuse updates and deletes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from aimaas.audit import AuditEvent, AuditLog, event_from
from aimaas.metering.records import iso
from aimaas.metering.sqlite import SqliteDatabase

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
        data = event.as_dict()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO audit_events (event_id, at, actor, host, action, target, details,"
                " outcome) VALUES (?,?,?,?,?,?,?,?)",
                (
                    data["event_id"],
                    data["at"],
                    data["actor"],
                    data["host"],
                    data["action"],
                    data["target"],
                    json.dumps(data["details"], sort_keys=True),
                    data["outcome"],
                ),
            )

    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT * FROM audit_events WHERE at >= ? AND at < ? ORDER BY at, event_id",
                (iso(start), iso(end)),
            )
            .fetchall()
        )
        return (event_from(dict(row)) for row in rows)
