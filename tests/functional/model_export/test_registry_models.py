"""The built registry (``make models``): manifests, integrity and dynamic axes under ONNX Runtime.

Reads ``AIMAAS_REGISTRY`` (default ``build/registry``); nothing is rebuilt here.
"""

from __future__ import annotations

import io
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aimaas.manifest import ModelManifest
from aimaas.preprocess.audio import decode_wav, resample, speech_segments, vad_windows
from aimaas.preprocess.image import preprocess_images
from aimaas.preprocess.text import TextEncoder
from aimaas_testing.paths import REGISTRY
from model_export.registry import verify_entry

ROOT = Path(__file__).resolve().parents[3]
MODELS = (
    "all-minilm-l6-v2",
    "all-minilm-l6-v2-int8",
    "minilm-topic-classifier",
    "multilingual-e5-small",
    "multilingual-e5-small-int8",
    "multilingual-topic-classifier",
    "sentiment",
    "mobilenet-v2",
    "ssd-mobilenet-v2",
    "keyword-spotter",
    "silero-vad",
)
BILLING = {
    "embeddings": "1k_tokens",
    "text-classification": "1k_tokens",
    "image-classification": "image",
    "object-detection": "image",
    "audio-classification": "audio_second",
    "voice-activity-detection": "audio_second",
}


def entry(name: str) -> Path:
    path = REGISTRY / name / "1.0.0"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"{name} is not built in {REGISTRY}; run `make models`")
    return path


def load(name: str) -> tuple[ModelManifest, ort.InferenceSession]:
    path = entry(name)
    manifest = verify_entry(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(path / manifest.artifact.file), options, providers=["CPUExecutionProvider"]
    )
    return manifest, session


@pytest.mark.parametrize("name", MODELS)
def test_manifest_is_complete_and_matches_the_graph(name: str) -> None:
    manifest, session = load(name)
    assert manifest.parity.passed and manifest.target == "cpu"
    assert manifest.billing_unit == BILLING[manifest.task]
    assert manifest.source.licence and manifest.source.origin and manifest.accuracy
    assert [i.name for i in manifest.inputs] == [i.name for i in session.get_inputs()]
    assert [o.name for o in manifest.outputs] == [o.name for o in session.get_outputs()]
    if manifest.labels and manifest.task.endswith("classification"):
        assert manifest.outputs[0].shape[-1] == len(manifest.labels)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [
        "Hi",
        "The striker scored twice in the final.",
        "word " * 400,
        "Quarterly profit rose 12%.",
        "A telescope spotted a new planet.",
    ]


@pytest.mark.parametrize("name", ["all-minilm-l6-v2", "all-minilm-l6-v2-int8"])
def test_embeddings_dynamic_batch_and_sequence(name: str, texts: list[str]) -> None:
    manifest, session = load(name)
    encoder = TextEncoder(
        entry(name) / manifest.preprocessing.tokenizer_file, manifest.preprocessing.max_length
    )
    input_names = [i.name for i in session.get_inputs()]
    together = session.run(None, encoder.encode(texts).feeds(input_names))[0]
    assert together.shape == (5, 384) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-4)
    # Padding must not change fp32 results. Dynamic int8 quantises activations with one scale
    # per tensor, so batch-mates (and their padding) shift a short text's embedding slightly.
    limit = 0.999 if manifest.quantization.method == "none" else 0.95
    for index, text in enumerate(texts):  # batch 1, each its own sequence length
        alone = session.run(None, encoder.encode([text]).feeds(input_names))[0][0]
        assert float(alone @ together[index]) > limit
    assert encoder.encode(texts).input_ids.shape[1] == 256


def test_int8_embeddings_agree_with_fp32(texts: list[str]) -> None:
    fp32_manifest, fp32 = load("all-minilm-l6-v2")
    int8_manifest, int8 = load("all-minilm-l6-v2-int8")
    assert int8_manifest.quantization.method == "dynamic_int8"
    assert int8_manifest.quantization.per_channel
    assert int8_manifest.artifact.size_bytes < fp32_manifest.artifact.size_bytes / 3
    encoder = TextEncoder(entry("all-minilm-l6-v2") / "tokenizer.json", 256)
    feeds = encoder.encode(texts).feeds(["input_ids", "attention_mask"])
    a, b = fp32.run(None, feeds)[0], int8.run(None, feeds)[0]
    assert float(np.mean(np.sum(a * b, axis=1))) > 0.98


def test_topic_classifier_is_one_graph_with_labels(texts: list[str]) -> None:
    manifest, session = load("minilm-topic-classifier")
    encoder = TextEncoder(entry("minilm-topic-classifier") / "tokenizer.json", 256)
    logits = session.run(None, encoder.encode(texts).feeds(["input_ids", "attention_mask"]))[0]
    assert logits.shape == (5, len(manifest.labels or []))
    labels = [manifest.labels[i] for i in np.argmax(logits, axis=1)]  # type: ignore[index]
    assert labels[1] == "sports" and labels[4] == "science"


def test_mobilenet_recognises_the_cat_at_any_batch_size() -> None:
    import skimage.data
    from PIL import Image

    manifest, session = load("mobilenet-v2")
    p = manifest.preprocessing
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG")
    batch = preprocess_images(
        [buffer.getvalue()] * 3, resize=p.resize, size=p.size, mean=p.mean, std=p.std
    )
    one = session.run(None, {"pixel_values": batch[:1]})[0]
    three = session.run(None, {"pixel_values": batch})[0]
    assert one.shape == (1, 1000) and three.shape == (3, 1000)
    np.testing.assert_allclose(one[0], three[2], atol=1e-4)
    assert int(np.argmax(one)) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat (Mau)
    assert (manifest.labels or [])[285] == "Egyptian Mau"


def test_keyword_spotter_dynamic_time_and_batch() -> None:
    manifest, session = load("keyword-spotter")
    rng = np.random.default_rng(0)
    for batch, frames in ((1, 98), (3, 98), (2, 61), (4, 150)):
        features = rng.standard_normal((batch, 40, frames)).astype(np.float32)
        logits = session.run(None, {"features": features})[0]
        assert logits.shape == (batch, len(manifest.labels or []))
        assert np.isfinite(logits).all()
    assert manifest.accuracy[0].value >= 0.95


def test_silero_vad_finds_the_speech_in_beckett() -> None:
    manifest, session = load("silero-vad")
    try:
        dist = metadata.distribution("useful-moonshine-onnx")
    except metadata.PackageNotFoundError:
        pytest.skip("useful-moonshine-onnx (beckett.wav) is not installed")
    wav = next(f for f in dist.files or [] if f.name == "beckett.wav")
    audio = decode_wav(Path(str(dist.locate_file(wav))).read_bytes())
    samples = resample(audio.samples, audio.sample_rate, 16000)
    silence = np.zeros(16000, dtype=np.float32)
    params = manifest.preprocessing
    state = np.zeros((2, 1, 128), dtype=np.float32)
    probs = []
    for window in vad_windows(np.concatenate([silence, samples]), params):
        out, state = session.run(
            None, {"input": window[None], "state": state, "sr": np.array(16000, dtype=np.int64)}
        )
        probs.append(float(out[0, 0]))
    segments = speech_segments(np.asarray(probs), params)
    assert segments and segments[0][0] >= 0.9  # nothing in the leading second of silence
    assert sum(b - a for a, b in segments) > 3.0
