"""The audit log as operators use it: the admin's actor and host, and exports.

The writer itself (the :class:`~aimaas.audit.AuditEvent`, the :class:`~aimaas.audit.AuditLog`
port, its SQLite and DynamoDB adapters) is in the runtime core, :mod:`aimaas.audit`, since the
API audits custom classifiers too; this module re-exports it for the admin tooling.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import socket
from collections.abc import Iterable
from datetime import UTC, datetime

from aimaas.audit import AuditEvent, AuditLog
from aimaas.audit.dynamodb import DynamoDbAuditLog
from aimaas.audit.sqlite import SqliteAuditLog
from aimaas.wiring import AUDIT_LOGS, build_audit_log

__all__ = [
    "AUDIT_LOGS",
    "AuditEvent",
    "AuditLog",
    "DynamoDbAuditLog",
    "SqliteAuditLog",
    "build_audit_log",
    "default_actor",
    "default_host",
    "export_events",
    "now",
]


def default_actor() -> str:
    """The OS user running the tool."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


def default_host() -> str:
    """Where the action came from: this machine's host name."""
    return socket.gethostname()


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
