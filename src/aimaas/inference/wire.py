"""The wire format between the API and wherever a model runs (in process, GPU server, SageMaker).

One Pydantic model per task input and per task output, shared by every backend and by the GPU
server (``functions/gpu_server``), so both ends validate the same contract.

Transport (HTTP GPU server and SageMaker endpoint alike)::

    POST /invocations
    Content-Type: application/json
    X-Amzn-SageMaker-Target-Model: <name>/<version>            (the HTTP backend)
    X-Amzn-SageMaker-Custom-Attributes: model=<name>/<version>  (SageMaker: CustomAttributes;
                                    the stack's endpoint is single-model, so no TargetModel)

    body:     one InferenceRequest,  e.g. {"task": "embeddings", "texts": ["hello"]}
    response: one InferenceResult,   e.g. {"task": "embeddings", "embeddings": [[...]],
                                           "token_counts": [3]}

Requests carry *raw* inputs (texts, encoded image files, WAV files), never tensors: the server
runs the same preprocessing (:mod:`aimaas.preprocess`) as the in-process backend, so a model
gives the same answer wherever it runs. Binary fields are standard base64 strings in JSON and
plain ``bytes`` in Python. A request is one batch: the server must run it as one model batch
(or split it, at its own discretion, into its own dynamic batches).

Errors: the server answers 4xx with the platform's error shape (``aimaas.errors.error_body``)
for input it refuses (relayed to the client as 422) and 5xx when it cannot serve (relayed as 503).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


def _from_base64(value: Any) -> Any:
    # Python callers hand over bytes; JSON peers send base64 text.
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not valid base64") from exc
    return value


WireBytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda data: base64.b64encode(data).decode("ascii"), when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelScore(_Wire):
    """One label and its probability."""

    label: str
    score: float


class Box(_Wire):
    """A box in pixels of the displayed image (after its EXIF orientation), as Hugging Face's
    object-detection pipeline answers it."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int


class DetectedObject(_Wire):
    """One object found in an image: its label, score and box."""

    label: str
    score: float
    box: Box


class ImageSize(_Wire):
    """An image's displayed size in pixels (full resolution, EXIF orientation applied)."""

    width: int
    height: int


class Segment(_Wire):
    """A stretch of speech, in seconds from the start of the audio."""

    start: float
    end: float


# ---- requests ---------------------------------------------------------------------------------


class EmbeddingsRequest(_Wire):
    task: Literal["embeddings"] = "embeddings"
    texts: list[str] = Field(min_length=1)
    input_type: Literal["query", "passage"] | None = Field(
        default=None, description="E5-style prefix choice; None: the model's default"
    )


class TextClassificationRequest(_Wire):
    task: Literal["text-classification"] = "text-classification"
    texts: list[str] = Field(min_length=1)
    top_k: int | None = Field(default=None, ge=1, description="None: every label")


class ImageClassificationRequest(_Wire):
    task: Literal["image-classification"] = "image-classification"
    images: list[WireBytes] = Field(min_length=1, description="encoded image files")
    top_k: int | None = Field(default=5, ge=1)


#: Hugging Face's object-detection pipeline's default score threshold.
DEFAULT_DETECTION_THRESHOLD = 0.5
#: Most objects answered per image (SSD's own limit), and the default.
MAX_DETECTIONS = 100


class ObjectDetectionRequest(_Wire):
    task: Literal["object-detection"] = "object-detection"
    images: list[WireBytes] = Field(min_length=1, description="encoded image files")
    threshold: float = Field(
        default=DEFAULT_DETECTION_THRESHOLD, ge=0.0, le=1.0, description="lowest score answered"
    )
    max_detections: int = Field(
        default=MAX_DETECTIONS, ge=1, le=MAX_DETECTIONS, description="most boxes per image"
    )


class AudioClassificationRequest(_Wire):
    task: Literal["audio-classification"] = "audio-classification"
    audio: list[WireBytes] = Field(min_length=1, description="WAV files")
    top_k: int | None = Field(default=None, ge=1)


class VadRequest(_Wire):
    task: Literal["voice-activity-detection"] = "voice-activity-detection"
    audio: list[WireBytes] = Field(min_length=1, description="WAV files")


