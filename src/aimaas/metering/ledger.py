"""The usage ledger port: an append-only, idempotent record of billed calls plus counters.

Adapters are registered by name in :data:`aimaas.wiring.LEDGERS` and built by
:func:`aimaas.wiring.build_ledger` from ``Settings.ledger`` (``sqlite`` or ``dynamodb``).

Contract every adapter keeps (checked by the shared contract tests):

- :meth:`UsageLedger.put` makes a record durable, at most once per ``(tenant_id,
  request_id)``: a second ``put`` with the same pair changes nothing and returns False, and a
  failed ``put`` raises and leaves no record behind. :meth:`UsageLedger.get` sees a record as
  soon as ``put`` returned.
- Counters (:meth:`UsageLedger.totals`, :meth:`UsageLedger.daily_cells`) and the time-ordered
  listing (:meth:`UsageLedger.records`) equal the sums over the stored records once the
  adapter has caught up: at once for SQLite (one transaction), after the stream aggregator
  has run for DynamoDB (typically a second or two; see :mod:`aimaas.metering.dynamodb`).
  They never count a record twice and never lose one.
- :meth:`UsageLedger.reserve` admits calls one at a time against an allowance, atomically
  (the hard-limit guard near a tenant's monthly limit; see :mod:`aimaas.auth.authenticator`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime

from aimaas.metering.records import Period, UsageCell, UsageRecord, UsageTotals, month_bucket


class UsageLedger(ABC):
    """Where billed calls are recorded."""

    @abstractmethod
    def put(self, record: UsageRecord) -> bool:
        """Record ``record``, at most once per request id.

        Returns
        -------
        bool
            True if the record is new, False if that request id was already recorded.
        """

    @abstractmethod
    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        """The record of one request, or None."""

    @abstractmethod
    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        """The tenant's records with ``start <= timestamp < end``, oldest first."""

    @abstractmethod
    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        """The counter of ``tenant_id`` for one day (``YYYY-MM-DD``) or month (``YYYY-MM``)."""

    @abstractmethod
    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        """The tenant's daily counter cells for ``first_day`` to ``last_day`` (``YYYY-MM-DD``,
        both inclusive), one per day, task, model and unit that has usage."""

    @abstractmethod
    def reserve(self, tenant_id: str, month: str, limit: int, allowance: int) -> bool:
        """Admit one call of ``tenant_id`` in ``month`` against a reservation, atomically.

        The first call for ``(tenant_id, month, limit)`` creates the reservation with
        ``allowance`` calls (what the counters left below ``limit`` when it was made); later
        calls are admitted while fewer than that have been. Returns False once it is used up.
        """

    @abstractmethod
    def release(self, tenant_id: str, month: str, limit: int) -> None:
        """Give back one admitted call that was not served (best effort)."""

    def month_calls(self, tenant_id: str, at: datetime | None = None) -> int:
        """Calls recorded for the tenant in the calendar month (UTC) of ``at`` (default: now)."""
        return self.totals(tenant_id, "month", month_bucket(at or datetime.now(UTC))).calls

    def close(self) -> None:  # noqa: B027 - adapters without resources need no close
        """Release connections."""
