"""Wire schemas (shared with the GPU server) and the ONNX task runners on real models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aimaas import errors
from aimaas.backends import LocalOnnxBackend
from aimaas.inference import (
    REQUEST_ADAPTER,
    RESULT_ADAPTER,
    EmbeddingsRequest,
    ImageClassificationRequest,
    VadRequest,
    batch_size,
)
from aimaas.inference.runners import VadRunner, softmax, top_labels
from aimaas.manifest import VadPreprocessing
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def backend() -> LocalOnnxBackend:
    return LocalOnnxBackend(ModelRegistry(FolderStore(REGISTRY)), threads=1)


def test_binary_fields_are_bytes_in_python_and_base64_in_json() -> None:
    request = VadRequest(audio=[b"RIFF\x00\xff"])
    wire = request.model_dump_json()
    assert '"UklGRgD/"' in wire
    parsed = REQUEST_ADAPTER.validate_json(wire)
    assert isinstance(parsed, VadRequest) and parsed.audio == [b"RIFF\x00\xff"]
    with pytest.raises(ValueError, match="base64"):
        REQUEST_ADAPTER.validate_json('{"task": "voice-activity-detection", "audio": ["@@"]}')
    with pytest.raises(ValueError):
        REQUEST_ADAPTER.validate_json('{"task": "translation", "texts": ["a"]}')
    with pytest.raises(ValueError):  # extra fields are refused on the wire
        REQUEST_ADAPTER.validate_python({"task": "embeddings", "texts": ["a"], "x": 1})
    assert batch_size(ImageClassificationRequest(images=[b"a", b"b"])) == 2


def test_result_adapter_round_trip() -> None:
    body = '{"task": "embeddings", "embeddings": [[0.5, 0.5]], "token_counts": [4]}'
    result = RESULT_ADAPTER.validate_json(body)
    assert RESULT_ADAPTER.validate_json(result.model_dump_json()) == result


def test_softmax_and_top_labels() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, 0.0], [0.0, 2.0, 1.0]]))
    assert np.allclose(probs.sum(axis=1), 1.0) and np.isfinite(probs).all()
    top = top_labels(probs, ["a", "b", "c"], 2)
    assert [p.label for p in top[1]] == ["b", "c"]
    assert len(top_labels(probs, ["a", "b", "c"], None)[0]) == 3


def test_vad_hysteresis_segments() -> None:
    params = VadPreprocessing(min_speech_ms=250, min_silence_ms=100)
    step = params.window_samples / params.sample_rate  # 32 ms
    probs = np.array([0.0] * 10 + [0.9] * 20 + [0.0] * 10 + [0.9] * 3 + [0.0] * 10)
    segments = VadRunner.segments(probs, params)
    assert len(segments) == 1  # the 3-window burst (96 ms) is shorter than min_speech
    assert segments[0].start == pytest.approx(10 * step, abs=1e-3)
    assert segments[0].end == pytest.approx(30 * step, abs=1e-3)
    # Speech running to the end of the audio is closed at the end.
    tail = VadRunner.segments(np.array([0.0] * 5 + [0.8] * 20), params)
    assert tail[0].end == pytest.approx(25 * step, abs=1e-3)


def test_embeddings_batch_equals_one_by_one(backend: LocalOnnxBackend) -> None:
    manifest = backend.registry.resolve("all-minilm-l6-v2")
    texts = ["short", "a much longer sentence that needs a lot more tokens than the first", "你好"]
    batch = backend.invoke(manifest, EmbeddingsRequest(texts=texts))
    singles = [backend.invoke(manifest, EmbeddingsRequest(texts=[t])) for t in texts]
    vectors = np.asarray(batch.embeddings)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    for row, single in zip(vectors, singles, strict=True):
        assert np.allclose(row, single.embeddings[0], atol=1e-4)
    assert batch.token_counts == [s.token_counts[0] for s in singles]
    assert batch.token_counts[0] == 3  # [CLS] short [SEP]


def test_int8_model_stays_close_to_fp32(backend: LocalOnnxBackend) -> None:
    texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    fp32 = backend.invoke(
        backend.registry.resolve("all-minilm-l6-v2"), EmbeddingsRequest(texts=texts)
    )
    int8 = backend.invoke(
        backend.registry.resolve("all-minilm-l6-v2-int8"), EmbeddingsRequest(texts=texts)
    )
    cosine = (np.asarray(fp32.embeddings) * np.asarray(int8.embeddings)).sum(axis=1)
    assert (cosine > 0.97).all(), cosine


def test_image_runner_and_bad_image(backend: LocalOnnxBackend) -> None:
    manifest = backend.registry.resolve("mobilenet-v2")
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 30, 30)).save(buffer, "PNG")
    result = backend.invoke(
        manifest, ImageClassificationRequest(images=[buffer.getvalue()], top_k=3)
    )
    scores = [p.score for p in result.predictions[0]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    with pytest.raises(errors.InvalidInput, match="image 1"):
        backend.invoke(
            manifest, ImageClassificationRequest(images=[buffer.getvalue(), b"not an image"])
        )


def test_runner_is_loaded_once(backend: LocalOnnxBackend) -> None:
    manifest = backend.registry.resolve("all-minilm-l6-v2-int8")
    assert backend.runner(manifest) is backend.runner(manifest)
    assert manifest.model_id in backend.runners.loaded()
