"""Task runners: a manifest's preprocessing plus its ONNX Runtime session, request in, result out.

The in-process backend and the GPU server both use :func:`load_runner`; only the execution
providers differ. Runners are thread-safe (ONNX Runtime sessions are; tokenisation holds no
per-call state).
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas import errors
from aimaas.inference import wire
from aimaas.manifest import (
    AudioPreprocessing,
    DetectionPreprocessing,
    ImagePreprocessing,
    InputType,
    ModelManifest,
    TextPreprocessing,
    VadPreprocessing,
)

#: Longest audio the classification and VAD runners accept, in seconds.
MAX_AUDIO_SECONDS = 60.0


def session_options(threads: int = 0) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads (0: runtime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # graphs here are sequential; extra pools only cost memory
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def create_session(path: Path, threads: int = 0, providers: Sequence[str] | None = None) -> Any:
    """An ``InferenceSession`` for ``path`` (CPU unless ``providers`` says otherwise)."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path),
        sess_options=session_options(threads),
        providers=list(providers or ["CPUExecutionProvider"]),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable probabilities."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_labels(
    probabilities: np.ndarray, labels: Sequence[str], top_k: int | None
) -> list[list[wire.LabelScore]]:
    """Per row, the ``top_k`` labels (all when None), best first."""
    k = len(labels) if top_k is None else min(top_k, len(labels))
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [
        [wire.LabelScore(label=labels[i], score=float(row[i])) for i in idx]
        for row, idx in zip(probabilities, order, strict=True)
    ]


class ModelRunner(ABC):
    """One loaded model. Subclasses declare the ``task`` they serve."""

    task: ClassVar[str]

    def __init__(self, manifest: ModelManifest, folder: Path, session: Any) -> None:
        self.manifest = manifest
        self.folder = folder
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_name = manifest.outputs[0].name

    @abstractmethod
    def run(self, request: Any) -> Any:
        """Run one request (one batch) and return its result model."""

    def _probabilities(self, outputs: np.ndarray) -> np.ndarray:
        # Graphs either end in logits or already in probabilities; the output name says which.
        if "prob" in self.output_name.lower():
            return outputs.astype(np.float64)
        return softmax(outputs)


class _TextRunner(ModelRunner):
    def __init__(self, manifest: ModelManifest, folder: Path, session: Any) -> None:
        super().__init__(manifest, folder, session)
        from aimaas.preprocess.text import TextEncoder

        params = manifest.preprocessing
        assert isinstance(params, TextPreprocessing)
        self.params = params
        self.encoder = TextEncoder(folder / params.tokenizer_file, params.max_length)

    def _forward(
        self, texts: list[str], input_type: InputType | None = None
    ) -> tuple[np.ndarray, list[int]]:
        batch = self.encoder.encode(texts, self.params.prefix(input_type))
        (out,) = self.session.run([self.output_name], batch.feeds(self.input_names))
        return out, batch.token_counts