class TranscriptionRequest(_Wire):
    """Speech to text of one recording (any container :mod:`aimaas.speech` decodes)."""

    task: Literal["automatic-speech-recognition"] = "automatic-speech-recognition"
    audio: list[WireBytes] = Field(min_length=1, max_length=1, description="one audio file")
    language: str | None = Field(default=None, description="ISO-639-1; None: detected")
    prompt: str | None = Field(default=None, max_length=2000)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    translate: bool = Field(default=False, description="into English")
    word_timestamps: bool = False
    traditional_chinese: bool = Field(
        default=False, description="Chinese in Traditional characters (default Simplified)"
    )


class ChatMessage(_Wire):
    """One turn of a conversation (already validated and flattened to text at the edge)."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(_Wire):
    """Text generation: a conversation (``messages``, put through the model's fixed chat
    template) or a raw ``prompt`` (completions), and how to sample the continuation."""

    task: Literal["text-generation"] = "text-generation"
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    max_tokens: int = Field(ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give messages or a prompt")
        return self


InferenceRequest = Annotated[
    GenerationRequest
    | EmbeddingsRequest
    | TextClassificationRequest
    | ImageClassificationRequest
    | ObjectDetectionRequest
    | AudioClassificationRequest
    | VadRequest
    | TranscriptionRequest,
    Field(discriminator="task"),
]

# ---- results ----------------------------------------------------------------------------------


class EmbeddingsResult(_Wire):
    task: Literal["embeddings"] = "embeddings"
    embeddings: list[list[float]]
    token_counts: list[int]


class TextClassificationResult(_Wire):
    task: Literal["text-classification"] = "text-classification"
    predictions: list[list[LabelScore]] = Field(description="per input, best first")
    token_counts: list[int]


class ImageClassificationResult(_Wire):
    task: Literal["image-classification"] = "image-classification"
    predictions: list[list[LabelScore]]


class ObjectDetectionResult(_Wire):
    task: Literal["object-detection"] = "object-detection"
    predictions: list[list[DetectedObject]] = Field(description="per image, best first")
    sizes: list[ImageSize]


class AudioClassificationResult(_Wire):
    task: Literal["audio-classification"] = "audio-classification"
    predictions: list[list[LabelScore]]
    durations_s: list[float]


class VadResult(_Wire):
    task: Literal["voice-activity-detection"] = "voice-activity-detection"
    segments: list[list[Segment]]
    durations_s: list[float]


class Word(_Wire):
    """One word and when it was said (seconds from the start of the recording)."""

    word: str
    start: float
    end: float


class TranscriptSegment(_Wire):
    """One decoded segment, with the fields OpenAI's ``verbose_json`` reports."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionResult(_Wire):
    task: Literal["automatic-speech-recognition"] = "automatic-speech-recognition"
    text: str
    language: str = Field(description="ISO-639-1 code, given or detected")
    segments: list[TranscriptSegment]
    words: list[Word] | None = None
    durations_s: list[float] = Field(description="decoded audio seconds (billed)")


FinishReason = Literal["stop", "length"]


class GenerationChunk(_Wire):
    """A piece of a streamed generation: new text, the token counts so far (the billed
    quantities: a stream abandoned after this piece is billed for them), and on the last piece
    why it ended."""

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class GenerationResult(_Wire):
    task: Literal["text-generation"] = "text-generation"
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


InferenceResult = Annotated[
    GenerationResult
    | EmbeddingsResult
    | TextClassificationResult
    | ImageClassificationResult
    | ObjectDetectionResult
    | AudioClassificationResult
    | VadResult
    | TranscriptionResult,
    Field(discriminator="task"),
]

REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(InferenceRequest)
RESULT_ADAPTER: TypeAdapter[Any] = TypeAdapter(InferenceResult)


def batch_size(request: Any) -> int:
    """Number of inputs in a request (what ``max_batch_size`` limits)."""
    for field in ("texts", "images", "audio"):
        items = getattr(request, field, None)
        if items is not None:
            return len(items)
    if isinstance(request, GenerationRequest):
        return 1  # one conversation; its size is held by the context length instead
    raise TypeError(f"not an inference request: {type(request).__name__}")
