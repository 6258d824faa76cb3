"""Merging requests into one batch and splitting results back; the pool with real models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from aimaas import errors
from aimaas.batching import BatchingOptions
from aimaas.inference import wire
from aimaas.inference.merging import merge_requests, params_key, rows, split_result
from aimaas.manifest import ModelManifest
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY
from functions.gpu_server.gpuserve.engine import CpuTarget, EngineOptions
from functions.gpu_server.gpuserve.invocations import custom_attribute, parse_target_model
from functions.gpu_server.gpuserve.models import ModelPool
from functions.gpu_server.gpuserve.settings import ServerSettings

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("value", "name", "version"),
    [
        ("all-minilm-l6-v2/1.0.0", "all-minilm-l6-v2", "1.0.0"),
        ("all-minilm-l6-v2@1.2.3", "all-minilm-l6-v2", "1.2.3"),
        ("mobilenet-v2", "mobilenet-v2", None),
        (" mobilenet-v2/ ", "mobilenet-v2", None),
        ("mobilenet-v2/1.0.0.tar.gz", "mobilenet-v2", "1.0.0"),
    ],
)
def test_target_model_header_forms(value: str, name: str, version: str | None) -> None:
    assert parse_target_model(value) == (name, version)


def test_merge_concatenates_inputs_in_order() -> None:
    a = wire.TextClassificationRequest(texts=["a", "b"], top_k=2)
    b = wire.TextClassificationRequest(texts=["c"], top_k=2)
    merged = merge_requests([a, b])
    assert merged.texts == ["a", "b", "c"] and merged.top_k == 2
    assert rows(merged) == 3 and rows(a) == 2
    assert merge_requests([a]) is a
    images = wire.ImageClassificationRequest(images=[b"x", b"y"])
    assert merge_requests([images, images]).images == [b"x", b"y", b"x", b"y"]


def test_params_key_separates_requests_that_cannot_share_a_batch() -> None:
    k1 = params_key(wire.TextClassificationRequest(texts=["a"], top_k=1))
    k2 = params_key(wire.TextClassificationRequest(texts=["a", "b"], top_k=1))
    k3 = params_key(wire.TextClassificationRequest(texts=["a"], top_k=2))
    assert k1 == k2 and k1 != k3
    hash(k1)


def test_split_gives_each_request_its_rows() -> None:
    result = wire.EmbeddingsResult(
        embeddings=[[float(i)] * 3 for i in range(6)], token_counts=[3, 4, 5, 6, 7, 8]
    )
    parts = split_result(result, [1, 3, 2])
    assert [p.token_counts for p in parts] == [[3], [4, 5, 6], [7, 8]]
    assert [p.embeddings[0][0] for p in parts] == [0.0, 1.0, 4.0]
    vad = wire.VadResult(
        segments=[[wire.Segment(start=0, end=1)], [], []], durations_s=[1.0, 2.0, 3.0]
    )
    first, rest = split_result(vad, [1, 2])
    assert first.durations_s == [1.0] and len(first.segments[0]) == 1
    assert rest.durations_s == [2.0, 3.0] and rest.segments == [[], []]
    with pytest.raises(RuntimeError):
        split_result(wire.EmbeddingsResult(embeddings=[[1.0]], token_counts=[1]), [1, 1])


def test_settings_from_env_follow_sagemaker_and_overrides() -> None:
    settings = ServerSettings.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "AIMAAS_REGISTRY": "/opt/ml/model",
            "AIMAAS_GPU_PRELOAD": "a, b ,",
            "AIMAAS_GPU_FP16": "off",
            "AIMAAS_GPU_IO_BINDING": "0",
            "AIMAAS_ONNX_THREADS": "3",
            "AIMAAS_BATCH_MAX_WAIT_MS": "7.5",
        }
    )
    assert settings.port == 9090 and settings.host == "0.0.0.0"  # noqa: S104
    assert settings.core.registry_path == Path("/opt/ml/model")
    assert settings.preload == ("a", "b")
    assert settings.engine.fp16 == "off" and settings.engine.io_binding is False
    assert settings.engine.threads == 3
    assert ServerSettings.from_env({"AIMAAS_GPU_PORT": "1234"}).port == 1234
    assert ServerSettings.from_env({}).port == 8080


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    if not (REGISTRY / "all-minilm-l6-v2").is_dir():
        pytest.skip("models not built (make models)")
    return ModelRegistry(FolderStore(REGISTRY))


def test_batching_policy_comes_from_the_manifest_unless_overridden(
    registry: ModelRegistry,
) -> None:
    manifest = registry.resolve("all-minilm-l6-v2")
    plain = ServerSettings.from_env({}).batching(manifest)
    assert plain.max_batch_size == manifest.batching.max_batch_size
    assert plain.max_wait_ms == manifest.batching.max_wait_ms
    off = ServerSettings.from_env({"AIMAAS_BATCH_MAX_SIZE": "1"}).batching(manifest)
    assert off.max_batch_size == 1
    assert plain.max_concurrent_batches == 1
    assert ServerSettings.from_env({}).batching(manifest, 2).max_concurrent_batches == 2
    env = {"AIMAAS_BATCH_CONCURRENCY": "3"}
    assert ServerSettings.from_env(env).batching(manifest, 2).max_concurrent_batches == 3


def test_pool_batches_text_by_length_bucket_and_matches_unbatched_runs(
    registry: ModelRegistry,
) -> None:
    manifest: ModelManifest = registry.resolve("all-minilm-l6-v2")
    short = [f"short text {i}" for i in range(6)]
    long = ["a considerably longer text " * 6 + str(i) for i in range(3)]

    async def main() -> tuple[list[wire.EmbeddingsResult], dict]:
        pool = ModelPool(
            registry,
            CpuTarget(EngineOptions(threads=1)),
            lambda m, c: BatchingOptions(max_batch_size=32, max_wait_ms=30),
        )
        try:
            worker = await pool.worker(manifest)
            assert worker is await pool.worker(manifest)  # loaded once
            with pytest.raises(errors.InvalidInput):
                await worker.infer(wire.EmbeddingsRequest(texts=[" "]))
            requests = [wire.EmbeddingsRequest(texts=[t]) for t in [*short, *long]]
            results = await asyncio.gather(*(worker.infer(r) for r in requests))
            return results, worker.batcher.stats.snapshot()
        finally:
            await pool.aclose()

    results, stats = asyncio.run(main())
    # Two length buckets, each one batch: short texts never pad up to the long ones.
    assert stats["batches"] == 2 and stats["batch_rows"] == {"3": 1, "6": 1}
    runner = asyncio.run(_runner(registry, manifest))
    for text, result in zip([*short, *long], results, strict=True):
        alone = runner.run(wire.EmbeddingsRequest(texts=[text]))
        assert result.token_counts == alone.token_counts
        np.testing.assert_allclose(result.embeddings, alone.embeddings, rtol=0, atol=1e-5)


async def _runner(registry: ModelRegistry, manifest: ModelManifest):
    pool = ModelPool(registry, CpuTarget(EngineOptions(threads=1)), lambda m, c: BatchingOptions())
    return (await pool.worker(manifest)).runner


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("model=a/1.0.0", "a/1.0.0"),
        ("trace=x; model = b@2.0.0 ", "b@2.0.0"),
        ("trace=x,model=c", "c"),
        ("models=c", None),
        ("model=", None),
        ("", None),
    ],
)
def test_custom_attributes_name_the_model(value: str, found: str | None) -> None:
    assert custom_attribute(value, "model") == found


def test_batches_never_exceed_what_the_model_takes_in_one_run(registry: ModelRegistry) -> None:
    manifest = registry.resolve("all-minilm-l6-v2").model_copy(update={"max_batch_size": 4})
    assert ServerSettings.from_env({}).batching(manifest).max_batch_size == 4
    env = {"AIMAAS_BATCH_MAX_SIZE": "64"}
    assert ServerSettings.from_env(env).batching(manifest).max_batch_size == 4
