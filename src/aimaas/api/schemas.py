"""Request and response models of the public API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from aimaas.inference.wire import (
    MAX_DETECTIONS,
    DetectedObject,
    LabelScore,
    Segment,
    TranscriptSegment,
    Word,
)

NonEmptyText = Annotated[str, Field(min_length=1, max_length=100_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Out):
    """What this call is billed: ``units`` of ``unit``, and its price on the caller's plan."""

    units: float
    unit: str
    price_usd: float | None = Field(
        default=None, description="Charge on the caller's plan (None if no price is configured)."
    )


class ErrorDetail(_Out):
    code: str
    message: str
    request_id: str | None


class ErrorBody(_Out):
    """The one error shape of every endpoint."""

    error: ErrorDetail


# ---- text classification ----------------------------------------------------------------------


class TextClassificationIn(_In):
    """One text or a batch; with ``labels``, zero-shot classification over those candidates."""

    text: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]
    labels: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=200)]],
            Field(min_length=2, max_length=64),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Candidate labels for zero-shot classification: texts and labels are embedded with "
            "the stage's embeddings model and scored by softmax over scaled cosine similarity."
        ),
    )
    model: str | None = Field(default=None, description="Model name (default: the stage's).")
    version: str | None = Field(default=None, description="Model version (default: newest).")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "The striker scored twice in the final."}]},
    )


class TextPrediction(_Out):
    label: str
    score: float
    scores: dict[str, float]


class TextClassificationOut(_Out):
    """``label``/``score``/``scores`` describe the input when one string was sent and are null
    for a list; ``results`` always holds one entry per input, in order."""

    label: str | None
    score: float | None
    scores: dict[str, float] | None
    results: list[TextPrediction]
    model: str
    usage: Usage

    @classmethod
    def of(
        cls, results: list[TextPrediction], single: bool, model: str, usage: Usage
    ) -> TextClassificationOut:
        """The answer to one text (``single``: the first result also at the top) or a list."""
        first = results[0] if single else None
        return cls(
            label=first.label if first else None,
            score=first.score if first else None,
            scores=first.scores if first else None,
            results=results,
            model=model,
            usage=usage,
        )


# ---- embeddings (OpenAI-compatible) -----------------------------------------------------------


