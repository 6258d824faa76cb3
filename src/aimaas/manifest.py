"""The model manifest: everything the server needs to know about one exported model.

``model_export`` writes one ``manifest.json`` next to each ONNX artifact; the serving code,
the GPU server and the CDK app read it. The registry layout is::

    <registry root>/<name>/<version>/manifest.json
    <registry root>/<name>/<version>/<artifact.file>      (the ONNX model)
    <registry root>/<name>/<version>/<files[i].file>       (tokenizer.json, ...)
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILENAME = "manifest.json"

Task = Literal[
    "embeddings",
    "text-classification",
    "image-classification",
    "audio-classification",
    "voice-activity-detection",
    "automatic-speech-recognition",
    "object-detection",
    "text-generation",
]
Target = Literal["cpu", "gpu"]
#: The engine that runs the artifact: one runner port, several runner kinds. Models arriving
#: already converted for another engine (Whisper in CTranslate2 format, language models built
#: for ONNX Runtime GenAI) are registered, verified and routed like any other.
Runtime = Literal["onnxruntime", "ctranslate2", "onnxruntime-genai"]
# How usage of a model is counted for billing; prices per unit live in aimaas/data/plans.toml.
BillingUnit = Literal["call", "1k_tokens", "image", "audio_second"]
#: What a text is to a retrieval-trained encoder (E5: a search query or a document passage).
InputType = Literal["query", "passage"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
_VERSION = re.compile(r"^\d{1,6}\.\d{1,6}\.\d{1,6}$")
#: The naming rule, as a client is told it.
NAME_RULE = "3 to 64 lower-case letters, digits and '-', starting and ending with a letter or digit"


def is_model_name(text: str) -> bool:
    """Whether ``text`` follows the registry's naming rule (:data:`NAME_RULE`)."""
    return bool(_NAME.match(text))


