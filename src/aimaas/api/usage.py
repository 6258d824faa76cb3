"""``GET /v1/usage``: the caller's own usage, grouped and priced.

A tenant sees only its own records: the tenant comes from the authenticated principal. The
optional ``tenant_id`` parameter exists only so a client that sends one gets a clear 403 when
it is not its own, rather than silently receiving its own data.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aimaas.api.dependencies import ContainerDep, IdentifiedCallDep
from aimaas.errors import Forbidden, InvalidInput
from aimaas.metering import usage_summary
from aimaas.metering.summary import GROUP_KEYS
from aimaas.plans import load_catalog

router = APIRouter(tags=["usage"])

MAX_RANGE_DAYS = 366
#: Dates a usage query may name (the ledger holds nothing outside them).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_PUBLIC_GROUPS = ("day", "model", "task")


class UsageRow(BaseModel):
    """One group of the report."""

    day: str | None = Field(default=None, description="UTC day, YYYY-MM-DD (if grouped by day).")
    model: str | None = Field(default=None, description="Model name (if grouped by model).")
    task: str | None = Field(default=None, description="Task (if grouped by task).")
    unit: str = Field(description="The unit `units` is counted in.")
    calls: int = Field(description="Billed calls.")
    units: float = Field(description="Units consumed.")
    cost: float = Field(description="Charge in `currency` at the plan's prices.")


class UsageReport(BaseModel):
    """The caller's usage for ``[start, end)``."""

    tenant_id: str
    plan: str
    currency: str
    start: datetime
    end: datetime
    group_by: list[str]
    rows: list[UsageRow]
    total_calls: int
    total_cost: float
    month_to_date_calls: int = Field(description="Calls this calendar month (UTC).")
    monthly_limit: int = Field(description="The plan's hard monthly request limit.")


def _moment(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(value)
            # In UTC now, so that comparing and subtracting never overflows later (year 1 at
            # +14:00 is before the first representable UTC moment).
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{value[:64]!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time in range."
        ) from None
    if not EARLIEST <= moment <= LATEST:
        raise InvalidInput(f"{value[:64]!r} is out of range ({EARLIEST.year} to {LATEST.year}).")
    return moment


def _groups(raw: list[str]) -> list[str]:
    groups = [g.strip() for item in raw for g in item.split(",") if g.strip()] or ["day"]
    unknown = [g for g in groups if g not in _PUBLIC_GROUPS or g not in GROUP_KEYS]
    if unknown:
        raise InvalidInput(f"cannot group by {unknown}; choose from {list(_PUBLIC_GROUPS)}")
    return list(dict.fromkeys(groups))


@router.get(
    "/v1/usage",
    response_model=UsageReport,
    summary="Your usage and its cost",
    responses={
        401: {"description": "No or malformed API key"},
        403: {"description": "Another tenant's usage"},
        422: {"description": "Bad dates or grouping"},
    },
)
async def get_usage(
    container: ContainerDep,
    call: IdentifiedCallDep,
    start: Annotated[
        str | None,
        Query(
            description="From (inclusive), YYYY-MM-DD or ISO "
            "date-time; default: start of this month (UTC)."
        ),
    ] = None,
    end: Annotated[
        str | None, Query(description="To (exclusive); default: the end of today (UTC).")
    ] = None,
    group_by: Annotated[
        list[str],
        Query(description="day, model and/or task (repeat or comma-separate); default: day."),
    ] = [],  # noqa: B006
    tenant_id: Annotated[
        str | None, Query(description="Must be your own tenant id if given.")
    ] = None,
) -> UsageReport:
    """The caller's own usage, grouped by day, model and/or task, with calls, units and cost.

    Whole-day ranges are answered from the daily counters; a range with a time of day reads
    the raw records.
    """
    principal = call.principal
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise Forbidden("You can only read your own usage.")
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start_at = _moment(start, month_start)
    end_at = _moment(end, month_start.replace(day=now.day) + timedelta(days=1))
    if end_at <= start_at:
        raise InvalidInput("end must be after start.")
    if end_at - start_at > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidInput(f"The range is limited to {MAX_RANGE_DAYS} days.")
    groups = _groups(group_by)
    ledger = container.ledger
    catalog = load_catalog()

    def build() -> UsageReport:
        summary = usage_summary(
            ledger, principal.tenant_id, principal.plan, start_at, end_at, groups, catalog
        )
        return UsageReport(
            tenant_id=principal.tenant_id,
            plan=principal.plan,
            currency=summary.currency,
            start=start_at,
            end=end_at,
            group_by=groups,
            rows=[
                UsageRow(
                    **dict(line.group),
                    unit=line.unit,
                    calls=line.calls,
                    units=float(line.units),
                    cost=float(line.cost),
                )
                for line in summary.lines
            ],
            total_calls=summary.calls,
            total_cost=float(summary.cost),
            month_to_date_calls=ledger.month_calls(principal.tenant_id, now),
            monthly_limit=catalog.plan(principal.plan).monthly_requests,
        )

    return await call.run(build)
