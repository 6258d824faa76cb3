"""The append-only audit log: who did what, when, from where (the port and its event).

Admin actions (``aimaas_admin``) and the runtime's own security-relevant changes (custom
classifiers created and deleted) write :class:`AuditEvent` s through :class:`AuditLog`.
Events are never updated or deleted by this code: the SQLite adapter
(:mod:`aimaas.audit.sqlite`) only ``INSERT`` s (and a trigger refuses ``UPDATE``/``DELETE``);
the DynamoDB adapter (:mod:`aimaas.audit.dynamodb`) puts with ``attribute_not_exists(pk)``
(grant ``dynamodb:PutItem`` and ``Query`` on the audit table, never ``UpdateItem``/
``DeleteItem``). Adapters are chosen in :mod:`aimaas.wiring` (``AUDIT_LOGS``).

DynamoDB audit table (``AIMAAS_AUDIT_TABLE``; :data:`aimaas.storage.AUDIT`: ``pk`` S,
``sk`` S, no GSI, no TTL)::

    pk = AUDIT#<YYYY-MM>          one partition per month (listing by period is one query)
    sk = <iso ts>#<event id>      time order; event id = 16 random hex characters
    attributes: event_id, at, actor, host, action, target, details (JSON string), outcome
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from aimaas.storage import Stored, iso


@dataclass(frozen=True)
class AuditEvent(Stored):
    """One audited action. ``details`` must never contain a key (only key ids)."""

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


__all__ = ["AuditEvent", "AuditLog"]
