"""Metering: the usage ledger port, the meter and usage summaries.

Public face::

    from aimaas.metering import UsageRecord, UsageLedger, Meter

- :class:`UsageRecord`: one billed call (idempotent on ``(tenant_id, request_id)``).
- :class:`UsageLedger`: the port; adapters ``sqlite``
  (:class:`~aimaas.metering.sqlite.SqliteLedger`) and ``dynamodb``
  (:class:`~aimaas.metering.dynamodb.DynamoDbLedger`), chosen by
  :func:`aimaas.wiring.build_ledger` from ``Settings.ledger``.
- :class:`Meter`: ``record(record) -> bool`` with retries; raises
  :class:`aimaas.errors.BackendUnavailable` when the record cannot be made durable. POLICY: a
  call whose usage cannot be recorded is not served (503) and not billed; see
  :mod:`aimaas.metering.meter`.
- :func:`summarize` / :func:`summarize_cells`: group and price records or daily counter cells
  (usage API, admin CLI).

Everything here except :mod:`aimaas.metering.invoice` uses only the standard library, boto3 and
the core (tenacity is imported lazily by :class:`Meter`).
"""

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.meter import USAGE_NOT_RECORDED, Meter
from aimaas.metering.records import UsageCell, UsageRecord, UsageTotals, day_bucket, month_bucket
from aimaas.metering.summary import (
    UsageLine,
    UsageSummary,
    summarize,
    summarize_cells,
    usage_summary,
)

__all__ = [
    "USAGE_NOT_RECORDED",
    "Meter",
    "UsageCell",
    "UsageLedger",
    "UsageLine",
    "UsageRecord",
    "UsageSummary",
    "UsageTotals",
    "day_bucket",
    "month_bucket",
    "summarize",
    "summarize_cells",
    "usage_summary",
]
