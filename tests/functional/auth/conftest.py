"""Both key-store/ledger back ends, wired as the runtime wires them, plus an admin service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aimaas.auth import Authenticator, KeyStore
from aimaas.config import Settings
from aimaas.metering import Meter, UsageLedger
from aimaas.wiring import build_authenticator
from aimaas_admin import AdminService
from aimaas_admin.provisioner import NoProvisioner
from aimaas_testing.metering import moto_tables


@dataclass
class World:
    """One back end: settings, the admin API, the authenticator and what it reads."""

    name: str
    settings: Settings
    admin: AdminService
    authenticator: Authenticator
    store: KeyStore
    ledger: UsageLedger

    def app(self, **settings_changes: object) -> Any:
        """The real API app over this back end's authenticator and ledger (no models: the
        routes that need none), with ``settings_changes`` applied."""
        from aimaas.api import create_app

        container = SimpleNamespace(
            settings=replace(self.settings, **settings_changes),
            authenticator=self.authenticator,
            ledger=self.ledger,
            meter=Meter(self.ledger),
            registry=None,
            backends=None,
            batch=None,  # no Batch API here
            close=lambda: None,
        )
        return create_app(container=container)

    def bump_month_counter(self, tenant_id: str, month: str, calls: int) -> None:
        """Stand-in for ``calls`` earlier records (a hard-limit test cannot write 10,000), written
        where each adapter keeps its month counter. The counter must already exist."""
        if self.name == "sqlite":
            with self.ledger.db.transaction() as conn:  # type: ignore[attr-defined]
                conn.execute(
                    "UPDATE usage_counter_cells SET calls = calls + ? WHERE rowid = (SELECT rowid"
                    " FROM usage_counter_cells WHERE tenant_id = ? AND period = 'month' AND "
                    "bucket = ? LIMIT 1)",
                    (calls, tenant_id, month),
                )
        else:
            self.ledger.client.update_item(  # type: ignore[attr-defined]
                TableName=self.ledger.table,  # type: ignore[attr-defined]
                Key={"pk": {"S": f"CTR#{tenant_id}"}, "sk": {"S": f"MONTH#{month}#00"}},
                UpdateExpression="ADD calls :n",
                ExpressionAttributeValues={":n": {"N": str(calls)}},
            )


def make_world(name: str, settings: Settings) -> World:
    admin = AdminService(settings, actor="pytest", provisioner=NoProvisioner())
    authenticator = build_authenticator(settings, admin.ledger)
    return World(name, settings, admin, authenticator, authenticator.store, admin.ledger)


@pytest.fixture(params=["sqlite", "dynamodb"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        settings = Settings(
            key_store="sqlite",
            ledger="sqlite",
            sqlite_path=tmp_path / "a.db",
            extra={"AIMAAS_KEY_PEPPER": "test-pepper"},
        )
        yield make_world("sqlite", settings)
    else:
        with moto_tables() as env:
            settings = Settings.from_env({**env, "AIMAAS_KEY_PEPPER": "test-pepper"})
            yield make_world("dynamodb", settings)


@pytest.fixture
def store(world: World) -> KeyStore:
    return world.store
