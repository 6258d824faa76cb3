"""Usage summaries priced with the plan catalogue (standard library only).

The usage API, the admin CLI and invoices all use :func:`summarize`, so a number shown to a
customer, to an operator and on an invoice come from the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import UsageCell, UsageRecord, day_bucket, utc
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


#: The dimensions daily counter cells keep (a summary grouped only by these needs no records).
CELL_GROUPS = frozenset({"day", "model", "task"})


def _value(record: UsageRecord, dimension: str) -> str:
    if dimension == "day":
        return day_bucket(record.timestamp)
    return str(getattr(record, GROUP_KEYS[dimension]))


def _check(group_by: Sequence[str], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    unknown = [d for d in group_by if d not in allowed]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {sorted(allowed)}")


def _build(
    items: Iterable[tuple[tuple[str, ...], str, str, str, int, Decimal]],
    plan: str,
    group_by: Sequence[str],
    catalog: Catalog,
) -> UsageSummary:
    """Accumulate ``(group values, task, model, unit, calls, units)`` items and price them."""
    acc: dict[tuple[tuple[str, ...], str], list[Any]] = {}
    for values, task, model, unit, calls, units in items:
        cost = catalog.price(task, model, units, plan, unit, calls)
        slot = acc.setdefault((values, unit), [0, Decimal(0), Decimal(0)])
        slot[0] += calls
        slot[1] += units
        slot[2] += cost
    lines = tuple(
        UsageLine(
            group=MappingProxyType(dict(zip(group_by, values, strict=True))),
            unit=unit,
            calls=calls,
            units=units,
            cost=cost,
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


def summarize(
    records: Iterable[UsageRecord],
    plan: str,
    group_by: Sequence[str] = ("day",),
    catalog: Catalog | None = None,
) -> UsageSummary:
    """Group and price raw ``records`` for a tenant on ``plan``.

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
    _check(group_by, GROUP_KEYS)
    items = (
        (
            tuple(_value(r, d) for d in group_by),
            r.task,
            r.model,
            r.unit,
            1,
            Decimal(str(r.units)),
        )
        for r in records
    )
    return _build(items, plan, group_by, catalog or load_catalog())


def summarize_cells(
    cells: Iterable[UsageCell],
    plan: str,
    group_by: Sequence[str] = ("day",),
    catalog: Catalog | None = None,
) -> UsageSummary:
    """Like :func:`summarize`, from daily counter cells (whole days; day, model, task only).

    Pricing is linear in units and calls (the request fee), so pricing a cell's sums equals the
    sum of its records' prices.
    """
    _check(group_by, CELL_GROUPS)
    items = (
        (tuple(getattr(c, d) for d in group_by), c.task, c.model, c.unit, c.calls, c.units)
        for c in cells
    )
    return _build(items, plan, group_by, catalog or load_catalog())


def _midnight(moment: datetime) -> bool:
    moment = utc(moment)
    return moment == moment.replace(hour=0, minute=0, second=0, microsecond=0)


def usage_summary(
    ledger: UsageLedger,
    tenant_id: str,
    plan: str,
    start: datetime,
    end: datetime,
    group_by: Sequence[str] = ("day",),
    catalog: Catalog | None = None,
) -> UsageSummary:
    """The tenant's priced usage in ``[start, end)``, read the cheapest exact way.

    Whole UTC days grouped only by day, model and/or task come from the daily counter cells
    (a few items per day, whatever the traffic); anything finer (a time of day, or grouping by
    key or model version) reads the raw records.
    """
    if _midnight(start) and _midnight(end) and set(group_by) <= CELL_GROUPS:
        first_day = day_bucket(start)
        last_day = day_bucket(utc(end) - timedelta(days=1))
        cells = ledger.daily_cells(tenant_id, first_day, last_day)
        return summarize_cells(cells, plan, group_by, catalog)
    return summarize(ledger.records(tenant_id, start, end), plan, group_by, catalog)
