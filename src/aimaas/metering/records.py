"""The usage record and the value types every ledger adapter shares (standard library only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

Period = Literal["day", "month"]


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def day_bucket(moment: datetime) -> str:
    """``YYYY-MM-DD`` of ``moment`` in UTC: the key of a daily counter."""
    return utc(moment).strftime("%Y-%m-%d")


def month_bucket(moment: datetime) -> str:
    """``YYYY-MM`` of ``moment`` in UTC: the key of a monthly counter."""
    return utc(moment).strftime("%Y-%m")


def bucket(period: Period, moment: datetime) -> str:
    """The counter key of ``moment`` for ``period``."""
    return day_bucket(moment) if period == "day" else month_bucket(moment)


def next_month_start(moment: datetime) -> datetime:
    """Midnight UTC of the first day of the month after ``moment``: when monthly limits reset."""
    moment = utc(moment)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """A fixed-width, sortable ISO 8601 UTC timestamp (microseconds)."""
    return utc(moment).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class UsageRecord:
    """One served call, as billed.

    ``request_id`` is the idempotency key: a ledger holds at most one record per
    ``(tenant_id, request_id)``. ``units`` are counted in ``unit`` (see
    :data:`aimaas.plans.UNIT_CONVERSIONS` for the units a price can be converted from).
    """

    request_id: str
    tenant_id: str
    key_id: str
    model: str
    model_version: str
    task: str
    units: float
    unit: str
    latency_ms: float
    status: int
    timestamp: datetime

    def __post_init__(self) -> None:
        for name in ("request_id", "tenant_id"):
            value = getattr(self, name)
            if not value or "#" in value:
                raise ValueError(f"{name} must be non-empty and must not contain '#'")
        if self.units < 0:
            raise ValueError("units must not be negative")
        object.__setattr__(self, "timestamp", utc(self.timestamp))


@dataclass(frozen=True)
class UsageTotals:
    """A counter: number of calls and units per unit for one tenant and one day or month."""

    calls: int = 0
    units: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class UsageCell:
    """A daily counter cell: one tenant's calls and units of one task, model and unit on one
    UTC day. Cells let usage reports and invoices be built from counters instead of raw records
    (a busy tenant has millions of records a month, but only days x models cells)."""

    day: str
    task: str
    model: str
    unit: str
    calls: int
    units: Decimal
