"""Usage summaries priced with the plan catalogue (standard library only).

The usage API, the admin CLI and invoices all use :func:`summarize`, so a number shown to a
customer, to an operator and on an invoice come from the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from aimaas.metering.records import UsageRecord, day_bucket
from aimaas.plans import Catalog, load_catalog

#: The dimensions a summary can be grouped by, and how each is read from a record.
GROUP_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "day": "day",
        "model": "model",
        "task": "task",
        "key": "key_id",
        "model_version": "model_version",
    }
)


@dataclass(frozen=True)
class UsageLine:
    """One group of a summary: calls, units (in ``unit``) and their cost."""

    group: Mapping[str, str]
    unit: str
    calls: int
    units: Decimal
    cost: Decimal


@dataclass(frozen=True)
class UsageSummary:
    """Lines plus totals (units are not totalled: different units do not add up)."""

    plan: str
    currency: str
    lines: tuple[UsageLine, ...]
    calls: int
    cost: Decimal
    group_by: tuple[str, ...] = field(default_factory=tuple)


def _value(record: UsageRecord, dimension: str) -> str:
    if dimension == "day":
        return day_bucket(record.timestamp)
    return str(getattr(record, GROUP_KEYS[dimension]))


def summarize(
    records: Iterable[UsageRecord],
    plan: str,
    group_by: Sequence[str] = ("day",),
    catalog: Catalog | None = None,
) -> UsageSummary:
    """Group and price ``records`` for a tenant on ``plan``.

    Parameters
    ----------
    records
        The tenant's records for the period.
    plan
        The plan whose multiplier applies.
    group_by
        Dimensions among :data:`GROUP_KEYS`; the unit is always part of a line's key.
    catalog
        Prices (the loaded ``plans.toml`` by default).

    Returns
    -------
    UsageSummary
        Lines sorted by their group values.

    Raises
    ------
    ValueError
        An unknown dimension, or a unit that cannot be priced.
    """
    unknown = [d for d in group_by if d not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {sorted(GROUP_KEYS)}")
    catalog = catalog or load_catalog()
    acc: dict[tuple[tuple[str, ...], str], list[Decimal | int]] = {}
    for record in records:
        key = (tuple(_value(record, d) for d in group_by), record.unit)
        cost = catalog.price(record.task, record.model, record.units, plan, record.unit)
        slot = acc.setdefault(key, [0, Decimal(0), Decimal(0)])
        slot[0] = int(slot[0]) + 1
        slot[1] = Decimal(slot[1]) + Decimal(str(record.units))
        slot[2] = Decimal(slot[2]) + cost
    lines = tuple(
        UsageLine(
            group=MappingProxyType(dict(zip(group_by, values, strict=True))),
            unit=unit,
            calls=int(calls),
            units=Decimal(units),
            cost=Decimal(cost),
        )
        for (values, unit), (calls, units, cost) in sorted(acc.items())
    )
    return UsageSummary(
        plan=plan,
        currency=catalog.currency,
        lines=lines,
        calls=sum(line.calls for line in lines),
        cost=sum((line.cost for line in lines), Decimal(0)),
        group_by=tuple(group_by),
    )
