"""Audit export formats and the reconcile arithmetic, without storage or AWS."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest

from aimaas_admin.audit import AuditEvent, export_events
from aimaas_admin.reconcile import ReconcileDay, gateway_daily_usage

EVENT = AuditEvent(
    action="key.create",
    target="t_1",
    actor="alice",
    host="ops-1",
    at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    details={"key_id": "abc", "label": 'a "quoted", label'},
)


def test_export_jsonl_and_csv_roundtrip() -> None:
    (line,) = export_events([EVENT], "jsonl").splitlines()
    assert json.loads(line) == {
        "action": "key.create",
        "target": "t_1",
        "actor": "alice",
        "host": "ops-1",
        "at": "2026-01-02T03:04:05.000000+00:00",
        "outcome": "ok",
        "details": {"key_id": "abc", "label": 'a "quoted", label'},
        "event_id": EVENT.event_id,
    }
    (row,) = csv.DictReader(io.StringIO(export_events([EVENT], "csv")))
    assert json.loads(row["details"]) == dict(EVENT.details)
    assert row["actor"] == "alice" and row["host"] == "ops-1"
    with pytest.raises(ValueError, match="jsonl or csv"):
        export_events([EVENT], "xml")


def test_gateway_daily_usage_follows_pages_and_ignores_other_keys() -> None:
    pages = iter(
        [
            {
                "startDate": "2026-03-30",
                "position": "next",
                "items": {"k1": [[3, 7], [4, 6]], "k2": [[100, 0], [100, 0]]},
            },
            {"startDate": "2026-04-01", "items": {"k1": [[5, 5]]}},
        ]
    )

    class Client:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def get_usage(self, **kwargs):
            self.calls.append(kwargs)
            return next(pages)

    client = Client()
    usage = gateway_daily_usage(client, "plan", "k1", date(2026, 3, 30), date(2026, 4, 1))
    assert usage == {"2026-03-30": 3, "2026-03-31": 4, "2026-04-01": 5}  # across a month end
    assert client.calls[1]["position"] == "next"
    assert ReconcileDay("2026-03-30", ledger_calls=2, gateway_calls=3).difference == 1