class EmbeddingsIn(BaseModel):
    """The OpenAI ``POST /v1/embeddings`` request (token-array inputs are not supported)."""

    model_config = ConfigDict(extra="ignore")  # unknown OpenAI fields must not break clients

    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]
    model: str | None = Field(default=None, description="Model name (default: the stage's).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, description="Only the model's own size.")
    input_type: Literal["query", "passage"] | None = Field(
        default=None,
        description=(
            "For E5-family models: 'query' (search queries, and symmetric tasks such as "
            "similarity or clustering) or 'passage' (documents to be searched); the platform "
            "adds the model's prefix. Default: the model's own (query for multilingual-e5-small). "
            "Ignored by models without prefixes."
        ),
    )
    user: str | None = None


class EmbeddingItem(_Out):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(
        description="floats, or base64 of little-endian float32 with encoding_format=base64"
    )


class EmbeddingsUsage(_Out):
    prompt_tokens: int
    total_tokens: int
    units: float
    unit: str
    price_usd: float | None = None


class EmbeddingsOut(_Out):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage


# ---- image classification ---------------------------------------------------------------------


class ImageFilesIn(_In):
    """The images of a JSON image request: ``image`` (one) or ``images`` (a batch), base64."""

    image: str | None = Field(default=None, description="base64 of a JPEG/PNG/... file")
    images: list[str] | None = Field(default=None, min_length=1)


class ImageJsonIn(ImageFilesIn):
    """JSON form of an image classification request."""

    top_k: int | None = Field(default=None, ge=1, le=20)


class ImagePrediction(_Out):
    label: str
    score: float
    predictions: list[LabelScore]


class ImageClassificationOut(_Out):
    """Top-level ``label``/``score``/``predictions`` are the first (or only) image's;
    ``results`` holds one entry per image."""

    label: str
    score: float
    predictions: list[LabelScore]
    results: list[ImagePrediction]
    model: str
    usage: Usage


# ---- object detection -------------------------------------------------------------------------


class DetectionJsonIn(ImageFilesIn):
    """JSON form of an object detection request (its fields win over the query's)."""

    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_detections: int | None = Field(default=None, ge=1, le=MAX_DETECTIONS)


class ImageDetections(_Out):
    """The objects found in one image, best first, and the image's size in pixels."""

    detections: list[DetectedObject]
    width: int
    height: int


class ObjectDetectionOut(_Out):
    """``detections`` is the first (or only) image's answer in the shape of Hugging Face's
    object-detection pipeline (``[{label, score, box: {xmin, ymin, xmax, ymax}}]``, boxes in
    pixels of the image as displayed, EXIF orientation applied); ``results`` holds one entry
    per image."""

    detections: list[DetectedObject]
    results: list[ImageDetections]
    model: str
    usage: Usage


# ---- audio ------------------------------------------------------------------------------------


class AudioJsonIn(_In):
    """JSON form of an audio request: ``audio`` (one WAV) or ``audios`` (a batch), base64."""

    audio: str | None = Field(default=None, description="base64 of a WAV file")
    audios: list[str] | None = Field(default=None, min_length=1)


class AudioPrediction(_Out):
    label: str
    score: float
    scores: dict[str, float]
    duration_s: float
    segments: list[Segment] | None = Field(
        default=None, description="speech segments (seconds), only with ?vad=true"
    )


class AudioClassificationOut(_Out):
    """Top-level fields are the first (or only) clip's; ``results`` has one per clip."""

    label: str
    score: float
    scores: dict[str, float]
    duration_s: float
    segments: list[Segment] | None = None
    results: list[AudioPrediction]
    model: str
    usage: Usage


class VadPrediction(_Out):
    segments: list[Segment]
    duration_s: float


class VadOut(_Out):
    segments: list[Segment]
    duration_s: float
    results: list[VadPrediction]
    model: str
    usage: Usage


# ---- catalogue --------------------------------------------------------------------------------


class Price(_Out):
    """List price: ``usd`` per ``unit``, plus ``request_fee_usd`` per call (before the plan's
    multiplier)."""

    unit: str
    usd: float
    request_fee_usd: float = 0.0
    currency: str = "USD"


class TokenPrices(_Out):
    """A language model's list prices per token kind (before the plan's multiplier); a call is
    billed ``usd`` per ``unit`` of their charge (``micro_usd``) plus the request fee."""

    input_usd_per_1k: float = Field(description="USD per 1k prompt tokens")
    output_usd_per_1k: float = Field(description="USD per 1k completion tokens")


class TensorInfo(_Out):
    name: str
    dtype: str
    shape: list[int | str]


class ModelSchema(_Out):
    endpoint: str = Field(description="the task route that serves this model")
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class ParityOut(_Out):
    """How closely the served ONNX graph matches the framework model it was exported from: the
    export gate's measurement (the model's manifest), which a model must pass to be served."""

    reference: str = Field(description="what ONNX was compared with, e.g. pytorch-eager-fp32")
    samples: int = Field(description="inputs compared")
    metrics: dict[str, float] = Field(
        description="measured agreement, e.g. top1_agreement, max_logit_diff, min_cosine"
    )
    tolerances: dict[str, float] = Field(description="the limits the metrics had to meet")
    passed: bool


class AccuracyOut(_Out):
    """Accuracy measured on labelled data not used to build the model (the model's manifest)."""

    dataset: str = Field(description="what was measured on, in words")
    metric: str
    value: float
    samples: int


class ModelInfo(_Out):
    """One model of the catalogue, in OpenAI's model shape (``id``, ``object``, ``created``,
    ``owned_by``) with the platform's own fields beside it, so OpenAI clients that pick a model
    by ``id`` and clients of the richer catalogue read the same document."""

    id: str = Field(description="the model's name, as OpenAI clients pass it in `model`")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the newest version was built")
    owned_by: str = Field(description="who serves the model")
    name: str
    task: str
    description: str
    version: str = Field(description="newest version (the default)")
    versions: list[str]
    target: str
    billing_unit: str
    price: Price | None
    labels: list[str] | None
    max_batch_size: int
    schema_: ModelSchema = Field(alias="schema", serialization_alias="schema")
    licence: str
    parity: ParityOut = Field(description="ONNX against its reference, from the export gate")
    accuracy: list[AccuracyOut] = Field(
        description="accuracy checks on held-out labelled data (may be empty)"
    )
    languages: list[str] | None = Field(
        default=None, description="speech models: ISO-639-1 codes they transcribe"
    )
    limits: dict[str, float] | None = Field(
        default=None,
        description=(
            "speech models: min_seconds / max_seconds of a recording; language models: "
            "context_length, max_new_tokens and max_prompt_chars"
        ),
    )
    token_prices: TokenPrices | None = Field(
        default=None, description="language models: input and output token prices"
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelList(_Out):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class Health(_Out):
    status: Literal["ok"] = "ok"
    version: str
    stage: str
    models_loaded: list[str]


# ---- speech to text (OpenAI's audio transcriptions and translations) -----------------------

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


class TranscriptionIn(_In):
    """The form fields of ``POST /v1/audio/transcriptions`` (besides ``file``), as OpenAI's."""

    model: str = Field(default="whisper-1", description="whisper-1: the stage's default")
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$", description="ISO-639-1 (None: detected)"
    )
    prompt: str | None = Field(default=None, max_length=2000)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Granularity] = Field(default_factory=list, max_length=2)
    chinese_script: Literal["simplified", "traditional"] = Field(
        default="simplified", description="Script of Chinese transcripts (not in OpenAI's API)"
    )


