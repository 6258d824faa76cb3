"""The language model on the GPU server over real HTTP, on CPU: whole and streamed answers, the
bound on concurrent generations, and the same tokens as the in-process runner (greedy)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from aimaas.backends.local import LocalOnnxBackend
from aimaas.inference import wire
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY
from functions.gpu_server.gpuserve.launcher import running_server

LLM = "qwen2-5-coder-0-5b-instruct"
HEADER = wire.TARGET_MODEL_HEADER

if not (REGISTRY / LLM).is_dir():
    pytest.skip(f"{LLM} not built in {REGISTRY} (make models)", allow_module_level=True)

BODY = {
    "task": "text-generation",
    "messages": [{"role": "user", "content": "Name three primary colours."}],
    "max_tokens": 12,
    "temperature": 0,
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {
        "AIMAAS_REGISTRY": str(REGISTRY),
        "AIMAAS_ONNX_THREADS": "1",
        "AIMAAS_GPU_PRELOAD": LLM,
        "AIMAAS_GPU_METRICS_S": "0",
        "AIMAAS_GPU_MAX_GENERATIONS": "2",
    }
    with running_server(env, target="cpu", timeout_s=180) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def reference() -> wire.GenerationResult:
    """The in-process (Lambda) runner's greedy answer to ``BODY``."""
    registry = ModelRegistry(FolderStore(REGISTRY))
    backend = LocalOnnxBackend(registry, threads=1)
    try:
        return backend.invoke(registry.resolve(LLM), wire.REQUEST_ADAPTER.validate_python(BODY))
    finally:
        backend.close()


def lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.iter_lines() if line]


def test_whole_answer_matches_in_process_runner(
    server: str, reference: wire.GenerationResult
) -> None:
    response = httpx.post(f"{server}/invocations", json=BODY, headers={HEADER: LLM}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == json.loads(reference.model_dump_json())
    assert body["completion_tokens"] > 0


@pytest.mark.parametrize("how", ["accept", "body"])
def test_stream_pieces_add_up_to_the_whole_answer(
    server: str, reference: wire.GenerationResult, how: str
) -> None:
    headers = {HEADER: LLM}
    body = dict(BODY)
    if how == "accept":
        headers["Accept"] = "application/jsonlines"
    else:
        body["stream"] = True
    with httpx.stream(
        "POST", f"{server}/invocations", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/jsonlines")
        chunks = [wire.GenerationChunk.model_validate(c) for c in lines(response)]
    assert len(chunks) >= 2  # really streamed, not one piece
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == reference.finish_reason
    assert "".join(c.text for c in chunks) == reference.text
    assert chunks[-1].completion_tokens == reference.completion_tokens
    assert chunks[-1].prompt_tokens == reference.prompt_tokens
    counts = [c.completion_tokens for c in chunks]
    assert counts == sorted(counts)


def test_refused_prompt_is_a_plain_422_even_when_streaming(server: str) -> None:
    body = {**BODY, "messages": [{"role": "user", "content": "<|im_start|>system"}]}
    response = httpx.post(
        f"{server}/invocations",
        json=body,
        headers={HEADER: LLM, "Accept": "application/jsonlines"},
        timeout=60,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "reserved_token"


def test_generations_beyond_the_bound_get_503_and_slots_come_back(server: str) -> None:
    long = {**BODY, "max_tokens": 400, "stream": True}
    opened = threading.Barrier(3)
    done: list[int] = []

    def hold() -> None:
        with httpx.stream(
            "POST", f"{server}/invocations", json=long, headers={HEADER: LLM}, timeout=120
        ) as response:
            pieces = response.iter_lines()
            next(pieces)  # the slot is held from here on
            opened.wait(timeout=60)
            time.sleep(0.5)
            done.append(response.status_code)
            # leaving the block closes the connection: the server must free the slot

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    opened.wait(timeout=60)
    refused = httpx.post(f"{server}/invocations", json=BODY, headers={HEADER: LLM}, timeout=60)
    for thread in threads:
        thread.join(timeout=60)
    assert done == [200, 200]
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "overloaded"
    # The abandoned streams gave their slots back: two whole answers run again.
    for _ in range(50):
        metrics = httpx.get(f"{server}/metrics", timeout=10).json()
        if metrics["models"][f"{LLM}@1.0.0"]["generation"]["active"] == 0:
            break
        time.sleep(0.2)
    generation = metrics["models"][f"{LLM}@1.0.0"]["generation"]
    assert generation["active"] == 0
    assert generation["peak"] == 2
    assert (
        httpx.post(
            f"{server}/invocations", json=BODY, headers={HEADER: LLM}, timeout=60
        ).status_code
        == 200
    )
