"""``console-link``: a short-lived key, printed only inside the link's fragment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from aimaas.config import Settings
from aimaas.errors import Forbidden
from aimaas.wiring import build_audit_log, build_authenticator, build_key_store, build_ledger
from aimaas_admin.cli import console_link

CONSOLE = "https://d111111abcdef8.cloudfront.net/"


@pytest.fixture
def cli(tmp_path: Path):
    from aimaas_admin.cli import app

    db = tmp_path / "admin.db"
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--db", str(db), "--actor", "ops-alice", *args])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    run.db = db  # type: ignore[attr-defined]
    run("tenant", "create", "Acme", "--plan", "pro", "--id", "t_acme")
    return run


def test_link_carries_a_fifteen_minute_key_in_the_fragment_only(cli) -> None:
    before = datetime.now(UTC)
    result = cli("console-link", "--tenant", "t_acme", "--console", CONSOLE)
    link = result.stdout.strip()
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CONSOLE
    assert parts.query == ""
    assert parts.fragment.startswith("signin=amk_")
    key = parts.fragment.removeprefix("signin=")
    assert key not in result.stderr  # the key is printed once, in the link

    settings = Settings(sqlite_path=cli.db)
    authenticator = build_authenticator(settings, build_ledger(settings))
    principal = authenticator.authenticate({"authorization": f"Bearer {key}"})
    assert principal.tenant_id == "t_acme"

    store = build_key_store(settings)
    record = store.get_key(principal.key_id)
    store.close()
    assert record is not None and record.expires_at is not None
    lifetime = record.expires_at - before
    assert timedelta(minutes=14, seconds=50) < lifetime <= timedelta(minutes=15, seconds=5)
    assert record.usable(record.expires_at - timedelta(seconds=1))
    assert not record.usable(record.expires_at)
    assert principal.key_id in result.stderr and "expires" in result.stderr

    # Audited with the key id and expiry; the key itself is nowhere in the log.
    log = build_audit_log(settings)
    events = [
        e
        for e in log.list(before - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))
        if e.action == "key.console_link"
    ]
    (event,) = events
    assert event.target == "t_acme" and event.actor == "ops-alice"
    assert event.details["key_id"] == principal.key_id
    assert key not in json.dumps(event.details)


def test_an_expired_link_key_is_refused_and_swept(cli) -> None:
    link = cli("console-link", "--tenant", "t_acme", "--minutes", "1", "--console", CONSOLE)
    key = link.stdout.strip().split("#signin=")[1]
    settings = Settings(sqlite_path=cli.db)
    store = build_key_store(settings)
    (record,) = [r for r in store.list_keys("t_acme") if r.label == "console link"]
    # Age the key past its minute, as time would.
    from dataclasses import replace

    store.save_key(replace(record, expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    store.close()
    authenticator = build_authenticator(settings, build_ledger(settings))
    with pytest.raises(Forbidden):
        authenticator.authenticate({"authorization": f"Bearer {key}"})
    assert record.key_id in cli("key", "sweep").stdout


def test_bad_requests_issue_nothing(cli) -> None:
    assert cli("console-link", "--tenant", "t_nobody", ok=False).exit_code == 1
    assert cli("console-link", "--tenant", "t_acme", "--minutes", "61", ok=False).exit_code != 0
    bad = cli("console-link", "--tenant", "t_acme", "--console", f"{CONSOLE}?x=1", ok=False)
    assert bad.exit_code == 1 and "query" in bad.output
    keys = cli("key", "list", "t_acme").stdout
    assert keys.strip() == ""


def test_link_without_a_console_points_at_the_local_server(cli, monkeypatch) -> None:
    monkeypatch.delenv("AIMAAS_CONSOLE_URL", raising=False)
    link = cli("console-link", "--tenant", "t_acme").stdout.strip()
    assert link.startswith("http://127.0.0.1:8000/console/#signin=amk_")
    monkeypatch.setenv("AIMAAS_CONSOLE_URL", CONSOLE)
    assert cli("console-link", "--tenant", "t_acme").stdout.startswith(f"{CONSOLE}#signin=")


def test_console_link_replaces_any_fragment() -> None:
    assert console_link(f"{CONSOLE}#keys", "amk_a_b") == f"{CONSOLE}#signin=amk_a_b"
