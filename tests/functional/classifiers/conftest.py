"""An app with real models, the real local classifier store and ledger, wired from Settings.

The container is built by :func:`aimaas.api.container.build_container` (so the wiring of the
classifier store is what is tested); only the authenticator is replaced, by one that takes the
tenant from the ``X-Test-Tenant`` header, so two tenants can be played against each other.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimaas.api import create_app
from aimaas.api.container import Container, build_container
from aimaas.auth import Principal
from aimaas.config import Settings
from aimaas.metering import UsageRecord
from aimaas_testing.auth import Unlimited
from aimaas_testing.paths import REGISTRY, REPO_ROOT, has_model

TICKETS = json.loads((REPO_ROOT / "tests" / "data" / "support_tickets.json").read_text())


class HeaderTenantAuthenticator(Unlimited):
    """The tenant named by ``X-Test-Tenant`` (``a`` when absent), on the pro plan, no limits."""

    def identify(self, headers: Mapping[str, str]) -> Principal:
        tenant = headers.get("x-test-tenant", "a")
        return Principal(tenant_id=f"t_{tenant}", key_id=f"k_{tenant}", plan="pro")


@dataclasses.dataclass
class App:
    client: TestClient
    container: Container
    data_dir: Path

    def records(self, tenant: str = "a") -> list[UsageRecord]:
        now = datetime.now(UTC)
        return list(
            self.container.ledger.records(
                f"t_{tenant}", now - timedelta(days=1), now + timedelta(days=1)
            )
        )

    def post(self, path: str, body: Any, tenant: str = "a", **headers: str) -> Any:
        return self.client.post(path, json=body, headers={"X-Test-Tenant": tenant, **headers})

    def get(self, path: str, tenant: str = "a") -> Any:
        return self.client.get(path, headers={"X-Test-Tenant": tenant})

    def delete(self, path: str, tenant: str = "a") -> Any:
        return self.client.delete(path, headers={"X-Test-Tenant": tenant})


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start (or restart) the app over the same data folder (``Settings`` fields as keywords)."""
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    made: list[App] = []

    def make(**overrides: Any) -> App:
        settings = Settings(
            registry_path=REGISTRY,
            sqlite_path=tmp_path / "data" / "aimaas.db",
            onnx_threads=1,
            **overrides,
        )
        settings.sqlite_path.parent.mkdir(exist_ok=True)
        container = build_container(settings)
        container.authenticator = HeaderTenantAuthenticator()
        app = App(TestClient(create_app(container=container)), container, tmp_path / "data")
        made.append(app)
        return app

    yield make
    for app in made:
        app.client.close()
        app.container.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def trained(app: App) -> dict[str, Any]:
    """Tenant ``a``'s classifier on the 120 training tickets."""
    response = app.post("/v1/classifiers", {"name": "tickets", "examples": TICKETS["train"]})
    assert response.status_code == 201, response.text
    return response.json()
