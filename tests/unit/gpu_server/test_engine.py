"""Execution targets, IO binding, fp16 conversion and its parity gate, on the CPU provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from aimaas.manifest import ModelManifest
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY
from functions.gpu_server.gpuserve.engine import (
    CPU,
    CUDA,
    TENSORRT,
    CpuTarget,
    CudaTarget,
    EngineOptions,
    IoBoundSession,
    TensorRtTarget,
    build_target,
    min_row_cosine,
    probe_feeds,
    try_fp16,
    wants_fp16,
)

REPO = Path(__file__).resolve().parents[3]
needs_minilm = pytest.mark.skipif(
    not (REGISTRY / "all-minilm-l6-v2").is_dir(), reason="models not built (make models)"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x[batch, 8] -> relu(x @ W) -> y[batch, 4], plus a second output z = x @ W."""
    weights = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4]),
        ],
        [helper.make_tensor("W", TensorProto.FLOAT, weights.shape, weights.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_auto_picks_cuda_where_offered_and_cpu_otherwise() -> None:
    options = EngineOptions()
    assert isinstance(build_target("auto", options, [CUDA, CPU]), CudaTarget)
    assert isinstance(build_target("auto", options, [TENSORRT, CUDA, CPU]), CudaTarget)
    assert isinstance(build_target("auto", options, ["AzureExecutionProvider", CPU]), CpuTarget)
    # This machine's ONNX Runtime has no CUDA: auto falls back to the CPU.
    assert isinstance(build_target("auto", options), CpuTarget)


def test_a_required_gpu_is_never_replaced_by_the_cpu() -> None:
    options = EngineOptions(require_gpu=True)
    assert isinstance(build_target("auto", options, [CUDA, CPU]), CudaTarget)
    with pytest.raises(ValueError, match="a GPU is required"):
        build_target("auto", options, [CPU])


def test_named_targets_need_their_provider() -> None:
    with pytest.raises(ValueError, match="needs CUDAExecutionProvider"):
        build_target("cuda", EngineOptions(), [CPU])
    with pytest.raises(ValueError, match="unknown execution target"):
        build_target("tpu", EngineOptions(), [CPU])
    with pytest.raises(ValueError, match="no usable"):
        build_target("auto", EngineOptions(), [])


@pytest.fixture(scope="module")
def minilm() -> ModelManifest:
    if not (REGISTRY / "all-minilm-l6-v2").is_dir():
        pytest.skip("models not built (make models)")
    return ModelRegistry(FolderStore(REGISTRY)).resolve("all-minilm-l6-v2")


def test_provider_lists_end_with_the_cpu(minilm: ModelManifest) -> None:
    options = EngineOptions(device_id=3)
    cuda = CudaTarget(options).providers(minilm)
    assert [p if isinstance(p, str) else p[0] for p in cuda] == [CUDA, CPU]
    assert cuda[0][1]["device_id"] == 3  # type: ignore[index]
    assert CpuTarget(options).providers(minilm) == [CPU]


@pytest.mark.parametrize(
    ("mode", "allowed", "wanted"),
    [("auto", True, True), ("auto", False, False), ("off", True, False), ("force", False, True)],
)
def test_fp16_is_wanted_per_manifest_and_mode(
    minilm: ModelManifest, mode: str, allowed: bool, wanted: bool
) -> None:
    manifest = minilm.model_copy(update={"fp16_allowed": allowed})
    assert wants_fp16(manifest, EngineOptions(fp16=mode)) is wanted
    trt = TensorRtTarget(EngineOptions(fp16=mode)).providers(manifest)
    assert trt[0][0] == TENSORRT and trt[0][1]["trt_fp16_enable"] is wanted  # type: ignore[index]
    int8 = manifest.model_copy(
        update={"quantization": manifest.quantization.model_copy(update={"method": "dynamic_int8"})}
    )
    assert wants_fp16(int8, EngineOptions(fp16=mode)) is False


def test_io_bound_session_answers_like_run(tiny_model: Path) -> None:
    session = ort.InferenceSession(str(tiny_model), providers=[CPU])
    bound = IoBoundSession(session, device="cpu")
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    for names in (None, ["y"], ["z", "y"]):
        want = session.run(names, {"x": x})
        got = bound.run(names, {"x": x})
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert [i.name for i in bound.get_inputs()] == ["x"]  # delegated to the session


def test_min_row_cosine() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert min_row_cosine([a], [a * 3]) == pytest.approx(1.0)
    assert min_row_cosine([a], [np.array([[1.0, 0.0], [0.0, -2.0]])]) == pytest.approx(-1.0)
    assert min_row_cosine([a, a], [a, np.array([[1.0, 1.0], [0.0, 1.0]])]) == pytest.approx(
        np.sqrt(0.5)
    )


@needs_minilm
def test_text_probe_feeds_are_real_tokens() -> None:
    registry = ModelRegistry(FolderStore(REGISTRY))
    manifest = registry.resolve("all-minilm-l6-v2")
    feeds = probe_feeds(manifest, registry.verified_dir(manifest))
    assert set(feeds) == {s.name for s in manifest.inputs}
    assert feeds["input_ids"].dtype == np.int64 and feeds["input_ids"].shape[0] == 4
    assert (feeds["input_ids"][:, 0] == 101).all()  # [CLS]: the tokenizer really ran


@needs_minilm
@pytest.mark.slow
def test_fp16_is_kept_only_when_parity_holds() -> None:
    registry = ModelRegistry(FolderStore(REGISTRY))
    manifest = registry.resolve("all-minilm-l6-v2")
    folder = registry.verified_dir(manifest)
    fp32 = ort.InferenceSession(str(folder / manifest.artifact.file), providers=[CPU])

    def make(graph: bytes) -> ort.InferenceSession:
        return ort.InferenceSession(graph, providers=[CPU])

    half, note = try_fp16(manifest, folder, fp32, make, min_cosine=0.999)
    assert half is not None and note.startswith("fp16 parity cosine")
    assert half.get_inputs()[0].type == "tensor(int64)"  # io types kept
    assert half.get_outputs()[0].type == "tensor(float)"

    none, note = try_fp16(manifest, folder, fp32, make, min_cosine=1.01)
    assert none is None and note.startswith("fp16 rejected")

    none, note = try_fp16(manifest, folder / "missing", fp32, make, min_cosine=0.9)
    assert none is None and note.startswith("fp16 not used")


def _registry_models() -> list[str]:
    # Published ONNX graphs only (not build staging folders, nor models of other engines).
    registry = ModelRegistry(FolderStore(REGISTRY))
    return [n for n in registry.names() if registry.resolve(n).runtime == "onnxruntime"]


@pytest.mark.parametrize("name", _registry_models())
def test_probe_feeds_run_every_model(name: str) -> None:
    """Warm-up and the fp16 gate feed these to each graph: they must be valid inputs."""
    registry = ModelRegistry(FolderStore(REGISTRY))
    manifest = registry.resolve(name)
    folder = registry.verified_dir(manifest)
    session = ort.InferenceSession(str(folder / manifest.artifact.file), providers=[CPU])
    outputs = session.run(None, probe_feeds(manifest, folder))
    assert outputs and all(np.isfinite(o).all() for o in outputs)
