"""One error shape for every failure, request ids, and billing only what was served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aimaas import errors
from aimaas.api.context import GatewayContext, resolve_request_id
from aimaas.backends import InferenceBackend, LocalOnnxBackend
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.metering import FlakyLedger
from aimaas_testing.paths import REGISTRY

AUTH = {"Authorization": "Bearer good-key"}
TEXT = {"text": "The striker scored twice in the cup final."}


def assert_error_shape(response: Any, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code
    return body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/v1/text-classification", {"content": b"{nope"}, 400, "malformed_request"),
        (
            "post",
            "/v1/text-classification",
            {"content": b'{"text": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_request",
        ),
        ("post", "/v1/text-classification", {"json": {"text": ""}}, 422, "invalid_input"),
        ("post", "/v1/text-classification", {"json": {"txt": "x"}}, 422, "invalid_input"),
        ("post", "/v1/text-classification", {"json": {"text": "x", "labels": ["a"]}}, 422, None),
        (
            "post",
            "/v1/text-classification",
            {"json": {"text": "x", "labels": ["a", "b", "a"]}},
            422,
            "invalid_input",
        ),
        (
            "post",
            "/v1/text-classification",
            {"content": b"text=hello", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("post", "/v1/text-classification", {"json": {**TEXT, "model": "nope"}}, 404, "not_found"),
        ("get", "/v1/does-not-exist", {}, 404, "not_found"),
        ("get", "/v1/text-classification", {}, 405, "method_not_allowed"),
        ("delete", "/v1/models", {}, 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_the_one_error_shape(
    harness, method: str, path: str, kwargs: dict, status: int, code: str | None
) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = getattr(harness.client, method)(path, headers=headers, **kwargs)
    assert_error_shape(response, status, code)
    assert harness.records() == []


def test_missing_and_wrong_keys_are_401(harness) -> None:
    assert_error_shape(harness.client.post("/v1/text-classification", json=TEXT), 401)
    response = harness.client.post(
        "/v1/text-classification", json=TEXT, headers={"Authorization": "Bearer bad"}
    )
    assert_error_shape(response, 401, "unauthorized")
    assert harness.records() == []


def test_body_over_limit_by_content_length_and_by_stream(make_harness) -> None:
    harness = make_harness(max_body_bytes=1000)
    big = json.dumps({"text": "word " * 400}).encode()
    assert_error_shape(
        harness.client.post("/v1/text-classification", headers=AUTH, content=big),
        413,
        "payload_too_large",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b"x" * 200

    assert_error_shape(
        harness.client.post(
            "/v1/image-classification",
            headers={**AUTH, "Content-Type": "image/png"},
            content=chunks(),
        ),
        413,
    )
    small = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    assert small.status_code == 200


def test_idempotency_key_is_the_request_id_and_bills_once(harness) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-42/attempt"}
    first = harness.client.post("/v1/text-classification", headers=headers, json=TEXT)
    again = harness.client.post("/v1/text-classification", headers=headers, json=TEXT)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-request-id"] == again.headers["x-request-id"] == "order-42/attempt"
    assert [r.request_id for r in harness.records()] == ["order-42/attempt"]
    other = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    assert other.headers["x-request-id"] != "order-42/attempt"
    assert len(harness.records()) == 2


def test_an_idempotency_key_reused_for_another_request_is_409_and_not_served(harness) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-43"}
    first = harness.client.post("/v1/text-classification", headers=headers, json=TEXT)
    assert first.status_code == 200
    # Same key, a much longer text: one billed record must not cover a different prediction.
    longer = {"text": " ".join([TEXT["text"]] * 20)}
    reused = harness.client.post("/v1/text-classification", headers=headers, json=longer)
    body = assert_error_shape(reused, 409, "idempotency_key_reused")
    assert "label" not in body
    # Same key on another model and task: refused too.
    other = harness.client.post("/v1/embeddings", headers=headers, json={"input": "x"})
    assert_error_shape(other, 409, "idempotency_key_reused")
    records = harness.records()
    assert [r.request_id for r in records] == ["order-43"]
    assert records[0].task == "text-classification"


@pytest.mark.parametrize("key", ["x" * 129, "tab\there", "hash#mark", ""])
def test_bad_idempotency_keys_are_400(harness, key: str) -> None:
    response = harness.client.post(
        "/v1/text-classification", headers={**AUTH, "Idempotency-Key": key}, json=TEXT
    )
    body = assert_error_shape(response, 400, "malformed_request")
    assert body["error"]["request_id"] != key  # a fresh id, not the refused key
    assert harness.records() == []


def test_idempotency_key_may_hold_spaces(harness) -> None:
    headers = {**AUTH, "Idempotency-Key": "order 42"}
    response = harness.client.post("/v1/text-classification", headers=headers, json=TEXT)
    assert response.status_code == 200 and response.headers["x-request-id"] == "order 42"


def test_request_id_from_api_gateway_event() -> None:
    scope = {"aws.event": {"requestContext": {"requestId": "apigw-123"}}}
    gateway = GatewayContext.from_scope(scope)
    assert resolve_request_id({}, gateway) == "apigw-123"
    assert resolve_request_id({"idempotency-key": "mine"}, gateway) == "mine"
    assert len(resolve_request_id({}, GatewayContext.from_scope({}))) == 36  # a uuid4
    with pytest.raises(errors.MalformedRequest):
        resolve_request_id({"idempotency-key": "é"}, gateway)


def test_ledger_down_means_503_and_no_answer(make_harness, tmp_path: Path) -> None:
    from aimaas.metering.sqlite import SqliteLedger

    inner = SqliteLedger(tmp_path / "flaky.sqlite")
    harness = make_harness(ledger=FlakyLedger(inner, fail_before=1.0, fail_after=0.0, seed=1))
    response = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    import aimaas.metering as metering

    # The meter names this failure with its own code (once it has one): the alarm counts it.
    code = getattr(metering, "USAGE_NOT_RECORDED", "backend_unavailable")
    body = assert_error_shape(response, 503, code)
    assert "label" not in body
    inner.close()


def test_unconfigured_gpu_model_is_503_and_not_billed(make_harness) -> None:
    harness = make_harness(gpu_models=("multilingual-topic-classifier",))
    response = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    body = assert_error_shape(response, 503, "gpu_backend_not_configured")
    assert body["error"]["message"] == "GPU backend not configured for this stage."
    assert harness.records() == []
    # Models not on the GPU list still run on the CPU.
    assert (
        harness.client.post("/v1/embeddings", headers=AUTH, json={"input": "x"}).status_code == 200
    )


def test_corrupted_model_file_is_refused_with_503(make_harness, tmp_path: Path, registry) -> None:
    source = registry.store.root / "mobilenet-v2"
    shutil.copytree(source, tmp_path / "reg" / "mobilenet-v2")
    manifest = registry.resolve("mobilenet-v2")
    artifact = tmp_path / "reg" / "mobilenet-v2" / manifest.version / manifest.artifact.file
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    broken = ModelRegistry(FolderStore(tmp_path / "reg"), {"image-classification": "mobilenet-v2"})
    harness = make_harness(registry_=broken, cpu_=LocalOnnxBackend(broken))
    for _ in range(2):  # refused every time, never cached as good
        response = harness.client.post(
            "/v1/image-classification",
            headers={**AUTH, "Content-Type": "image/png"},
            content=b"\x89PNG",
        )
        assert_error_shape(response, 503, "model_integrity_error")
    assert harness.records() == []


class Exploding(InferenceBackend):
    def invoke(self, manifest: Any, request: Any) -> Any:
        raise RuntimeError("secret internal detail")


def test_unexpected_exception_is_a_plain_500(make_harness) -> None:
    harness = make_harness(cpu_=Exploding())
    response = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    assert_error_shape(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert harness.records() == []


def test_health_openapi_and_offline_docs(harness) -> None:
    assert harness.client.get("/health").json()["status"] == "ok"
    spec = harness.client.get("/openapi.json").json()
    for path in ("/v1/text-classification", "/v1/embeddings", "/v1/image-classification",
                 "/v1/audio-classification", "/v1/models", "/v1/usage"):  # fmt: skip
        assert path in spec["paths"], path
    image_body = spec["paths"]["/v1/image-classification"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "multipart/form-data", "application/json"} <= set(image_body)
    docs = harness.client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    assert harness.client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    assert harness.client.get("/docs-static/swagger-ui.css").status_code == 200


def test_serving_never_imports_torch_and_loads_only_what_is_used(tmp_path: Path) -> None:
    # A fresh interpreter: the test process itself may have torch loaded by other suites.
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from fastapi.testclient import TestClient
        from aimaas.api import create_app
        from aimaas.auth import Principal
        from aimaas.api.container import build_container
        from aimaas.config import Settings
        from aimaas_testing.auth import FixedAuthenticator

        settings = Settings(registry_path=Path(sys.argv[1]), sqlite_path=Path(sys.argv[2]))
        container = build_container(settings)
        container.authenticator = FixedAuthenticator(Principal("t_x", "k_x", "pro"))
        app = create_app(container=container)
        client = TestClient(app)
        codes = [
            client.post("/v1/text-classification", json={"text": "hello"}).status_code,
            client.post("/v1/embeddings", json={"input": "hello"}).status_code,
        ]
        loaded = client.get("/health").json()["models_loaded"]
        print(json.dumps({"codes": codes, "torch": "torch" in sys.modules, "loaded": loaded}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(REGISTRY), str(tmp_path / "db.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [200, 200] and result["torch"] is False
    # Lazy loading: only the two models asked for were loaded (and verified).
    assert [m.split("@")[0] for m in result["loaded"]] == [
        "all-minilm-l6-v2-int8",
        "multilingual-topic-classifier",
    ]


class Slow(InferenceBackend):
    """Answers correctly, after ``delay_s``: a model run that outlives the request deadline."""

    def __init__(self, inner: InferenceBackend, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def invoke(self, manifest: Any, request: Any) -> Any:
        time.sleep(self.delay_s)
        return self.inner.invoke(manifest, request)


def test_a_call_answered_after_its_deadline_is_a_504_and_not_billed(make_harness, cpu) -> None:
    harness = make_harness(cpu_=Slow(cpu, 0.5), request_deadline_s=0.3)
    response = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    assert_error_shape(response, 504, "deadline_exceeded")
    assert "not billed" in response.json()["error"]["message"]
    assert harness.records() == []


def test_a_call_within_its_deadline_is_served_and_billed(make_harness, cpu) -> None:
    harness = make_harness(cpu_=Slow(cpu, 0.05), request_deadline_s=5.0)
    response = harness.client.post("/v1/text-classification", headers=AUTH, json=TEXT)
    assert response.status_code == 200
    assert len(harness.records()) == 1
