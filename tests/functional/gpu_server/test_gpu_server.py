"""The GPU server over real HTTP, on CPU: SageMaker routes, batching, parity with the Lambda path.

The server runs as a child process (the ``serve`` script) on a free 127.0.0.1 port with the
real models of the registry; the reference for every answer is the in-process backend the
inference Lambda uses (``LocalOnnxBackend``), called directly.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from aimaas.backends.local import LocalOnnxBackend
from aimaas.inference import wire
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY
from functions.gpu_server.gpuserve.launcher import running_server

REPO = Path(__file__).resolve().parents[3]
TEXT_MODEL = "all-minilm-l6-v2"
IMAGE_MODEL = "mobilenet-v2"
HEADER = wire.TARGET_MODEL_HEADER
BODY_LIMIT = 200_000

if not all((REGISTRY / m).is_dir() for m in (TEXT_MODEL, IMAGE_MODEL)):
    pytest.skip(f"models not built in {REGISTRY} (make models)", allow_module_level=True)

TEXTS = [
    "hello world",
    "The central bank left interest rates unchanged on Thursday.",
    "我喜欢在周末去公园散步。",
    "A long sentence about football, elections and quantum computers that goes on and on "
    "so that it lands in a different length bucket from the short ones.",
    "ok",
    "Weather today: sunny with a chance of rain in the evening.",
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {
        "AIMAAS_REGISTRY": str(REGISTRY),
        "AIMAAS_ONNX_THREADS": "1",
        "AIMAAS_GPU_PRELOAD": f"{TEXT_MODEL},{IMAGE_MODEL}",
        "AIMAAS_GPU_METRICS_S": "0",
        # A generous wait so that concurrent test requests surely share batches.
        "AIMAAS_BATCH_MAX_WAIT_MS": "25",
        "AIMAAS_MAX_BODY_BYTES": str(BODY_LIMIT),
    }
    with running_server(env, target="cpu") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[ModelRegistry, LocalOnnxBackend]]:
    registry = ModelRegistry(FolderStore(REGISTRY))
    backend = LocalOnnxBackend(registry, threads=1)
    yield registry, backend
    backend.close()


def expected(reference: tuple[ModelRegistry, LocalOnnxBackend], model: str, body: dict) -> Any:
    """What the Lambda's in-process backend answers, as the JSON the wire carries."""
    registry, backend = reference
    request = wire.REQUEST_ADAPTER.validate_python(body)
    result = backend.invoke(registry.resolve(model), request)
    return json.loads(wire.RESULT_ADAPTER.dump_json(result))


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def post(base_url: str, body: dict, model: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {HEADER: model} if model else {}
    return httpx.post(f"{base_url}/invocations", json=body, headers=headers, timeout=60, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["request_id"] == response.headers["x-request-id"]


def test_ping_is_healthy_and_lists_preloaded_models(server: str) -> None:
    response = httpx.get(f"{server}/ping")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["target"] == "cpu"
    assert {f"{TEXT_MODEL}@1.0.0", f"{IMAGE_MODEL}@1.0.0"} <= set(body["models"])


def test_embeddings_equal_the_lambda_path_exactly(server: str, reference: Any) -> None:
    body = {"task": "embeddings", "texts": TEXTS}
    response = post(server, body, f"{TEXT_MODEL}/1.0.0")
    assert response.status_code == 200, response.text
    assert response.json() == expected(reference, TEXT_MODEL, body)


def test_the_model_field_in_the_body_also_picks_the_model(server: str, reference: Any) -> None:
    body = {"task": "embeddings", "texts": ["a body-named model"]}
    response = post(server, {**body, "model": f"{TEXT_MODEL}@1.0.0"})
    assert response.status_code == 200, response.text
    assert response.json() == expected(reference, TEXT_MODEL, body)


def test_sagemaker_custom_attributes_also_pick_the_model(server: str, reference: Any) -> None:
    body = {"task": "embeddings", "texts": ["named in custom attributes"]}
    headers = {"X-Amzn-SageMaker-Custom-Attributes": f"trace=1, model={TEXT_MODEL}/1.0.0"}
    response = httpx.post(f"{server}/invocations", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == expected(reference, TEXT_MODEL, body)


def test_image_classification_equals_the_lambda_path_exactly(server: str, reference: Any) -> None:
    body = {"task": "image-classification", "images": [png(1), png(2)], "top_k": 3}
    payload = json.loads(wire.REQUEST_ADAPTER.dump_json(wire.REQUEST_ADAPTER.validate_python(body)))
    response = post(server, payload, IMAGE_MODEL)
    assert response.status_code == 200, response.text
    assert response.json() == expected(reference, IMAGE_MODEL, body)
    assert all(len(p) == 3 for p in response.json()["predictions"])


async def _concurrent(server: str, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server, timeout=120) as client:
        return await asyncio.gather(
            *(client.post("/invocations", json=b, headers={HEADER: m}) for m, b in bodies)
        )


def _batches(server: str, model: str) -> dict:
    return httpx.get(f"{server}/metrics").json()["models"][f"{model}@1.0.0"]["batches"]


def test_sixteen_concurrent_requests_are_batched_and_answered_correctly(
    server: str, reference: Any
) -> None:
    before = _batches(server, TEXT_MODEL)
    bodies = [
        (TEXT_MODEL, {"task": "embeddings", "texts": [TEXTS[i % len(TEXTS)], f"request {i}"]})
        for i in range(16)
    ]
    responses = asyncio.run(_concurrent(server, bodies))
    for (model, body), response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        got, want = response.json(), expected(reference, model, body)
        assert got["token_counts"] == want["token_counts"]
        # A shared batch pads to its longest text; masked padding may move the last bit.
        np.testing.assert_allclose(got["embeddings"], want["embeddings"], rtol=0, atol=1e-5)
    after = _batches(server, TEXT_MODEL)
    items, batches = after["items"] - before["items"], after["batches"] - before["batches"]
    assert items == 16
    assert batches < 16, "concurrent requests should have shared batches"


def test_one_bad_input_fails_only_its_own_request(server: str, reference: Any) -> None:
    good = [{"task": "image-classification", "images": [png(10 + i)]} for i in range(5)]
    bad = {"task": "image-classification", "images": [b"definitely not an image"]}
    payloads = [
        (
            IMAGE_MODEL,
            json.loads(wire.REQUEST_ADAPTER.dump_json(wire.REQUEST_ADAPTER.validate_python(b))),
        )
        for b in [*good[:2], bad, *good[2:]]
    ]
    responses = asyncio.run(_concurrent(server, payloads))
    assert_error(responses[2], 422, "invalid_input")
    for body, response in zip(good, responses[:2] + responses[3:], strict=True):
        assert response.status_code == 200, response.text
        assert response.json() == expected(reference, IMAGE_MODEL, body)


def test_unknown_model_is_404_in_the_common_shape(server: str) -> None:
    body = {"task": "embeddings", "texts": ["x"]}
    assert_error(post(server, body, "no-such-model/1.0.0"), 404, "not_found")
    assert_error(post(server, body, f"{TEXT_MODEL}/9.9.9"), 404, "not_found")
    assert_error(post(server, {**body, "model": "no-such-model"}), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "model", "status", "code"),
    [
        ({"task": "embeddings", "texts": "not a list"}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "embeddings", "texts": []}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "embeddings", "texts": ["  "]}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "embeddings", "texts": ["x"], "extra": 1}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "no-such-task", "texts": ["x"]}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "image-classification", "images": ["aGk="]}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "embeddings", "texts": ["x"] * 65}, TEXT_MODEL, 422, "invalid_input"),
        ({"task": "embeddings", "texts": ["no model named"]}, None, 422, "invalid_input"),
    ],
)
def test_bad_payloads_are_4xx(
    server: str, body: dict, model: str | None, status: int, code: str
) -> None:
    assert_error(post(server, body, model), status, code)


