"""The append-only audit log of admin actions: who, what, when, from where.

Every :class:`~aimaas_admin.service.AdminService` action writes one :class:`AuditEvent`
*before* it returns. Events are never updated or deleted by this code: the SQLite adapter only
``INSERT`` s (and a trigger refuses ``UPDATE``/``DELETE``); the DynamoDB adapter puts with
``attribute_not_exists(pk)`` (grant the admin role ``dynamodb:PutItem`` and ``Query`` on the
audit table, never ``UpdateItem``/``DeleteItem``).

DynamoDB audit table (``AIMAAS_AUDIT_TABLE``; :data:`aimaas.storage.schemas.AUDIT`: ``pk`` S,
``sk`` S, no GSI, no TTL)::

    pk = AUDIT#<YYYY-MM>          one partition per month (listing by period is one query)
    sk = <iso ts>#<event id>      time order; event id = 16 random hex characters
    attributes: event_id, at, actor, host, action, target, details (JSON string), outcome
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aimaas.config import Settings
from aimaas.storage import SqliteDatabase, Stored, iso, utc
from aimaas.storage import dynamodb as ddb
from aimaas.storage.sqlite import insert


@dataclass(frozen=True)
class AuditEvent(Stored):
    """One admin action. ``details`` must never contain a key (only key ids)."""

    action: str
    target: str
    actor: str
    host: str
    at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    event_id: str = field(default_factory=lambda: secrets.token_hex(8))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["at"] = iso(self.at)
        data["details"] = dict(self.details)
        return data


def default_actor() -> str:
    """The OS user running the tool."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


def default_host() -> str:
    """Where the action came from: this machine's host name."""
    return socket.gethostname()


class AuditLog(ABC):
    """Port: an append-only event log. Adapters: ``sqlite`` and ``dynamodb``."""

    @abstractmethod
    def append(self, event: AuditEvent) -> None:
        """Store ``event``; never overwrites."""

    @abstractmethod
    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        """Events with ``start <= at < end``, oldest first."""


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


class DynamoDbAuditLog(AuditLog):
    """Audit events in the DynamoDB audit table (see the module docstring)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.client = ddb.client(client)

    def append(self, event: AuditEvent) -> None:
        item = {
            "pk": f"AUDIT#{utc(event.at).strftime('%Y-%m')}",
            "sk": f"{iso(event.at)}#{event.event_id}",
            **event.to_item(),
        }
        self.client.put_item(
            TableName=self.table,
            Item=ddb.to_wire(item),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        start, end = utc(start), utc(end)
        year, month = start.year, start.month
        paginator = self.client.get_paginator("query")
        while (year, month) <= (end.year, end.month):
            for page in paginator.paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":pk": {"S": f"AUDIT#{year:04d}-{month:02d}"},
                    ":low": {"S": iso(start)},
                    ":high": {"S": iso(end)},
                },
            ):
                for item in page.get("Items", []):
                    event = AuditEvent.from_item(ddb.from_wire(item))
                    if start <= event.at < end:
                        yield event
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)


AuditFactory = Callable[[Settings], AuditLog]


def _sqlite(settings: Settings) -> AuditLog:
    return SqliteAuditLog(settings.sqlite_path)


def _dynamodb(settings: Settings) -> AuditLog:
    if not settings.audit_table:
        raise ValueError("AIMAAS_AUDIT_TABLE is required for the dynamodb audit log")
    return DynamoDbAuditLog(settings.audit_table)


#: Audit log adapters, selected with the key store's name (the two always live together).
AUDIT_LOGS: dict[str, AuditFactory] = {"sqlite": _sqlite, "dynamodb": _dynamodb}


def build_audit_log(settings: Settings) -> AuditLog:
    """The audit log next to the key store that ``settings.key_store`` names."""
    try:
        return AUDIT_LOGS[settings.key_store](settings)
    except KeyError:
        raise ValueError(f"no audit log for key store {settings.key_store!r}") from None


def export_events(events: Iterable[AuditEvent], fmt: str) -> str:
    """Render events as JSON lines (``jsonl``) or CSV (``csv``)."""
    rows = [event.as_dict() for event in events]
    if fmt == "jsonl":
        return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if fmt == "csv":
        out = io.StringIO()
        columns = ["event_id", "at", "actor", "host", "action", "target", "outcome", "details"]
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
        return out.getvalue()
    raise ValueError(f"unknown export format {fmt!r}; use jsonl or csv")


def now() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)