class TranscriptionUsage(_Out):
    """OpenAI's duration usage, plus what the platform bills (``units`` of ``unit``)."""

    type: Literal["duration"] = "duration"
    seconds: int = Field(description="audio seconds, rounded up (OpenAI's field)")
    units: float
    unit: str
    price_usd: float | None = None


class TranscriptionOut(_Out):
    """``response_format=json``."""

    text: str
    usage: TranscriptionUsage


class VerboseTranscriptionOut(_Out):
    """``response_format=verbose_json``: segments (default granularity) and/or words."""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="English name of the language, as OpenAI reports it")
    duration: float
    text: str
    segments: list[TranscriptSegment] | None = None
    words: list[Word] | None = None
    usage: TranscriptionUsage


# ---- language model (OpenAI's chat completions and completions) ---------------------------

#: Most messages in one conversation (the prompt-size and context limits bind long before).
MAX_MESSAGES = 1000
#: Longest text of one message or prompt, in characters (the model's prompt limit, 16,000
#: characters for the CPU model, is checked after the template).
MAX_MESSAGE_CHARS = 100_000


class _OpenAiIn(BaseModel):
    # Unknown OpenAI fields (user, metadata, store...) must not break clients.
    model_config = ConfigDict(extra="ignore")


class TextPart(_OpenAiIn):
    """A ``{"type": "text", "text": ...}`` content part (other part types are refused)."""

    type: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class ChatMessageIn(_OpenAiIn):
    """One turn: ``developer`` is read as ``system``; content parts are joined by newlines."""

    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[TextPart], Field(min_length=1, max_length=64)]
    )
    name: str | None = Field(default=None, description="Accepted and ignored.")


class StreamOptions(_OpenAiIn):
    include_usage: bool = Field(
        default=False,
        description="Send a last chunk before [DONE] with `choices: []` and the usage.",
    )


Stop = (
    Annotated[str, Field(min_length=1, max_length=200)]
    | Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=4)]
    | None
)


class _SamplingIn(_OpenAiIn):
    model: str | None = Field(default=None, description="Model id (default: the stage's).")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Most completion tokens (at most the plan's cap)."
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="0 is greedy decoding (default 1)."
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: Stop = Field(default=None, description="Up to 4 sequences that end the answer.")
    seed: int | None = Field(
        default=None,
        ge=-(2**63),
        lt=2**63,
        description="Same seed, same request, same model: same answer (with temperature > 0).",
    )
    n: int | None = Field(default=None, description="Only 1 is served.")
    stream: bool | None = Field(default=False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None


class ChatCompletionIn(_SamplingIn):
    """OpenAI's ``POST /v1/chat/completions`` request (text only; no tools, no logprobs)."""

    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="OpenAI's newer name of max_tokens."
    )

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "model": "qwen2-5-coder-0-5b-instruct",
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "max_tokens": 32,
                }
            ]
        },
    )


class CompletionIn(_SamplingIn):
    """OpenAI's legacy ``POST /v1/completions`` request: a raw prompt, continued as is."""

    prompt: (
        Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]],
            Field(min_length=1, max_length=1),
        ]
    )
    max_tokens: int | None = Field(default=16, ge=1, description="Default 16, as OpenAI's.")


class GenerationUsage(_Out):
    """OpenAI's token usage, plus what the platform bills (``units`` of ``unit``: the tokens'
    list-price charge in micro-dollars) and its price on the caller's plan."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    units: float
    unit: str
    price_usd: float | None = None


FinishReason = Literal["stop", "length"]


class AssistantMessage(_Out):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(_Out):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletionOut(_Out):
    id: str = Field(description="chatcmpl-<request id>")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: GenerationUsage


class ChatDelta(_Out):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Out):
    index: int = 0
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(_Out):
    """One server-sent event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: GenerationUsage | None = None


class CompletionChoice(_Out):
    index: int = 0
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class CompletionOut(_Out):
    """A ``text_completion``: the whole answer, or (streamed) one event of it."""

    id: str = Field(description="cmpl-<request id>")
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: GenerationUsage | None = None
