"""Backends: routing by stage, the unconfigured GPU, SageMaker (botocore Stubber), HTTP retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from aimaas import deadline, errors
from aimaas.backends import BackendRouter, InferenceBackend, UnconfiguredGpuBackend
from aimaas.backends.http import HttpGpuBackend
from aimaas.backends.sagemaker import SageMakerBackend
from aimaas.config import Settings
from aimaas.inference import TARGET_MODEL_HEADER, EmbeddingsRequest, EmbeddingsResult
from aimaas.registry import FolderStore, ModelRegistry
from aimaas.wiring import GPU_BACKENDS, build_gpu_backend
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
RESULT = EmbeddingsResult(embeddings=[[0.6, 0.8]], token_counts=[3])


@pytest.fixture(scope="module")
def manifest() -> Any:
    return ModelRegistry(FolderStore(REGISTRY)).resolve("all-minilm-l6-v2")


class Recording(InferenceBackend):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    def invoke(self, manifest: Any, request: Any) -> Any:
        self.calls.append(manifest.name)
        return RESULT


def test_router_sends_stage_gpu_models_to_gpu(manifest: Any) -> None:
    cpu, gpu = Recording("cpu"), Recording("gpu")
    BackendRouter(cpu, gpu, ["all-minilm-l6-v2"]).invoke(manifest, EmbeddingsRequest(texts=["a"]))
    BackendRouter(cpu, gpu, []).invoke(manifest, EmbeddingsRequest(texts=["a"]))
    assert gpu.calls == ["all-minilm-l6-v2"]
    assert cpu.calls == ["all-minilm-l6-v2"]


def test_unconfigured_gpu_is_a_503_not_a_crash(manifest: Any) -> None:
    router = BackendRouter(Recording("cpu"), build_gpu_backend(Settings()), [manifest.name])
    with pytest.raises(errors.BackendUnavailable, match="GPU backend not configured") as caught:
        router.invoke(manifest, EmbeddingsRequest(texts=["a"]))
    assert caught.value.status == 503


def test_gpu_backend_factories_by_name() -> None:
    assert set(GPU_BACKENDS) == {"none", "http", "sagemaker"}
    assert isinstance(build_gpu_backend(Settings(gpu_backend="none")), UnconfiguredGpuBackend)
    http = build_gpu_backend(Settings(gpu_backend="http", gpu_url="http://127.0.0.1:9"))
    assert isinstance(http, HttpGpuBackend)
    with pytest.raises(ValueError, match="GPU_URL"):
        build_gpu_backend(Settings(gpu_backend="http"))
    with pytest.raises(ValueError, match="SAGEMAKER_ENDPOINT"):
        build_gpu_backend(Settings(gpu_backend="sagemaker"))
    with pytest.raises(ValueError, match="unknown GPU backend"):
        build_gpu_backend(Settings(gpu_backend="tpu"))


# ---- SageMaker ------------------------------------------------------------------------------


@pytest.fixture
def sagemaker() -> Iterator[tuple[SageMakerBackend, Stubber]]:
    client = boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(client) as stubber:
        yield SageMakerBackend("aimaas-gpu", client=client), stubber
        stubber.assert_no_pending_responses()


def _body(payload: bytes) -> StreamingBody:
    return StreamingBody(BytesIO(payload), len(payload))


def test_sagemaker_invokes_the_target_model(sagemaker: Any, manifest: Any) -> None:
    backend, stubber = sagemaker
    request = EmbeddingsRequest(texts=["hello"])
    stubber.add_response(
        "invoke_endpoint",
        {"Body": _body(RESULT.model_dump_json().encode()), "ContentType": "application/json"},
        {
            "EndpointName": "aimaas-gpu",
            "CustomAttributes": f"model={manifest.name}/{manifest.version}",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": request.model_dump_json().encode(),
        },
    )
    assert backend.invoke(manifest, request) == RESULT


def test_sagemaker_model_error_4xx_is_invalid_input(sagemaker: Any, manifest: Any) -> None:
    backend, stubber = sagemaker
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        response_meta={},
        modeled_fields={
            "OriginalStatusCode": 422,
            "OriginalMessage": json.dumps({"error": {"code": "invalid_input", "message": "bad"}}),
        },
    )
    with pytest.raises(errors.InvalidInput, match="bad"):
        backend.invoke(manifest, EmbeddingsRequest(texts=["x"]))


@pytest.mark.parametrize("code", ["ServiceUnavailable", "ValidationError", "ModelError"])
def test_sagemaker_outage_is_backend_unavailable(sagemaker: Any, manifest: Any, code: str) -> None:
    backend, stubber = sagemaker
    stubber.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=503)
    with pytest.raises(errors.BackendUnavailable):
        backend.invoke(manifest, EmbeddingsRequest(texts=["x"]))


def test_sagemaker_wrong_task_answer_is_refused(sagemaker: Any, manifest: Any) -> None:
    backend, stubber = sagemaker
    wrong = b'{"task": "voice-activity-detection", "segments": [[]], "durations_s": [1.0]}'
    stubber.add_response("invoke_endpoint", {"Body": _body(wrong)})
    with pytest.raises(errors.BackendUnavailable, match="wrong task"):
        backend.invoke(manifest, EmbeddingsRequest(texts=["x"]))


# ---- HTTP GPU server ------------------------------------------------------------------------


class _Server:
    """A real HTTP server on 127.0.0.1 that answers from a script of (status, body)."""

    def __init__(self, script: list[tuple[int, bytes]], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.seen: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                owner.seen.append(
                    {
                        "path": self.path,
                        "target": self.headers[TARGET_MODEL_HEADER],
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                time.sleep(owner.delay_s)
                status, body = owner.script.pop(0) if owner.script else (500, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(script: list[tuple[int, bytes]], delay_s: float = 0.0) -> _Server:
        servers.append(_Server(script, delay_s))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_http_backend_posts_the_wire_format(server: Any, manifest: Any) -> None:
    gpu = server([(200, RESULT.model_dump_json().encode())])
    request = EmbeddingsRequest(texts=["héllo 你好"], input_type="passage")
    result = HttpGpuBackend(gpu.url).invoke(manifest, request)
    assert result == RESULT
    assert gpu.seen == [
        {
            "path": "/invocations",
            "target": f"{manifest.name}/{manifest.version}",
            "body": {"task": "embeddings", "texts": ["héllo 你好"], "input_type": "passage"},
        }
    ]


def test_http_backend_retries_503_then_succeeds(server: Any, manifest: Any) -> None:
    gpu = server([(503, b"{}"), (503, b"{}"), (200, RESULT.model_dump_json().encode())])
    backend = HttpGpuBackend(gpu.url, retries=2, backoff_factor=0.01)
    assert backend.invoke(manifest, EmbeddingsRequest(texts=["a"])) == RESULT
    assert len(gpu.seen) == 3


def test_http_backend_gives_up_after_retries(server: Any, manifest: Any) -> None:
    gpu = server([(503, b"{}")] * 3)
    backend = HttpGpuBackend(gpu.url, retries=1, backoff_factor=0.01)
    with pytest.raises(errors.BackendUnavailable):
        backend.invoke(manifest, EmbeddingsRequest(texts=["a"]))
    assert len(gpu.seen) == 2


def test_http_backend_relays_4xx_as_invalid_input(server: Any, manifest: Any) -> None:
    body = json.dumps({"error": {"code": "invalid_input", "message": "text 0 is empty"}})
    gpu = server([(422, body.encode())])
    with pytest.raises(errors.InvalidInput, match="text 0 is empty"):
        HttpGpuBackend(gpu.url).invoke(manifest, EmbeddingsRequest(texts=["a"]))


def test_http_backend_down_is_backend_unavailable(server: Any, manifest: Any) -> None:
    gpu = server([])
    url = gpu.url
    gpu.close()  # nothing listens there any more
    backend = HttpGpuBackend(url, timeout_s=1.0, retries=1, backoff_factor=0.01)
    with pytest.raises(errors.BackendUnavailable, match="cannot be reached"):
        backend.invoke(manifest, EmbeddingsRequest(texts=["a"]))


def test_http_backend_garbage_answer_is_backend_unavailable(server: Any, manifest: Any) -> None:
    gpu = server([(200, b"<html>oops</html>")])
    with pytest.raises(errors.BackendUnavailable, match="invalid result"):
        HttpGpuBackend(gpu.url).invoke(manifest, EmbeddingsRequest(texts=["a"]))


def test_http_backend_waits_no_longer_than_the_request_deadline(server: Any, manifest: Any) -> None:
    gpu = server([(200, RESULT.model_dump_json().encode())] * 3, delay_s=1.5)
    backend = HttpGpuBackend(gpu.url, timeout_s=10.0, retries=2, backoff_factor=0.01)
    token = deadline.start(0.4)
    started = time.monotonic()
    try:
        with pytest.raises(errors.BackendUnavailable):
            backend.invoke(manifest, EmbeddingsRequest(texts=["a"]))
    finally:
        deadline.reset(token)
    assert time.monotonic() - started < 1.2  # one attempt cut at the deadline, no retry
    assert len(gpu.seen) == 1


def test_http_backend_past_the_deadline_sends_nothing(server: Any, manifest: Any) -> None:
    gpu = server([(200, RESULT.model_dump_json().encode())])
    token = deadline.start(-1.0)
    try:
        with pytest.raises(errors.DeadlineExceeded):
            HttpGpuBackend(gpu.url).invoke(manifest, EmbeddingsRequest(texts=["a"]))
    finally:
        deadline.reset(token)
    assert gpu.seen == []


def test_a_backend_without_streams_answers_a_stream_in_one_piece(manifest: Any) -> None:
    from aimaas.inference import wire

    class WholeAnswers(InferenceBackend):
        def invoke(self, manifest: Any, request: Any) -> Any:
            return wire.GenerationResult(
                text="Paris.", finish_reason="stop", prompt_tokens=9, completion_tokens=3
            )

    request = wire.GenerationRequest(prompt="The capital of France is", max_tokens=4)
    router = BackendRouter(Recording("cpu"), WholeAnswers(), ["all-minilm-l6-v2"])
    (piece,) = list(router.stream(manifest, request))  # the GPU backend, buffered
    assert piece == wire.GenerationChunk(
        text="Paris.", finish_reason="stop", prompt_tokens=9, completion_tokens=3
    )