class EmbeddingsRunner(_TextRunner):
    task = "embeddings"

    def run(self, request: wire.EmbeddingsRequest) -> wire.EmbeddingsResult:
        vectors, counts = self._forward(request.texts, request.input_type)
        # Built here from arrays the graph returned: skip re-validating every float.
        return wire.EmbeddingsResult.model_construct(
            task="embeddings", embeddings=vectors.astype(np.float32).tolist(), token_counts=counts
        )

    def embed(
        self, texts: list[str], input_type: InputType | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Embeddings as a float32 array (for callers that stay in process)."""
        vectors, counts = self._forward(texts, input_type)
        return vectors.astype(np.float32), counts


class TextClassificationRunner(_TextRunner):
    task = "text-classification"

    def run(self, request: wire.TextClassificationRequest) -> wire.TextClassificationResult:
        logits, counts = self._forward(request.texts)
        labels = self.manifest.labels or []
        return wire.TextClassificationResult(
            predictions=top_labels(self._probabilities(logits), labels, request.top_k),
            token_counts=counts,
        )


class ImageClassificationRunner(ModelRunner):
    task = "image-classification"

    def run(self, request: wire.ImageClassificationRequest) -> wire.ImageClassificationResult:
        from aimaas.preprocess.image import preprocess_images

        p = self.manifest.preprocessing
        assert isinstance(p, ImagePreprocessing)
        pixels = preprocess_images(
            request.images, resize=p.resize, size=p.size, mean=p.mean, std=p.std, scale=p.scale
        )
        (logits,) = self.session.run([self.output_name], {self.input_names[0]: pixels})
        labels = self.manifest.labels or []
        return wire.ImageClassificationResult(
            predictions=top_labels(self._probabilities(logits), labels, request.top_k)
        )


class ObjectDetectionRunner(ModelRunner):
    """TensorFlow-detection-API graphs (uint8 NHWC in; boxes, scores, classes out), post-
    processed by :func:`aimaas.inference.detection.postprocess`."""

    task = "object-detection"

    def __init__(self, manifest: ModelManifest, folder: Path, session: Any) -> None:
        super().__init__(manifest, folder, session)
        params = manifest.preprocessing
        assert isinstance(params, DetectionPreprocessing)
        self.params = params
        self.labels = dict(zip(params.class_ids, manifest.labels or [], strict=True))
        self.outputs = [o.name for o in manifest.outputs]

    def detect(
        self,
        pixels: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        threshold: float,
        max_detections: int,
    ) -> list[Any]:
        """Post-processed :class:`~aimaas.inference.detection.Detections` of a uint8 batch."""
        from aimaas.inference.detection import postprocess

        outputs = self.session.run(self.outputs, {self.input_names[0]: pixels})
        named = dict(zip(self.outputs, outputs, strict=True))
        p = self.params
        return [
            postprocess(
                boxes,
                scores,
                classes,
                width=width,
                height=height,
                # The graph never answers scores under its own threshold: a lower one is it.
                threshold=max(threshold, p.min_score),
                iou_threshold=p.iou_threshold,
                max_detections=min(max_detections, p.max_detections),
            )
            for boxes, scores, classes, (width, height) in zip(
                named["detection_boxes"],
                named["detection_scores"],
                named["detection_classes"],
                sizes,
                strict=True,
            )
        ]

    def run(self, request: wire.ObjectDetectionRequest) -> wire.ObjectDetectionResult:
        from aimaas.inference.detection import detection_batch, labelled

        pixels, sizes = detection_batch(request.images, size=self.params.size)
        found = self.detect(pixels, sizes, request.threshold, request.max_detections)
        return wire.ObjectDetectionResult(
            predictions=[labelled(d, self.labels) for d in found],
            sizes=[wire.ImageSize(width=w, height=h) for w, h in sizes],
        )


class AudioClassificationRunner(ModelRunner):
    task = "audio-classification"

    def run(self, request: wire.AudioClassificationRequest) -> wire.AudioClassificationResult:
        from aimaas.preprocess.audio import wav_to_features

        p = self.manifest.preprocessing
        assert isinstance(p, AudioPreprocessing)
        features, durations = [], []
        for index, wav in enumerate(request.audio):
            try:
                feats, seconds = wav_to_features(wav, p, max_seconds=MAX_AUDIO_SECONDS)
            except errors.InvalidInput as exc:
                raise errors.InvalidInput(f"audio {index}: {exc.message}") from None
            features.append(feats)
            durations.append(seconds)
        batch = np.stack(features).astype(np.float32)
        if len(self.manifest.inputs[0].shape) == 4:  # [batch, channel, mels, frames]
            batch = batch[:, None, :, :]
        (logits,) = self.session.run([self.output_name], {self.input_names[0]: batch})
        labels = self.manifest.labels or []
        return wire.AudioClassificationResult(
            predictions=top_labels(self._probabilities(logits), labels, request.top_k),
            durations_s=durations,
        )


def vad_probabilities(session: Any, samples: np.ndarray, params: VadPreprocessing) -> np.ndarray:
    """Speech probability of each window of ``samples`` (16 kHz mono float32) from a silero-vad
    session; the recurrent state is carried from window to window. The VAD runner and the
    speech runner (which splits long audio with it) share this."""
    from aimaas.preprocess.audio import vad_windows

    state = np.zeros((2, 1, 128), dtype=np.float32)
    rate = np.array(params.sample_rate, dtype=np.int64)
    windows = vad_windows(samples, params)
    probs = np.empty(len(windows), dtype=np.float32)
    for i, frame in enumerate(windows):
        out, state = session.run(None, {"input": frame[None, :], "state": state, "sr": rate})
        probs[i] = float(np.asarray(out).reshape(-1)[0])
    return probs


class VadRunner(ModelRunner):
    """silero-vad: 512-sample windows at 16 kHz with 64 samples of context and carried state."""

    task = "voice-activity-detection"

    def speech_probabilities(self, samples: np.ndarray, params: VadPreprocessing) -> np.ndarray:
        """Speech probability of each window of ``samples`` (:func:`vad_probabilities`)."""
        return vad_probabilities(self.session, samples, params)

    @staticmethod
    def segments(probs: np.ndarray, params: VadPreprocessing) -> list[wire.Segment]:
        """Speech segments of the window probabilities (:func:`~aimaas.preprocess.audio.
        speech_segments`, the same code the export gate checked), rounded to milliseconds."""
        from aimaas.preprocess.audio import speech_segments

        return [
            wire.Segment(start=round(start, 3), end=round(end, 3))
            for start, end in speech_segments(probs, params)
        ]

    def run(self, request: wire.VadRequest) -> wire.VadResult:
        from aimaas.preprocess.audio import decode_wav, resample

        p = self.manifest.preprocessing
        assert isinstance(p, VadPreprocessing)
        segments, durations = [], []
        for index, wav in enumerate(request.audio):
            try:
                audio = decode_wav(wav, max_seconds=MAX_AUDIO_SECONDS)
            except errors.InvalidInput as exc:
                raise errors.InvalidInput(f"audio {index}: {exc.message}") from None
            samples = resample(audio.samples, audio.sample_rate, p.sample_rate)
            segments.append(self.segments(self.speech_probabilities(samples, p), p))
            durations.append(audio.duration_s)
        return wire.VadResult(segments=segments, durations_s=durations)


RUNNERS: Mapping[str, type[ModelRunner]] = {
    cls.task: cls
    for cls in (
        EmbeddingsRunner,
        TextClassificationRunner,
        ImageClassificationRunner,
        ObjectDetectionRunner,
        AudioClassificationRunner,
        VadRunner,
    )
}


#: Loaders of the models that another engine than ONNX Runtime runs, by manifest ``runtime``,
#: as ``module:function`` (imported on first use: the engine's import cost and memory are paid
#: only where such a model is served).
RUNTIMES: Mapping[str, str] = {
    "ctranslate2": "aimaas.speech.runner:load_speech_runner",
    "onnxruntime-genai": "aimaas.generation.runner:load_generation_runner",
}


def load_runner(
    manifest: ModelManifest,
    folder: Path,
    *,
    threads: int = 0,
    providers: Sequence[str] | None = None,
) -> ModelRunner:
    """Create the runner of ``manifest`` from its (already verified) files in ``folder``.

    Models of another ``runtime`` are loaded by that runtime's loader (:data:`RUNTIMES`).

    Raises
    ------
    aimaas.errors.BackendUnavailable
        The engine cannot load the model (the artifact is unusable, not the request).
    """
    if manifest.runtime in RUNTIMES:
        module, _, function = RUNTIMES[manifest.runtime].partition(":")
        loader = getattr(importlib.import_module(module), function)
        return loader(manifest, folder, threads=threads, providers=providers)
    runner_cls = RUNNERS[manifest.task]
    try:
        session = create_session(folder / manifest.artifact.file, threads, providers)
    except Exception as exc:  # ORT raises its own unexported exception types
        raise errors.BackendUnavailable(
            f"Model {manifest.model_id} could not be loaded.", code="model_load_error"
        ) from exc
    return runner_cls(manifest, folder, session)


class RunnerCache:
    """Loads each model once, on first use, and keeps it (one lock per model)."""

    def __init__(self, loader: Callable[[ModelManifest], ModelRunner]) -> None:
        self._loader = loader
        self._runners: dict[str, ModelRunner] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, manifest: ModelManifest) -> ModelRunner:
        key = manifest.model_id
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = self._loader(manifest)
        return runner

    def loaded(self) -> list[str]:
        """Ids of the models loaded so far."""
        return sorted(self._runners)
