"""Time helpers every store shares: aware UTC times, sortable ISO stamps, day and month keys.

Standard library only (the authorizer zip imports it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Period = Literal["day", "month"]


def now_utc() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """A fixed-width, sortable ISO 8601 UTC timestamp (microseconds)."""
    return utc(moment).isoformat(timespec="microseconds")


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


def months(start: datetime, end: datetime) -> list[str]:
    """Every ``YYYY-MM`` from the month of ``start`` to the month of ``end``, both included."""
    start, end = utc(start), utc(end)
    year, month = start.year, start.month
    found = []
    while (year, month) <= (end.year, end.month):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found