def is_version(text: str) -> bool:
    """Whether ``text`` is a ``MAJOR.MINOR.PATCH`` version."""
    return bool(_VERSION.match(text))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One ONNX graph input or output. Dynamic axes are named (``"batch"``, ``"sequence"``)."""

    name: str
    dtype: Literal["float32", "float16", "int64", "int32", "uint8"]
    shape: list[int | str]


class FileRef(_Strict):
    """A file of the model version, with its integrity data."""

    file: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)


class TextPreprocessing(_Strict):
    """Tokenisation with the ``tokenizers`` package from a shipped ``tokenizer.json``."""

    kind: Literal["text"] = "text"
    tokenizer_file: str
    max_length: int = Field(gt=0)
    # Embeddings are mean-pooled over the attention mask and L2-normalised inside the graph.
    pooling: Literal["mean"] = "mean"
    normalize: bool = True
    # Encoders trained with instruction prefixes (E5: "query: " / "passage: ") get them from
    # the platform, so clients never write them: the text runner prepends prefixes[input_type].
    prefixes: dict[InputType, str] = Field(default_factory=dict)
    default_input_type: InputType | None = None

    def prefix(self, input_type: InputType | None = None) -> str:
        """The text prepended for ``input_type`` (the default one when None; "" if none)."""
        chosen = input_type or self.default_input_type
        return self.prefixes.get(chosen, "") if chosen else ""


class ImagePreprocessing(_Strict):
    """Resize the short side to ``resize``, centre-crop ``size``, scale, normalise, NCHW."""

    kind: Literal["image"] = "image"
    resize: int = Field(gt=0)
    size: int = Field(gt=0)
    scale: float = 1.0 / 255.0
    mean: list[float]
    std: list[float]
    color_mode: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"


class DetectionPreprocessing(_Strict):
    """Object detection: the RGB image resized to ``size`` x ``size`` as uint8 NHWC.

    SSD graphs resize every input to their own square size anyway (ignoring aspect ratio), so
    resizing before the graph costs nothing in accuracy and gives a fixed shape that batches.
    The graph answers normalised ``[ymin, xmin, ymax, xmax]`` boxes, scores and class ids;
    :mod:`aimaas.inference.detection` turns them into pixel boxes of the original image.
    """

    kind: Literal["detection"] = "detection"
    size: int = Field(gt=0)
    layout: Literal["NHWC"] = "NHWC"
    box_format: Literal["yxyx-normalised"] = "yxyx-normalised"
    #: The graph's class id of each manifest label, in the same order (COCO ids skip numbers).
    class_ids: list[int] = Field(min_length=1)
    #: Scores below this never come out of the graph (a threshold built into it).
    min_score: float = Field(ge=0.0, le=1.0)
    #: Class-aware non-maximum suppression applied after the graph.
    iou_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    #: Most boxes one image can answer (the graph's own limit).
    max_detections: int = Field(default=100, gt=0)


class AudioPreprocessing(_Strict):
    """Log-mel features of a fixed-length mono clip (see ``aimaas.preprocess.audio``)."""

    kind: Literal["audio"] = "audio"
    sample_rate: int = 16000
    clip_samples: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    frames: int = 98
    fmin: float = 20.0
    fmax: float = 7600.0


class VadPreprocessing(_Strict):
    """silero-vad: 16 kHz mono, fixed windows, recurrent state carried between windows."""

    kind: Literal["vad"] = "vad"
    sample_rate: int = 16000
    window_samples: int = 512
    context_samples: int = 64
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100


class SpeechPreprocessing(_Strict):
    """Whisper (CTranslate2): any audio container decoded to 16 kHz mono float32, split by the
    silero-vad model shipped beside it (``vad_file``) into pieces of at most one window.

    ``max_seconds`` is the longest recording answered synchronously (measured against the
    request deadline on 2 CPU threads); longer ones are refused before any work.
    """

    kind: Literal["speech"] = "speech"
    sample_rate: int = 16000
    window_seconds: float = Field(default=30.0, gt=0)
    min_seconds: float = Field(default=0.1, gt=0)
    max_seconds: float = Field(gt=0)
    languages: list[str] = Field(min_length=1)
    translate: bool = False  # multilingual models translate into English
    vad_file: str
    vad: VadPreprocessing = Field(default_factory=VadPreprocessing)
    beam_size: int = Field(default=5, gt=0)
    cpu_compute_type: str = "int8"
    gpu_compute_type: str = "float16"


class GenerationPreprocessing(_Strict):
    """A language model served by ONNX Runtime GenAI (``genai_config.json`` beside it).

    The chat template is chosen here by name and implemented in reviewed code
    (:mod:`aimaas.generation.chat`); a template shipped inside the weights file is never run.
    ``context_length`` bounds prompt plus completion tokens (the platform's limit, at most the
    model's own); ``max_new_tokens`` caps one completion; ``max_prompt_chars`` refuses a huge
    prompt before it is tokenised.
    """

    kind: Literal["generation"] = "generation"
    chat_template: Literal["chatml"] = "chatml"
    default_system: str = ""
    context_length: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    max_prompt_chars: int = Field(gt=0)
    languages: list[str] = Field(min_length=1)


Preprocessing = Annotated[
    GenerationPreprocessing
    | TextPreprocessing
    | ImagePreprocessing
    | DetectionPreprocessing
    | AudioPreprocessing
    | VadPreprocessing
    | SpeechPreprocessing,
    Field(discriminator="kind"),
]


class Source(_Strict):
    """Where the weights came from, so every artifact has provenance and a licence."""

    package: str
    package_version: str
    licence: str
    origin: str  # upstream model / weights and how they were obtained or trained


class Quantization(_Strict):
    method: Literal["none", "dynamic_int8"] = "none"
    per_channel: bool = False


class ParityReport(_Strict):
    """The export gate's measurement of ONNX against its reference (PyTorch, TensorFlow...)."""

    reference: str  # what ONNX was compared with, e.g. "pytorch-eager-fp32"
    samples: int = Field(gt=0)
    metrics: dict[str, float]
    tolerances: dict[str, float]
    passed: bool


class AccuracyReport(_Strict):
    """Accuracy on labelled data that was not used to build the model."""

    dataset: str
    metric: str
    value: float
    samples: int = Field(gt=0)


class BatchingPolicy(_Strict):
    """Dynamic batching limits used where the model is served by the GPU server."""

    max_batch_size: int = Field(default=32, gt=0)
    max_wait_ms: float = Field(default=5.0, ge=0)


class ExporterInfo(_Strict):
    torch_version: str
    tensorflow_version: str | None = None  # graphs converted from TensorFlow (tf2onnx)
    onnx_opset: int
    onnxruntime_version: str
    exporter: str  # e.g. "torch.onnx.export(dynamo=False)" or "shipped"


class ModelManifest(_Strict):
    """Schema of ``manifest.json``; the contract between the export pipeline and serving."""

    schema_version: Literal[1] = 1
    name: str
    version: str
    task: Task
    description: str
    target: Target = "cpu"
    runtime: Runtime = "onnxruntime"
    artifact: FileRef
    files: list[FileRef] = Field(default_factory=list)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    labels: list[str] | None = None
    # A classifier built on an embeddings model of the registry names it: zero-shot
    # classification over candidate labels then runs on that encoder.
    base_model: str | None = None
    billing_unit: BillingUnit
    max_batch_size: int = Field(default=64, gt=0)
    batching: BatchingPolicy = Field(default_factory=BatchingPolicy)
    fp16_allowed: bool = False
    source: Source
    parity: ParityReport
    accuracy: list[AccuracyReport] = Field(default_factory=list)
    quantization: Quantization = Field(default_factory=Quantization)
    exporter: ExporterInfo
    created_at: datetime

    @model_validator(mode="after")
    def _check(self) -> ModelManifest:
        if not _NAME.match(self.name):
            raise ValueError(f"model name {self.name!r} must be a lower-case slug")
        if not _VERSION.match(self.version):
            raise ValueError(f"version {self.version!r} must be MAJOR.MINOR.PATCH")
        if self.task.endswith("classification") and not self.labels:
            raise ValueError("a classification model needs its labels")
        if isinstance(self.preprocessing, DetectionPreprocessing) and len(
            self.preprocessing.class_ids
        ) != len(self.labels or []):
            raise ValueError("a detection model needs one label per class id")
        if not self.parity.passed:
            raise ValueError("a manifest is only written for a model that passed its gate")
        return self

    @property
    def model_id(self) -> str:
        """``name@version``, the id reported in responses and usage records."""
        return f"{self.name}@{self.version}"

    @property
    def all_files(self) -> list[FileRef]:
        return [self.artifact, *self.files]


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for ``MAJOR.MINOR.PATCH`` strings (numeric, so 1.10.0 > 1.9.0)."""
    return tuple(int(part) for part in version.split("."))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_ref(path: Path) -> FileRef:
    """Build the :class:`FileRef` of a file on disk."""
    return FileRef(file=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size)