def test_unreadable_bodies_and_wrong_types_are_4xx(server: str) -> None:
    url = f"{server}/invocations"
    headers = {HEADER: TEXT_MODEL, "Content-Type": "application/json"}
    assert_error(httpx.post(url, content=b"{not json", headers=headers), 400, "malformed_request")
    assert_error(httpx.post(url, content=b"\xff\xfe", headers=headers), 400, "malformed_request")
    assert_error(httpx.post(url, content=b"[1, 2]", headers=headers), 422, "invalid_input")
    assert_error(
        httpx.post(url, content=b"x", headers={**headers, "Content-Type": "image/png"}),
        415,
        "unsupported_media_type",
    )
    assert_error(httpx.get(f"{server}/nowhere"), 404, "not_found")
    assert_error(httpx.get(url), 405, "method_not_allowed")


def test_bodies_over_the_limit_are_413_with_or_without_a_length(server: str) -> None:
    url = f"{server}/invocations"
    headers = {HEADER: TEXT_MODEL, "Content-Type": "application/json"}
    big = json.dumps({"task": "embeddings", "texts": ["x" * 1000] * 250}).encode()
    assert len(big) > BODY_LIMIT
    assert_error(httpx.post(url, content=big, headers=headers), 413, "payload_too_large")

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    response = httpx.post(url, content=chunked(), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "payload_too_large")


