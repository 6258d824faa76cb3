"""Whisper base on the GPU server (here its CPU fallback: this machine has no GPU) reached through
the HTTP GPU backend, and a stage that sends it to a GPU it does not have answering 503."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aimaas import errors
from aimaas.backends.http import HttpGpuBackend
from aimaas.backends.router import BackendRouter, UnconfiguredGpuBackend
from aimaas.inference import wire
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing import audio
from functions.gpu_server.gpuserve.launcher import running_server
from model_export.speech_eval import score

from .conftest import REGISTRY, built

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_server() -> Iterator[str]:
    built("whisper-base")
    env = {
        "AIMAAS_REGISTRY": str(REGISTRY),
        "AIMAAS_ONNX_THREADS": "2",
        "AIMAAS_GPU_METRICS_S": "0",
    }
    with running_server(env, target="cpu") as base_url:
        yield base_url


def test_whisper_base_through_the_gpu_backend(gpu_server: str) -> None:
    registry = ModelRegistry(FolderStore(REGISTRY))
    manifest = registry.resolve("whisper-base")
    router = BackendRouter(
        cpu=UnconfiguredGpuBackend(),  # proves the call never ran in process
        gpu=HttpGpuBackend(gpu_server, timeout_s=60),
        gpu_models=["whisper-base"],
    )
    data = audio.encode(*audio.beckett(), "mp3")
    result = router.invoke(manifest, wire.TranscriptionRequest(audio=[data], word_timestamps=True))
    assert isinstance(result, wire.TranscriptionResult)
    assert score([audio.BECKETT_TEXT], [result.text]).wer <= 0.2, result.text
    assert result.words and result.durations_s[0] == pytest.approx(9.96, abs=0.05)
    refused = wire.TranscriptionRequest(audio=[b"not audio at all"])
    with pytest.raises(errors.InvalidInput, match="accepted format"):
        router.invoke(manifest, refused)  # the server's 422, relayed


def test_a_gpu_only_stage_without_a_gpu_answers_503() -> None:
    registry = ModelRegistry(FolderStore(REGISTRY))
    built("whisper-base")
    router = BackendRouter(
        cpu=HttpGpuBackend("http://127.0.0.1:9"),
        gpu=UnconfiguredGpuBackend(),
        gpu_models=["whisper-base"],
    )
    with pytest.raises(errors.BackendUnavailable) as unavailable:
        router.invoke(registry.resolve("whisper-base"), wire.TranscriptionRequest(audio=[b"x"]))
    assert unavailable.value.status == 503
