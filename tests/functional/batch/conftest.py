"""An app with real models and the real local batch adapters (folder, SQLite, worker thread),
wired from Settings; the tenant comes from the ``X-Test-Tenant`` header (as the classifier
tests do), so two tenants can be played against each other."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimaas.api import create_app
from aimaas.api.container import Container, build_container
from aimaas.config import Settings
from aimaas.metering import UsageRecord
from aimaas_testing.media import image_bytes, wav
from aimaas_testing.paths import REGISTRY, has_model
from tests.functional.classifiers.conftest import HeaderTenantAuthenticator


@dataclasses.dataclass
class BatchApp:
    client: TestClient
    container: Container

    def headers(self, tenant: str) -> dict[str, str]:
        return {"X-Test-Tenant": tenant}

    def upload(self, lines: list[Any], tenant: str = "a") -> Any:
        data = b"".join(
            (x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines
        )
        return self.client.post(
            "/v1/files",
            files={"file": ("input.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
            headers=self.headers(tenant),
        )

    def create(self, file_id: str, tenant: str = "a", endpoint: str = "/v1/embeddings") -> Any:
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}
        return self.client.post("/v1/batches", json=body, headers=self.headers(tenant))

    def get(self, path: str, tenant: str = "a") -> Any:
        return self.client.get(path, headers=self.headers(tenant))

    def wait(self, batch_id: str, tenant: str = "a", timeout_s: float = 120) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            body = self.get(f"/v1/batches/{batch_id}", tenant).json()
            if body["status"] in {"completed", "failed", "cancelled"}:
                return body
            time.sleep(0.05)
        raise AssertionError(f"batch {batch_id} did not end: {body}")

    def lines(self, file_id: str, tenant: str = "a") -> list[dict[str, Any]]:
        response = self.get(f"/v1/files/{file_id}/content", tenant)
        assert response.status_code == 200, response.text
        return [json.loads(x) for x in response.content.splitlines() if x.strip()]

    def records(self, tenant: str = "a") -> list[UsageRecord]:
        now = datetime.now(UTC)
        return list(
            self.container.ledger.records(
                f"t_{tenant}", now - timedelta(days=1), now + timedelta(days=1)
            )
        )


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., BatchApp]]:
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    made: list[BatchApp] = []

    def make(**overrides: Any) -> BatchApp:
        settings = Settings(
            registry_path=REGISTRY,
            sqlite_path=tmp_path / "data" / "aimaas.db",
            onnx_threads=1,
            **overrides,
        )
        container = build_container(settings)
        container.authenticator = HeaderTenantAuthenticator()
        app = BatchApp(TestClient(create_app(container=container)), container)
        made.append(app)
        return app

    yield make
    for app in made:
        app.client.close()
        app.container.close()


@pytest.fixture
def app(make_app: Callable[..., BatchApp]) -> BatchApp:
    return make_app(batch_chunk_lines=3)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mixed_lines() -> list[Any]:
    """Four tasks and one line that is not JSON."""
    return [
        {"custom_id": "emb-1", "method": "POST", "url": "/v1/embeddings",
         "body": {"input": "The parcel never arrived."}},
        {"custom_id": "txt-1", "method": "POST", "url": "/v1/text-classification",
         "body": {"text": "The match ended in a draw after extra time."}},
        b"{this is not json",
        {"custom_id": "img-1", "method": "POST", "url": "/v1/image-classification?top_k=3",
         "body": {"image": b64(image_bytes())}},
        {"custom_id": "aud-1", "method": "POST", "url": "/v1/audio-classification",
         "body": {"audio": b64(wav(1.0))}},
        {"custom_id": "emb-2", "method": "POST", "url": "/v1/embeddings",
         "body": {"input": ["one", "two"]}},
        {"custom_id": "bad-url", "method": "POST", "url": "/v1/usage", "body": {}},
    ]  # fmt: skip


def by_hand(make_app: Callable[..., BatchApp], chunk_lines: int) -> BatchApp:
    """An app whose batch chunks wait in a thread queue that no thread drains: the test runs
    them (``app.container.batch.queue.pending()``) through a worker of its own."""
    from aimaas.api.container import BatchServices
    from aimaas.batch.local import FolderFileStore, SqliteJobStore, ThreadWorkQueue

    app = make_app(batch_chunk_lines=chunk_lines, batch_queue="none")
    data = app.container.settings.sqlite_path
    app.container.batch = BatchServices(
        FolderFileStore(data.parent / "files"), SqliteJobStore(data), ThreadWorkQueue(), chunk_lines
    )
    return app


def embedding_lines(count: int, prefix: str = "e") -> list[dict[str, Any]]:
    """``count`` small embeddings lines, ``custom_id`` ``<prefix><n>``."""
    return [
        {"custom_id": f"{prefix}{n}", "method": "POST", "url": "/v1/embeddings",
         "body": {"input": f"line {n}"}}
        for n in range(count)
    ]  # fmt: skip
