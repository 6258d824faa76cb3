"""Reconcile the ledger with API Gateway's own count (``GetUsage``) for one key and period.

The two counts measure different things, so a difference is a finding to look at, not
automatically an error: API Gateway counts every request that passed the authorizer with
the key's usage identifier (including ones that then failed with 4xx/5xx, or 503 when usage
could not be recorded), the ledger counts billed calls only. A ledger count *above* the
gateway's is always wrong (billing for calls that never passed the gateway).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aimaas.metering import UsageLedger, day_bucket


@dataclass(frozen=True)
class ReconcileDay:
    """One day: calls in the ledger and requests API Gateway counted."""

    day: str
    ledger_calls: int
    gateway_calls: int

    @property
    def difference(self) -> int:
        """``gateway - ledger`` (positive: requests that were not billed)."""
        return self.gateway_calls - self.ledger_calls


@dataclass(frozen=True)
class ReconcileReport:
    """The comparison for one key over ``[start, end]`` (whole days, UTC)."""

    tenant_id: str
    key_id: str
    apigw_key_id: str
    usage_plan_id: str
    start: date
    end: date
    days: tuple[ReconcileDay, ...]

    @property
    def over_billed_days(self) -> list[str]:
        """Days on which the ledger has more calls than the gateway saw."""
        return [d.day for d in self.days if d.ledger_calls > d.gateway_calls]

    @property
    def matched(self) -> bool:
        """Every day's counts are equal."""
        return all(d.difference == 0 for d in self.days)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tenant_id": self.tenant_id,
            "key_id": self.key_id,
            "apigw_key_id": self.apigw_key_id,
            "usage_plan_id": self.usage_plan_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "matched": self.matched,
            "over_billed_days": self.over_billed_days,
            "days": [
                {
                    "day": d.day,
                    "ledger_calls": d.ledger_calls,
                    "gateway_calls": d.gateway_calls,
                    "difference": d.difference,
                }
                for d in self.days
            ],
        }


def gateway_daily_usage(
    client: Any, usage_plan_id: str, apigw_key_id: str, start: date, end: date
) -> dict[str, int]:
    """Requests per day for one API key from ``apigateway.get_usage`` (all pages)."""
    counts: dict[str, int] = {}
    kwargs: dict[str, Any] = {
        "usagePlanId": usage_plan_id,
        "keyId": apigw_key_id,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
    }
    while True:
        response = client.get_usage(**kwargs)
        first = date.fromisoformat(response.get("startDate", start.isoformat()))
        for key, series in (response.get("items") or {}).items():
            if key != apigw_key_id:
                continue
            for offset, (used, _remaining) in enumerate(series):
                day = (first + timedelta(days=offset)).isoformat()
                counts[day] = counts.get(day, 0) + int(used)
        if not response.get("position"):
            return counts
        kwargs["position"] = response["position"]


def reconcile(
    ledger: UsageLedger,
    client: Any,
    *,
    tenant_id: str,
    key_id: str,
    apigw_key_id: str,
    usage_plan_id: str,
    start: date,
    end: date,
) -> ReconcileReport:
    """Compare per-day call counts of one key: the ledger versus API Gateway ``GetUsage``.

    Parameters
    ----------
    start, end
        Inclusive UTC days, as ``GetUsage`` takes them.
    """
    since = datetime.combine(start, time(), tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)
    ledger_counts = Counter(
        day_bucket(r.timestamp)
        for r in ledger.records(tenant_id, since, until)
        if r.key_id == key_id
    )
    gateway = gateway_daily_usage(client, usage_plan_id, apigw_key_id, start, end)
    days = []
    day = start
    while day <= end:
        name = day.isoformat()
        days.append(ReconcileDay(name, ledger_counts.get(name, 0), gateway.get(name, 0)))
        day += timedelta(days=1)
    return ReconcileReport(
        tenant_id=tenant_id,
        key_id=key_id,
        apigw_key_id=apigw_key_id,
        usage_plan_id=usage_plan_id,
        start=start,
        end=end,
        days=tuple(days),
    )
