"""The app on the dev stage, wired by name to the real GPU server over HTTP (no fakes).

``stages.toml`` sends ``all-minilm-l6-v2`` to the GPU on dev: with ``AIMAAS_GPU_BACKEND=http``
the app's router must send it to the GPU server process (``functions/gpu_server``, CPU provider
here) while every other model stays in process, and both answers must be the same numbers.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimaas_testing.auth import FixedAuthenticator
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
GPU_MODEL = "all-minilm-l6-v2"
TEXTS = ["The central bank left interest rates unchanged.", "我喜欢在周末去公园散步。"]

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from functions.gpu_server.gpuserve.launcher import running_server

    env = {"AIMAAS_REGISTRY": str(REGISTRY), "AIMAAS_ONNX_THREADS": "1"}
    log = tmp_path_factory.mktemp("gpu-server") / "server.log"
    try:
        with running_server(env, target="cpu", log_path=log) as base_url:
            yield base_url
    except Exception as exc:
        if isinstance(exc, (AssertionError, pytest.fail.Exception)):
            raise
        text = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        pytest.fail(f"GPU server did not start ({exc!r}); its log:\n{text}")


@pytest.fixture(scope="module")
def client(gpu_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from aimaas.api import build_container, create_app
    from aimaas.auth import Principal
    from aimaas.config import Settings

    settings = dataclasses.replace(
        Settings.from_env({}),
        stage="dev",
        registry_path=REGISTRY,
        sqlite_path=tmp_path_factory.mktemp("gpu-routing") / "aimaas.db",
        gpu_backend="http",
        gpu_url=gpu_server,
        gpu_timeout_s=60.0,
    )
    container = build_container(settings)
    container.authenticator = FixedAuthenticator(Principal("t_gpu", "k_gpu", "pro"))
    app = create_app(container=container)
    with TestClient(app) as test_client:
        yield test_client
    container.close()


def _vectors(body: dict[str, Any]) -> np.ndarray:
    return np.asarray([item["embedding"] for item in body["data"]])


def test_gpu_model_goes_to_the_gpu_server_and_matches_in_process(client: TestClient) -> None:
    container = client.app.state.container
    manifest = container.registry.resolve(GPU_MODEL)
    assert container.backends.backend_for(manifest).name == "http"
    remote = client.post("/v1/embeddings", json={"input": TEXTS, "model": GPU_MODEL})
    assert remote.status_code == 200, remote.text
    body = remote.json()
    assert body["model"] == manifest.model_id and body["usage"]["prompt_tokens"] > 0
    from aimaas.inference import EmbeddingsRequest

    local = container.backends.cpu.invoke(manifest, EmbeddingsRequest(texts=TEXTS))
    assert np.allclose(_vectors(body), np.asarray(local.embeddings), atol=1e-5)


def test_other_models_stay_in_process(client: TestClient) -> None:
    container = client.app.state.container
    int8 = container.registry.resolve("all-minilm-l6-v2-int8")
    assert container.backends.backend_for(int8).name == "local"
    response = client.post("/v1/text-classification", json={"text": TEXTS[0]})
    assert response.status_code == 200, response.text


def test_gpu_server_refusal_is_a_422_and_not_billed(client: TestClient) -> None:
    before = _count_records(client)
    response = client.post("/v1/embeddings", json={"input": ["   "], "model": GPU_MODEL})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert _count_records(client) == before


def _count_records(client: TestClient) -> int:
    from datetime import UTC, datetime, timedelta

    ledger = client.app.state.container.ledger
    now = datetime.now(UTC)
    return len(list(ledger.records("t_gpu", now - timedelta(days=1), now + timedelta(days=1))))


def test_gpu_server_down_is_a_503(tmp_path: Path) -> None:
    import dataclasses as dc

    from aimaas.api import build_container, create_app
    from aimaas.auth import Principal
    from aimaas.config import Settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens after close
    settings = dc.replace(
        Settings.from_env({}),
        stage="dev",
        registry_path=REGISTRY,
        sqlite_path=tmp_path / "aimaas.db",
        gpu_backend="http",
        gpu_url=dead,
        gpu_timeout_s=2.0,
    )
    container = build_container(settings)
    container.authenticator = FixedAuthenticator(Principal("t_gpu", "k_gpu", "pro"))
    app = create_app(container=container)
    with TestClient(app) as test_client:
        response = test_client.post("/v1/embeddings", json={"input": "x", "model": GPU_MODEL})
    container.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_unavailable"
