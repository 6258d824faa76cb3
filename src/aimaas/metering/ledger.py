"""The usage ledger port: an append-only, idempotent record of billed calls plus counters.

Adapters are registered by name in :data:`LEDGERS` and built by :func:`build_ledger` from
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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from aimaas.config import Settings, build_adapter
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


LedgerFactory = Callable[[Settings], UsageLedger]


def _sqlite(settings: Settings) -> UsageLedger:
    from aimaas.metering.sqlite import SqliteLedger

    return SqliteLedger(settings.sqlite_path)


def _dynamodb(settings: Settings) -> UsageLedger:
    from aimaas.metering.dynamodb import DynamoDbLedger

    if not settings.usage_table:
        raise ValueError("AIMAAS_USAGE_TABLE is required for the dynamodb ledger")
    retention = int(settings.extra.get("AIMAAS_USAGE_RETENTION_DAYS", "400"))
    shards = int(settings.extra.get("AIMAAS_USAGE_COUNTER_SHARDS", "8"))
    return DynamoDbLedger(settings.usage_table, retention_days=retention, counter_shards=shards)


#: Ledger adapters by the name ``AIMAAS_LEDGER`` selects.
LEDGERS: dict[str, LedgerFactory] = {"sqlite": _sqlite, "dynamodb": _dynamodb}


def build_ledger(settings: Settings) -> UsageLedger:
    """Build the ledger adapter that ``settings.ledger`` names.

    Raises
    ------
    ValueError
        Unknown adapter name, or its settings are incomplete.
    """
    return build_adapter("ledger", LEDGERS, settings.ledger, settings)
