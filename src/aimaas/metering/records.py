"""The usage record and the value types every ledger adapter shares (standard library only).

The time helpers are the storage kit's (:mod:`aimaas.storage.clock`), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from aimaas.storage import Stored
from aimaas.storage.clock import (  # noqa: F401 - the metering names of the kit's time helpers
    Period,
    bucket,
    day_bucket,
    iso,
    month_bucket,
    next_month_start,
    utc,
)

#: Units are kept to the micro-unit (a millionth of a billing unit: a thousandth of a token
#: count in ``1k_tokens``, a microsecond of audio).
UNIT_QUANTUM = Decimal("0.000001")


def as_units(value: Decimal | float | int | str) -> Decimal:
    """``value`` as exact decimal units, rounded half-even to :data:`UNIT_QUANTUM`.

    Floats are read through their shortest repr (``0.1`` is ``Decimal("0.1")``, not the
    binary fraction), so a float that a caller computed is taken as the number it prints.
    """
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return number.quantize(UNIT_QUANTUM)


def to_micro(units: Decimal) -> int:
    """Integer micro-units of ``units`` (exact: units carry at most six decimals)."""
    return int(as_units(units).scaleb(6))


def from_micro(micro: int) -> Decimal:
    """Decimal units of an integer count of micro-units."""
    return as_units(Decimal(int(micro)).scaleb(-6))


@dataclass(frozen=True)
class UsageRecord(Stored):
    """One served call, as billed.

    ``request_id`` is the idempotency key: a ledger holds at most one record per
    ``(tenant_id, request_id)``. ``units`` are an exact decimal counted in ``unit`` (see
    :data:`aimaas.plans.UNIT_CONVERSIONS` for the units a price can be converted from), with at
    most six decimals (:data:`UNIT_QUANTUM`): counters keep integer micro-units, so a sum of
    records and a counter are always equal, digit for digit.
    """

    request_id: str
    tenant_id: str
    key_id: str
    model: str
    model_version: str
    task: str
    units: Decimal
    unit: str
    latency_ms: float
    status: int
    timestamp: datetime = field(metadata={"column": "ts"})
    #: sha256 of what the call asked its models (``aimaas.api.calls.Call.request_digest``): a
    #: retry under the same request id must match it. None: no model ran, or an older record.
    request_digest: str | None = None

    def __post_init__(self) -> None:
        for name in ("request_id", "tenant_id"):
            value = getattr(self, name)
            if not value or "#" in value:
                raise ValueError(f"{name} must be non-empty and must not contain '#'")
        units = as_units(self.units)
        if units < 0:
            raise ValueError("units must not be negative")
        object.__setattr__(self, "units", units)
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
