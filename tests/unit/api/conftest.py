"""App fixtures for the API unit tests: real models and ledger, a fake authenticator.

The authenticator is the only fake (unit tier): it accepts ``Bearer good-key``. The functional
tier uses real keys issued through ``aimaas.auth``.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from aimaas import errors
from aimaas.api import Container, create_app
from aimaas.auth import Principal
from aimaas.backends import BackendRouter, InferenceBackend, LocalOnnxBackend
from aimaas.backends.router import UnconfiguredGpuBackend
from aimaas.config import Settings, StageConfig
from aimaas.metering import Meter, UsageLedger, UsageRecord
from aimaas.metering.sqlite import SqliteLedger
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.auth import Unlimited
from aimaas_testing.media import wav
from aimaas_testing.paths import REGISTRY

AUTH = {"Authorization": "Bearer good-key"}
PRINCIPAL = Principal(tenant_id="t_unit", key_id="k_unit", plan="pro")


class FakeAuthenticator(Unlimited):
    """Accepts exactly ``Bearer good-key``, with no limits."""

    def identify(self, headers: Mapping[str, str]) -> Principal:
        if headers.get("authorization") == "Bearer good-key":
            return PRINCIPAL
        raise errors.Unauthorized("No valid API key.")


@dataclasses.dataclass
class Harness:
    client: TestClient
    ledger: UsageLedger
    container: Container

    def records(self) -> list[UsageRecord]:
        now = datetime.now(UTC)
        return list(
            self.ledger.records(
                PRINCIPAL.tenant_id, now - timedelta(days=1), now + timedelta(days=1)
            )
        )


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    return ModelRegistry(FolderStore(REGISTRY), StageConfig.load("local").default_models)


@pytest.fixture(scope="session")
def cpu(registry: ModelRegistry) -> LocalOnnxBackend:
    return LocalOnnxBackend(registry, threads=1)


@pytest.fixture
def make_harness(
    tmp_path: Path, registry: ModelRegistry, cpu: LocalOnnxBackend
) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        *,
        gpu_models: tuple[str, ...] = (),
        gpu: InferenceBackend | None = None,
        ledger: UsageLedger | None = None,
        registry_: ModelRegistry | None = None,
        cpu_: InferenceBackend | None = None,
        max_body_bytes: int = 6 * 1024 * 1024,
        request_deadline_s: float = 25.0,
    ) -> Harness:
        settings = Settings(
            registry_path=REGISTRY,
            sqlite_path=tmp_path / "db.sqlite",
            max_body_bytes=max_body_bytes,
            request_deadline_s=request_deadline_s,
        )
        real_ledger = SqliteLedger(tmp_path / f"ledger{len(made)}.sqlite")
        container = Container(
            settings=settings,
            registry=registry_ or registry,
            backends=BackendRouter(cpu_ or cpu, gpu or UnconfiguredGpuBackend(), gpu_models),
            authenticator=FakeAuthenticator(),
            meter=Meter(ledger or real_ledger, sleep=lambda _: None),
            ledger=real_ledger,
        )
        harness = Harness(TestClient(create_app(container=container)), real_ledger, container)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.client.close()
        harness.ledger.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture(scope="session")
def photo() -> bytes:
    """A real photo (scikit-image's chelsea the cat) as JPEG."""
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def make_wav() -> Callable[..., bytes]:
    """Build a PCM WAV of a tone (:func:`aimaas_testing.media.wav`)."""
    return wav
