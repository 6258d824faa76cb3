"""The append-only audit log: who did what, when, from where (the port and its event).

Admin actions (``aimaas_admin``) and the runtime's own security-relevant changes (custom
classifiers created and deleted) write :class:`AuditEvent` s through :class:`AuditLog`.
Events are never updated or deleted by this code: the SQLite adapter
(:mod:`aimaas.audit.sqlite`) only ``INSERT`` s (and a trigger refuses ``UPDATE``/``DELETE``);
the DynamoDB adapter (:mod:`aimaas.audit.dynamodb`) puts with ``attribute_not_exists(pk)``
(grant ``dynamodb:PutItem`` and ``Query`` on the audit table, never ``UpdateItem``/
``DeleteItem``). Adapters are chosen in :mod:`aimaas.wiring` (``AUDIT_LOGS``).

DynamoDB audit table (``AIMAAS_AUDIT_TABLE``; key schema ``pk`` S, ``sk`` S, no GSI, no TTL)::

    pk = AUDIT#<YYYY-MM>          one partition per month (listing by period is one query)
    sk = <iso ts>#<event id>      time order; event id = 16 random hex characters
    attributes: event_id, at, actor, host, action, target, details (JSON string), outcome
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from aimaas.metering.records import iso

#: The audit table's key schema (CDK and LocalStack): ``pk`` (S) and ``sk`` (S), no GSI, no TTL.
KEY_SCHEMA: Mapping[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
}


@dataclass(frozen=True)
class AuditEvent:
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


class AuditLog(ABC):
    """Port: an append-only event log. Adapters: ``sqlite`` and ``dynamodb``."""

    @abstractmethod
    def append(self, event: AuditEvent) -> None:
        """Store ``event``; never overwrites."""

    @abstractmethod
    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        """Events with ``start <= at < end``, oldest first."""


def event_from(data: Mapping[str, Any]) -> AuditEvent:
    details = data["details"]
    return AuditEvent(
        action=data["action"],
        target=data["target"],
        actor=data["actor"],
        host=data["host"],
        at=datetime.fromisoformat(data["at"]),
        details=json.loads(details) if isinstance(details, str) else dict(details),
        outcome=data["outcome"],
        event_id=data["event_id"],
    )


__all__ = ["KEY_SCHEMA", "AuditEvent", "AuditLog", "event_from"]
