"""Dynamic batching in process with real models: concurrent requests merge into one ONNX run and
each caller gets the answer it would have got alone (issue 16).

Merging changes what else is in a batch: padding to a longer neighbour (masked out) and, for an
int8 model, the dynamic quantization scale of the batch's activations. So batched answers are
compared with unbatched ones by cosine, not bit for bit; labels must not change.
"""

from __future__ import annotations

import numpy as np
import pytest

from aimaas.backends import LocalOnnxBackend
from aimaas.backends.admission import RunGate
from aimaas.backends.batched import BatchingGate
from aimaas.inference import wire
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.concurrency import at_once
from aimaas_testing.paths import REGISTRY

SENTENCES = [
    "The central bank left interest rates unchanged.",
    "我喜欢在周末去公园散步。",
    "The striker scored twice in the final minutes.",
    "A new vaccine trial reported strong results.",
    "这支球队昨晚赢得了冠军",
    "Shares fell after the quarterly earnings report.",
    "The parliament passed the budget late on Friday.",
    "Astronomers found water vapour on a distant planet.",
]


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(FolderStore(REGISTRY))


def _embeddings_alone_and_batched(
    registry: ModelRegistry, model: str
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, dict[str, object]]]:
    manifest = registry.resolve(model)
    alone = LocalOnnxBackend(registry, threads=1)
    expected = [
        np.asarray(alone.invoke(manifest, wire.EmbeddingsRequest(texts=[s])).embeddings[0])
        for s in SENTENCES
    ]
    batching = BatchingGate(RunGate(1, wait_s=20))
    backend = LocalOnnxBackend(registry, threads=1, gate=batching)
    backend.invoke(manifest, wire.EmbeddingsRequest(texts=["warm up"]))
    try:
        results = at_once(
            32,
            lambda i: backend.invoke(
                manifest, wire.EmbeddingsRequest(texts=[SENTENCES[i % len(SENTENCES)]])
            ),
        )
        stats = batching.stats()
    finally:
        backend.close()
    return expected, [np.asarray(r.embeddings[0]) for r in results], stats


def test_batched_fp32_embeddings_match_each_request_alone(registry: ModelRegistry) -> None:
    expected, got, stats = _embeddings_alone_and_batched(registry, "all-minilm-l6-v2")
    for i, vector in enumerate(got):  # only padding differs, which the attention mask removes
        np.testing.assert_allclose(vector, expected[i % len(SENTENCES)], atol=1e-4)
    (batches,) = stats.values()
    assert batches["items"] == 33 and batches["batches"] < 33, batches  # requests did merge


def test_dynamically_quantized_models_are_not_merged(registry: ModelRegistry) -> None:
    """int8 activations are scaled by the batch's range: merged, a text's vector would depend
    on its neighbours' (cosine 0.992 measured), so such a model runs each request alone."""
    expected, got, stats = _embeddings_alone_and_batched(registry, "all-minilm-l6-v2-int8")
    for i, vector in enumerate(got):
        np.testing.assert_array_equal(vector, expected[i % len(SENTENCES)])
    assert stats == {}


def test_batched_image_labels_match_each_request_alone(registry: ModelRegistry) -> None:
    import io

    from PIL import Image
    from skimage import data

    photos = []
    for image in (data.chelsea(), data.coffee(), data.astronaut()):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    manifest = registry.resolve("mobilenet-v2")
    request = [wire.ImageClassificationRequest(images=[p], top_k=3) for p in photos]
    alone = LocalOnnxBackend(registry, threads=1)
    expected = [alone.invoke(manifest, r).predictions[0] for r in request]
    batching = BatchingGate(RunGate(1, wait_s=20))
    backend = LocalOnnxBackend(registry, threads=1, gate=batching)
    try:
        results = at_once(12, lambda i: backend.invoke(manifest, request[i % 3]))
        stats = batching.stats()[manifest.model_id]
    finally:
        backend.close()
    for i, result in enumerate(results):
        got, want = result.predictions[0], expected[i % 3]
        assert [p.label for p in got] == [p.label for p in want]
        assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-4)
    assert stats["batches"] < 12, stats
