"""``/v1/chat/completions`` through the GPU backend path, whole and streamed, with no fakes.

A stage that lists the language model in ``gpu_models`` (here a copy of ``stages.toml`` whose
dev stage does, read through ``AIMAAS_CONFIG_DIR``) sends it to the GPU server process over the
HTTP backend; the GPU server runs it on its CPU fallback. The answer must be the in-process
model's, the stream must arrive in pieces, and each call must be billed exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aimaas_testing.auth import FixedAuthenticator
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
LLM = "qwen2-5-coder-0-5b-instruct"
CHAT = {
    "model": LLM,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 10,
    "temperature": 0,
}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.skipif(
    not any((REGISTRY / LLM).glob("*/manifest.json")), reason=f"{LLM} is not built"
)


def _config_with_llm_on_gpu(folder: Path) -> Path:
    """A config folder whose dev stage lists the language model in ``gpu_models``."""
    source = ROOT / "src" / "aimaas" / "data"
    shutil.copy(source / "plans.toml", folder / "plans.toml")
    text = (source / "stages.toml").read_text()
    dev = tomllib.loads(text)["stages"]["dev"]["gpu_models"]
    old = "gpu_models = " + json.dumps(dev).replace('","', '", "')
    assert old in text, "stages.toml's dev gpu_models line changed shape"
    new = "gpu_models = " + json.dumps([*dev, LLM]).replace('","', '", "')
    (folder / "stages.toml").write_text(text.replace(old, new, 1))
    return folder


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from aimaas.api import build_container, create_app
    from aimaas.auth import Principal
    from aimaas.config import Settings
    from functions.gpu_server.gpuserve.launcher import running_server

    config = _config_with_llm_on_gpu(tmp_path_factory.mktemp("config"))
    env = {"AIMAAS_REGISTRY": str(REGISTRY), "AIMAAS_ONNX_THREADS": "1"}
    env |= {"AIMAAS_GPU_PRELOAD": LLM, "AIMAAS_GPU_METRICS_S": "0"}
    saved = os.environ.get("AIMAAS_CONFIG_DIR")
    os.environ["AIMAAS_CONFIG_DIR"] = str(config)
    try:
        with running_server(env, target="cpu", timeout_s=180) as gpu_url:
            settings = dataclasses.replace(
                Settings.from_env({}),
                stage="dev",
                registry_path=REGISTRY,
                sqlite_path=tmp_path_factory.mktemp("gpu-llm") / "aimaas.db",
                gpu_backend="http",
                gpu_url=gpu_url,
                gpu_timeout_s=60.0,
            )
            container = build_container(settings)
            container.authenticator = FixedAuthenticator(Principal("t_llm", "k_llm", "pro"))
            with TestClient(create_app(container=container)) as test_client:
                yield test_client
            container.close()
    finally:
        if saved is None:
            os.environ.pop("AIMAAS_CONFIG_DIR", None)
        else:
            os.environ["AIMAAS_CONFIG_DIR"] = saved


def _records(client: TestClient) -> list:
    ledger = client.app.state.container.ledger
    now = datetime.now(UTC)
    return list(ledger.records("t_llm", now - timedelta(days=1), now + timedelta(days=1)))


def _sse(text: str) -> list:
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_the_stage_sends_the_language_model_to_the_gpu_backend(client: TestClient) -> None:
    container = client.app.state.container
    manifest = container.registry.resolve(LLM)
    assert container.backends.backend_for(manifest).name == "http"


def test_whole_and_streamed_chat_through_the_gpu_server(client: TestClient) -> None:
    from aimaas.inference import wire

    container = client.app.state.container
    manifest = container.registry.resolve(LLM)
    local = container.backends.cpu.invoke(
        manifest,
        wire.GenerationRequest(messages=CHAT["messages"], max_tokens=10, temperature=0),
    )
    before = len(_records(client))
    whole = client.post("/v1/chat/completions", json=CHAT)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["choices"][0]["message"]["content"] == local.text
    assert body["usage"]["completion_tokens"] == local.completion_tokens
    assert len(_records(client)) == before + 1

    streamed = client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert streamed.status_code == 200, streamed.text
    events = _sse(streamed.text)
    assert events[-1] == "[DONE]"
    pieces = [
        e["choices"][0]["delta"].get("content", "")
        for e in events[:-1]
        if e.get("choices") and e["choices"][0]["delta"].get("content")
    ]
    assert len(pieces) >= 2, pieces  # piece by piece from the GPU server, not one buffer
    assert "".join(pieces) == local.text
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == local.completion_tokens
    assert usage["prompt_tokens"] == local.prompt_tokens
    records = _records(client)
    assert len(records) == before + 2  # one per call: the backend never bills
    assert records[-1].status == 200
