"""The usage ledger port: an append-only, idempotent record of billed calls plus counters.

Adapters are registered by name in :data:`aimaas.wiring.LEDGERS` and built by
:func:`aimaas.wiring.build_ledger` from
``Settings.ledger`` (``sqlite`` or ``dynamodb``).

Contract every adapter keeps (checked by the shared contract tests):

- :meth:`UsageLedger.put` stores a record and adds it to its tenant's day and month counters
  atomically: a reader never sees one without the other.
- A second ``put`` with the same ``(tenant_id, request_id)`` changes nothing and returns False.
- A failed ``put`` raises and leaves nothing behind (no record and no counter change).
- Counters (:meth:`UsageLedger.totals`, :meth:`UsageLedger.daily_cells`) always equal the sums
  over the stored records.
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
        """Record ``record`` and update the counters, at most once per request id.

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

    def month_calls(self, tenant_id: str, at: datetime | None = None) -> int:
        """Calls recorded for the tenant in the calendar month (UTC) of ``at`` (default: now)."""
        return self.totals(tenant_id, "month", month_bucket(at or datetime.now(UTC))).calls

    def close(self) -> None:  # noqa: B027 - adapters without resources need no close
        """Release connections."""