def test_an_empty_registry_pings_unhealthy(tmp_path: Path) -> None:
    env = {"AIMAAS_REGISTRY": str(tmp_path), "AIMAAS_GPU_METRICS_S": "0"}
    with running_server(env, target="cpu", healthy=False) as base_url:
        response = httpx.get(f"{base_url}/ping")
        assert response.status_code == 503 and response.json()["status"] == "unhealthy"
        body = {"task": "embeddings", "texts": ["x"]}
        assert_error(post(base_url, body, TEXT_MODEL), 404, "not_found")


def test_metrics_report_batching_and_latency(server: str) -> None:
    post(server, {"task": "embeddings", "texts": ["metrics please"]}, TEXT_MODEL)
    model = httpx.get(f"{server}/metrics").json()["models"][f"{TEXT_MODEL}@1.0.0"]
    assert model["providers"] == ["CPUExecutionProvider"] and model["precision"] == "fp32"
    assert model["requests"] >= 1 and model["latency_ms"]["p99"] > 0
    assert model["batches"]["batches"] >= 1 and model["batches"]["queue_wait_ms"]["p50"] >= 0


def test_the_http_gpu_backend_gets_what_the_lambda_path_gets(server: str, reference: Any) -> None:
    """The serving API's own client of this server (HttpGpuBackend) end to end."""
    from aimaas import errors
    from aimaas.backends.http import HttpGpuBackend

    registry, local = reference
    backend = HttpGpuBackend(server, timeout_s=60)
    try:
        for model, body in [
            (TEXT_MODEL, {"task": "embeddings", "texts": TEXTS}),
            (IMAGE_MODEL, {"task": "image-classification", "images": [png(3)], "top_k": 2}),
        ]:
            manifest = registry.resolve(model)
            request = wire.REQUEST_ADAPTER.validate_python(body)
            assert backend.invoke(manifest, request) == local.invoke(manifest, request)
        bad = wire.REQUEST_ADAPTER.validate_python(
            {"task": "image-classification", "images": [b"not an image"]}
        )
        with pytest.raises(errors.InvalidInput):
            backend.invoke(registry.resolve(IMAGE_MODEL), bad)
    finally:
        backend.close()


AUDIO_DATA = REPO / "scripts" / "gpu_check_data"


@pytest.mark.parametrize("model", ["keyword-spotter", "silero-vad"])
def test_audio_models_equal_the_lambda_path(server: str, reference: Any, model: str) -> None:
    if not (REGISTRY / model).is_dir():
        pytest.skip(f"{model} not built")
    registry, _ = reference
    task = registry.resolve(model).task
    clips = [(AUDIO_DATA / f"kw_{w}.wav").read_bytes() for w in ("yes", "stop", "go")]
    for clip in clips:  # one clip a request: silero-vad takes one at a time
        body = {"task": task, "audio": [clip]}
        payload = json.loads(
            wire.REQUEST_ADAPTER.dump_json(wire.REQUEST_ADAPTER.validate_python(body))
        )
        response = post(server, payload, model)
        assert response.status_code == 200, response.text
        assert response.json() == expected(reference, model, body)
