"""The admin CLI end to end on a SQLite file: every command, and the audit trail it leaves."""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimaas.config import Settings
from aimaas.errors import Forbidden
from aimaas.wiring import build_authenticator, build_ledger
from aimaas_admin.cli import app
from aimaas_testing.metering import sample_record


@pytest.fixture
def cli(tmp_path: Path):
    db = tmp_path / "admin.db"
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--db", str(db), "--actor", "ops-alice", *args])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    run.db = db  # type: ignore[attr-defined]
    return run


def test_tenant_key_plan_lifecycle_and_audit(cli) -> None:
    created = json.loads(
        cli("tenant", "create", "Acme Corp", "--plan", "pro", "--id", "t_acme").stdout
    )
    assert created == {"tenant_id": "t_acme", "name": "Acme Corp", "plan": "pro"}
    assert cli("tenant", "create", "X", "--plan", "platinum", ok=False).exit_code == 1
    bad_id = cli("tenant", "create", "X", "--id", "t#1", ok=False)
    assert bad_id.exit_code == 1 and "tenant id" in bad_id.output
    issued = cli("key", "create", "t_acme", "--label", "ci").stdout
    key_id = issued.split("key_id: ")[1].split()[0]
    key = issued.split("key:    ")[1].split()[0]
    assert key.startswith(f"amk_{key_id}_")

    settings = Settings(sqlite_path=cli.db)
    authenticator = build_authenticator(settings, build_ledger(settings))
    assert authenticator.authenticate({"x-api-key": key}).plan == "pro"

    listed = cli("key", "list", "t_acme").stdout
    assert key_id in listed and key not in listed
    assert json.loads(listed)["status"] == "active"

    rotated = cli("key", "rotate", key_id, "--grace-seconds", "600").stdout
    new_key = rotated.split("key:    ")[1].split()[0]
    assert authenticator.authenticate({"x-api-key": key}).key_id == key_id  # in its grace
    cli("key", "revoke", key_id)
    with pytest.raises(Forbidden):
        authenticator.authenticate({"x-api-key": key})
    assert authenticator.authenticate({"x-api-key": new_key}).plan == "pro"

    assert "now on plan enterprise" in cli("plan", "change", "t_acme", "enterprise").stdout
    assert authenticator.authenticate({"x-api-key": new_key}).plan == "enterprise"
    cli("tenant", "suspend", "t_acme")
    with pytest.raises(Forbidden):
        authenticator.authenticate({"x-api-key": new_key})
    cli("tenant", "activate", "t_acme")
    assert {"t_acme"} == {
        json.loads(line)["tenant_id"] for line in cli("tenant", "list").stdout.splitlines()
    }
    assert "free" in cli("plan", "list").stdout

    events = [json.loads(line) for line in cli("audit", "list").stdout.splitlines()]
    actions = [e["action"] for e in events]
    for expected in (
        "tenant.create",
        "key.create",
        "key.list",
        "key.rotate",
        "key.revoke",
        "plan.change",
        "tenant.status",
        "tenant.list",
    ):
        assert expected in actions
    failed = [e for e in events if e["outcome"] != "ok"]
    assert failed and failed[0]["action"] == "tenant.create"  # the platinum attempt
    assert all(e["actor"] == "ops-alice" and e["host"] == socket.gethostname() for e in events)
    assert all(key not in json.dumps(e) and new_key not in json.dumps(e) for e in events)

    exported = cli("audit", "export", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) >= len(events)  # listing the audit log is itself audited
    assert set(rows[0]) == {
        "event_id",
        "at",
        "actor",
        "host",
        "action",
        "target",
        "outcome",
        "details",
    }
    # Append-only: the database refuses to change or delete an event.
    with sqlite3.connect(cli.db) as conn, pytest.raises(sqlite3.DatabaseError, match="append"):
        conn.execute("UPDATE audit_events SET actor = 'mallory'")
    with sqlite3.connect(cli.db) as conn, pytest.raises(sqlite3.DatabaseError, match="append"):
        conn.execute("DELETE FROM audit_events")


def test_usage_and_invoices(cli, tmp_path: Path) -> None:
    cli("tenant", "create", "Acme", "--plan", "free", "--id", "t_acme")
    ledger = build_ledger(Settings(sqlite_path=cli.db))
    stamp = datetime(2026, 3, 14, 9, tzinfo=UTC)
    ledger.put(sample_record("a", tenant_id="t_acme", units=2, timestamp=stamp))
    ledger.put(
        sample_record(
            "b",
            tenant_id="t_acme",
            units=3,
            unit="image",
            task="image-classification",
            model="mobilenet-v2",
            timestamp=stamp,
        )
    )
    usage = json.loads(
        cli(
            "usage",
            "show",
            "t_acme",
            "--start",
            "2026-03-01",
            "--end",
            "2026-04-01",
            "--group-by",
            "task",
        ).stdout
    )
    assert usage["calls"] == 2
    assert {line["task"] for line in usage["lines"]} == {"embeddings", "image-classification"}
    as_json = json.loads(cli("invoice", "t_acme", "--month", "2026-03").stdout)
    assert as_json["total_calls"] == 2 and as_json["invoice_id"] == "INV-t_acme-2026-03"
    as_csv = cli("invoice", "t_acme", "--month", "2026-03", "--format", "csv").stdout
    assert as_csv.splitlines()[-1].split(",")[7] == as_json["total"]
    target = tmp_path / "invoice.html"
    cli("invoice", "t_acme", "--month", "2026-03", "--format", "html", "--output", str(target))
    assert target.read_text().startswith("<!doctype html>")
    assert cli("invoice", "t_nobody", "--month", "2026-03", ok=False).exit_code == 1
