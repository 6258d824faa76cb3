"""Invoices: a month of ledger records, priced per plan, as JSON or CSV.

Standard library only. The HTML rendering (jinja2, matplotlib) is operator tooling and lives in
:mod:`aimaas_admin.invoice_html`, outside what the Lambdas ship.

Every amount is exact: ``quantity`` (the sum of the records' units in the billing unit) times
``unit_price`` (list price times the plan's multiplier); the total is the sum of the lines.
Amounts are shown with 6 decimals (per-call prices are fractions of a cent) and the amount due
is the total rounded half-up to cents.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aimaas.metering.records import UsageCell, UsageRecord, day_bucket, next_month_start
from aimaas.plans import Catalog, load_catalog, to_billing_units

SHOWN = Decimal("0.000001")  # amounts are shown with 6 decimals
CENTS = Decimal("0.01")


#: The model and task of the invoice line that charges the per-call request fee.
REQUEST_FEE_LINE = "request fee"


@dataclass(frozen=True)
class InvoiceLine:
    """One model/task of the month."""

    model: str
    task: str
    unit: str  # the billing unit
    calls: int
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceDay:
    """One day of the month: calls and cost (the chart's data)."""

    day: str
    calls: int
    cost: Decimal


@dataclass(frozen=True)
class Invoice:
    """A tenant's invoice for one calendar month (UTC)."""

    invoice_id: str
    tenant_id: str
    tenant_name: str
    plan: str
    currency: str
    month: str
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    lines: tuple[InvoiceLine, ...]
    days: tuple[InvoiceDay, ...]
    total_calls: int
    total: Decimal

    @property
    def amount_due(self) -> Decimal:
        """The total rounded half-up to cents."""
        return self.total.quantize(CENTS, rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (decimals as strings, so nothing is rounded by a float)."""
        return {
            "invoice_id": self.invoice_id,
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "plan": self.plan,
            "currency": self.currency,
            "month": self.month,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "issued_at": self.issued_at.isoformat(),
            "lines": [
                {
                    "model": line.model,
                    "task": line.task,
                    "unit": line.unit,
                    "calls": line.calls,
                    "quantity": str(line.quantity),
                    "unit_price": str(line.unit_price),
                    "amount": str(line.amount),
                }
                for line in self.lines
            ],
            "days": [{"day": d.day, "calls": d.calls, "cost": str(d.cost)} for d in self.days],
            "total_calls": self.total_calls,
            "total": str(self.total),
            "amount_due": str(self.amount_due),
        }


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``YYYY-MM`` in UTC."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return start, next_month_start(start)


def build_invoice(
    records: Iterable[UsageRecord],
    *,
    tenant_id: str,
    tenant_name: str,
    plan: str,
    month: str,
    catalog: Catalog | None = None,
    issued_at: datetime | None = None,
) -> Invoice:
    """Price a month of raw ``records`` for a tenant on ``plan``.

    Raises
    ------
    KeyError, ValueError
        Unknown plan, no price for a task, or a unit that cannot be converted.
    """
    start, end = month_bounds(month)
    cells = (
        UsageCell(
            day=day_bucket(r.timestamp),
            task=r.task,
            model=r.model,
            unit=r.unit,
            calls=1,
            units=Decimal(str(r.units)),
        )
        for r in records
        if start <= r.timestamp < end
    )
    return build_invoice_from_cells(
        cells,
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        plan=plan,
        month=month,
        catalog=catalog,
        issued_at=issued_at,
    )


def build_invoice_from_cells(
    cells: Iterable[UsageCell],
    *,
    tenant_id: str,
    tenant_name: str,
    plan: str,
    month: str,
    catalog: Catalog | None = None,
    issued_at: datetime | None = None,
) -> Invoice:
    """Price a month of daily counter cells (what the admin tooling uses: a month of a busy
    tenant is millions of records but only days x models cells). Cells outside the month are
    ignored.

    Raises
    ------
    KeyError, ValueError
        Unknown plan, no price for a task, or a unit that cannot be converted.
    """
    catalog = catalog or load_catalog()
    multiplier = catalog.plan(plan).price_multiplier
    fee = catalog.request_fee_usd * multiplier
    start, end = month_bounds(month)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    days: dict[str, list[Any]] = {}
    day = start.date()
    while day < end.date():
        days[day.isoformat()] = [0, Decimal(0)]
        day += timedelta(days=1)
    for cell in cells:
        if cell.day not in days:
            continue
        price = catalog.list_price(cell.task, cell.model)
        quantity = to_billing_units(cell.units, cell.unit, price.unit)
        unit_price = price.usd * multiplier
        slot = groups.setdefault((cell.model, cell.task, price.unit), [0, Decimal(0), unit_price])
        slot[0] += cell.calls
        slot[1] += quantity
        days[cell.day][0] += cell.calls
        days[cell.day][1] += quantity * unit_price + cell.calls * fee
    usage_lines = [
        InvoiceLine(
            model=model,
            task=task,
            unit=unit,
            calls=calls,
            quantity=quantity,
            unit_price=unit_price,
            amount=quantity * unit_price,
        )
        for (model, task, unit), (calls, quantity, unit_price) in sorted(groups.items())
    ]
    total_calls = sum(line.calls for line in usage_lines)
    if fee and total_calls:  # one line for the fee every call pays, whatever it used
        usage_lines.append(
            InvoiceLine(
                model=REQUEST_FEE_LINE,
                task=REQUEST_FEE_LINE,
                unit="call",
                calls=total_calls,
                quantity=Decimal(total_calls),
                unit_price=fee,
                amount=total_calls * fee,
            )
        )
    lines = tuple(usage_lines)
    return Invoice(
        invoice_id=f"INV-{tenant_id}-{month}",
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        plan=plan,
        currency=catalog.currency,
        month=month,
        period_start=start,
        period_end=end,
        issued_at=issued_at or datetime.now(UTC),
        lines=lines,
        days=tuple(InvoiceDay(d, calls, cost) for d, (calls, cost) in days.items()),
        total_calls=total_calls,
        total=sum((line.amount for line in lines), Decimal(0)),
    )


def month_invoice(
    ledger: Any,
    *,
    tenant_id: str,
    tenant_name: str,
    plan: str,
    month: str,
    catalog: Catalog | None = None,
    issued_at: datetime | None = None,
) -> Invoice:
    """The invoice of ``month`` (``YYYY-MM``) from the ledger's daily counters.

    The one way an invoice is made: the admin CLI and the customer's ``/v1/invoices`` both
    call it, so the two can never disagree.

    Parameters
    ----------
    ledger
        A :class:`~aimaas.metering.UsageLedger` (its ``daily_cells``).
    tenant_id, tenant_name, plan, month, catalog, issued_at
        As :func:`build_invoice_from_cells`.

    Returns
    -------
    Invoice
        The priced month.
    """
    start, end = month_bounds(month)
    last_day = (end - timedelta(days=1)).date().isoformat()
    return build_invoice_from_cells(
        ledger.daily_cells(tenant_id, start.date().isoformat(), last_day),
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        plan=plan,
        month=month,
        catalog=catalog,
        issued_at=issued_at,
    )


def render_json(invoice: Invoice) -> str:
    """The invoice as indented JSON."""
    return json.dumps(invoice.as_dict(), indent=2) + "\n"


def render_csv(invoice: Invoice) -> str:
    """One row per line plus a total row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "invoice_id",
            "model",
            "task",
            "unit",
            "calls",
            "quantity",
            "unit_price",
            "amount",
            "currency",
        ]
    )
    for line in invoice.lines:
        writer.writerow(
            [
                invoice.invoice_id,
                line.model,
                line.task,
                line.unit,
                line.calls,
                line.quantity,
                line.unit_price,
                line.amount,
                invoice.currency,
            ]
        )
    writer.writerow(
        [
            invoice.invoice_id,
            "TOTAL",
            "",
            "",
            invoice.total_calls,
            "",
            "",
            invoice.total,
            invoice.currency,
        ]
    )
    return out.getvalue()


RENDERERS = {"json": render_json, "csv": render_csv}
