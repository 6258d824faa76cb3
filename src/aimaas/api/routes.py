"""The HTTP routes: task endpoints, the model catalogue, the generic predict, health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from aimaas import __version__, errors
from aimaas.api import bodies, generation, tasks, transcriptions
from aimaas.api import schemas as api
from aimaas.api.calls import Call
from aimaas.api.classifiers import is_classifier_id
from aimaas.api.container import Container
from aimaas.api.dependencies import CallDep, ContainerDep, IdentifiedCallDep
from aimaas.inference.wire import DEFAULT_DETECTION_THRESHOLD, MAX_DETECTIONS
from aimaas.manifest import GenerationPreprocessing, ModelManifest, SpeechPreprocessing

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": api.ErrorBody, "description": text}
    for status, text in {
        400: "Malformed body (bad JSON, invalid UTF-8, broken multipart)",
        401: "No or malformed API key",
        403: "Unknown or revoked key",
        404: "Unknown model or version",
        409: "Idempotency-Key already used for a different request",
        413: "Body over the size limit",
        415: "Unsupported Content-Type",
        422: "Invalid input",
        429: "Usage limit reached",
        503: "Backend or usage ledger unavailable",
    }.items()
}


ModelName = Annotated[str | None, Query(description="Model name (default: the stage's).")]
Version = Annotated[str | None, Query(description="Model version (default: newest).")]
TopK = Annotated[int, Query(ge=1, le=20, description="How many labels to return.")]
Vad = Annotated[bool, Query(description="Also return speech segments from the silero-vad model.")]
Threshold = Annotated[float, Query(ge=0.0, le=1.0, description="Lowest score answered.")]
MaxDetections = Annotated[
    int, Query(ge=1, le=MAX_DETECTIONS, description="Most objects per image.")
]
Render = Annotated[
    bool, Query(description="Answer the image with labelled boxes drawn (PNG), not JSON.")
]

router = APIRouter(prefix="/v1", responses=ERRORS)


def respond(model: BaseModel) -> Response:
    """Serialise a response model once, straight to JSON.

    The models are built by this code from validated data; FastAPI's default path would dump,
    re-validate and re-serialise them (three passes over every embedding). ``response_model``
    on the routes still documents the shape in OpenAPI.
    """
    return Response(model.model_dump_json(), media_type="application/json")


@router.post(
    "/text-classification",
    response_model=api.TextClassificationOut,
    dependencies=[Depends(bodies.require_json)],
    summary="Classify text (topic model, or zero-shot over candidate labels)",
)
async def classify_text(
    body: api.TextClassificationIn, container: ContainerDep, call: CallDep
) -> Response:
    return respond(await call.run(tasks.text_classification, container, call, body))


@router.post(
    "/embeddings",
    response_model=api.EmbeddingsOut,
    dependencies=[Depends(bodies.require_json)],
    summary="Sentence embeddings (OpenAI-compatible)",
)
async def create_embeddings(
    body: api.EmbeddingsIn, container: ContainerDep, call: CallDep
) -> Response:
    return respond(await call.run(tasks.embeddings, container, call, body))


@router.post(
    "/image-classification",
    response_model=api.ImageClassificationOut,
    summary="Classify images (ImageNet labels)",
    openapi_extra=bodies.binary_body_openapi(bodies.IMAGE_TYPES, api.ImageJsonIn),
)
async def classify_image(
    container: ContainerDep,
    call: CallDep,
    images: Annotated[bodies.ImageInputs, Depends(bodies.image_inputs)],
    top_k: TopK = 5,
    model: ModelName = None,
    version: Version = None,
) -> Response:
    manifest = tasks.resolve(container, "image-classification", model, version)
    return respond(await _run_images(container, call, manifest, images, top_k))


@router.post(
    "/object-detection",
    response_model=api.ObjectDetectionOut,
    summary="Find and box objects in images (COCO labels); ?render=true draws them",
    openapi_extra={
        **bodies.binary_body_openapi(bodies.IMAGE_TYPES, api.DetectionJsonIn),
        "responses": {
            "200": {
                "content": {
                    "image/png": {
                        "schema": {"type": "string", "format": "binary"},
                        "description": "with ?render=true or Accept: image/png",
                    }
                }
            }
        },
    },
)
async def detect_objects(
    request: Request,
    container: ContainerDep,
    call: CallDep,
    images: Annotated[bodies.DetectionInputs, Depends(bodies.detection_inputs)],
    threshold: Threshold = DEFAULT_DETECTION_THRESHOLD,
    max_detections: MaxDetections = MAX_DETECTIONS,
    render: Render = False,
    model: ModelName = None,
    version: Version = None,
) -> Response:
    manifest = tasks.resolve(container, "object-detection", model, version)
    render = render or wants_png(request)
    out, png = await _detect(container, call, manifest, images, threshold, max_detections, render)
    return respond(out) if png is None else png_response(png, out.usage)


def wants_png(request: Request) -> bool:
    """Whether the client asked for the drawn image (``Accept: image/png``)."""
    accepted = request.headers.get("accept", "")
    return any(part.split(";", 1)[0].strip().lower() == "image/png" for part in accepted.split(","))


async def _detect(
    container: Container,
    call: Call,
    manifest: ModelManifest,
    images: bodies.DetectionInputs,
    threshold: float,
    max_detections: int,
    render: bool,
) -> tuple[api.ObjectDetectionOut, bytes | None]:
    return await call.run(
        tasks.object_detection,
        container,
        call,
        images.images,
        threshold if images.threshold is None else images.threshold,  # a JSON body's own win
        max_detections if images.max_detections is None else images.max_detections,
        manifest,
        render,
    )


def png_response(png: bytes, usage: api.Usage) -> Response:
    """The drawn image; what the call was billed travels in headers (there is no JSON)."""
    headers = {"X-Aimaas-Units": f"{usage.units:g}", "X-Aimaas-Unit": usage.unit}
    if usage.price_usd is not None:
        headers["X-Aimaas-Price-Usd"] = f"{usage.price_usd:.10g}"
    return Response(png, media_type="image/png", headers=headers)


@router.post(
    "/audio-classification",
    response_model=api.AudioClassificationOut,
    summary="Spot keywords in WAV audio (any rate, mono or stereo)",
    openapi_extra=bodies.binary_body_openapi(bodies.AUDIO_TYPES, api.AudioJsonIn),
)
async def classify_audio(
    container: ContainerDep,
    call: CallDep,
    clips: Annotated[list[bytes], Depends(bodies.audio_inputs)],
    vad: Vad = False,
    model: ModelName = None,
    version: Version = None,
) -> Response:
    manifest = tasks.resolve(container, "audio-classification", model, version)
    result = await call.run(tasks.audio_classification, container, call, clips, vad, manifest)
    return respond(result)


async def _run_images(
    container: Container,
    call: Call,
    manifest: ModelManifest,
    images: bodies.ImageInputs,
    top_k: int,
) -> BaseModel:
    return await call.run(
        tasks.image_classification,
        container,
        call,
        images.images,
        images.top_k or top_k,  # a JSON body's own top_k wins over the query's
        manifest,
    )


TRANSCRIPTION_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **api.TranscriptionIn.model_json_schema()["properties"],
                    },
                    "required": ["file"],
                }
            }
        },
    }
}


@router.post(
    "/audio/transcriptions",
    response_model=api.TranscriptionOut | api.VerboseTranscriptionOut,
    summary="Speech to text (OpenAI-compatible; json, text, srt, vtt, verbose_json)",
    openapi_extra=TRANSCRIPTION_FORM,
)
async def create_transcription(
    container: ContainerDep,
    call: CallDep,
    inputs: Annotated[
        transcriptions.TranscriptionInputs, Depends(transcriptions.transcription_inputs)
    ],
) -> Response:
    manifest = transcriptions.resolve(container, inputs.form.model)
    return await call.run(transcriptions.transcribe, container, call, inputs, manifest)


@router.post(
    "/audio/translations",
    response_model=api.TranscriptionOut | api.VerboseTranscriptionOut,
    summary="Speech in any language to English text (OpenAI-compatible)",
    openapi_extra=TRANSCRIPTION_FORM,
)
async def create_translation(
    container: ContainerDep,
    call: CallDep,
    inputs: Annotated[
        transcriptions.TranscriptionInputs, Depends(transcriptions.transcription_inputs)
    ],
) -> Response:
    manifest = transcriptions.resolve(container, inputs.form.model, translate=True)
    return await call.run(transcriptions.transcribe, container, call, inputs, manifest, True)


#: Models that only stream events carry (added to the document's components by the factory).
EVENT_MODELS: tuple[type[BaseModel], ...] = (api.ChatCompletionChunk, api.CompletionOut)


def sse_response(chunk: type[BaseModel]) -> dict[str, Any]:
    """The documented ``text/event-stream`` answer of a route whose events carry ``chunk``.

    Before OpenAPI 3.2 a stream's ``schema`` describes one event: its ``data`` is the chunk's
    JSON (``contentMediaType``/``contentSchema``), or ``[DONE]`` at the end.
    """
    name = chunk.__name__
    payload = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{name}"},
    }
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"anyOf": [{"const": "[DONE]"}, payload]}},
        "description": (
            f"With stream=true: server-sent events `data: <{name} JSON>` and a blank line "
            "each, the last `data: [DONE]`; with stream_options.include_usage the event "
            "before it has `choices: []` and the usage."
        ),
    }
    return {"200": {"content": {"text/event-stream": {"schema": event}}}}


@router.post(
    "/chat/completions",
    response_model=api.ChatCompletionOut,
    dependencies=[Depends(bodies.require_json)],
    summary="Chat with a language model (OpenAI-compatible; stream=true for server-sent events)",
    openapi_extra={"responses": sse_response(api.ChatCompletionChunk)},
)
async def create_chat_completion(
    body: api.ChatCompletionIn, container: ContainerDep, call: CallDep
) -> Response:
    manifest = generation.resolve(container, body.model)
    request = generation.chat_request(body, manifest, call.principal.plan)
    shape = generation.ChatShape(call, manifest)
    return await generation.answer(
        container, call, manifest, request, shape, bool(body.stream), _include_usage(body)
    )


@router.post(
    "/completions",
    response_model=api.CompletionOut,
    dependencies=[Depends(bodies.require_json)],
    summary="Continue a prompt (OpenAI's legacy completions; stream=true for server-sent events)",
    openapi_extra={"responses": sse_response(api.CompletionOut)},
)
async def create_completion(
    body: api.CompletionIn, container: ContainerDep, call: CallDep
) -> Response:
    manifest = generation.resolve(container, body.model)
    request = generation.completion_request(body, manifest, call.principal.plan)
    shape = generation.Shape(call, manifest)
    return await generation.answer(
        container, call, manifest, request, shape, bool(body.stream), _include_usage(body)
    )


def _include_usage(body: api.ChatCompletionIn | api.CompletionIn) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


# ---- catalogue and generic predict ------------------------------------------------------------

_ENDPOINTS = {
    "embeddings": "/v1/embeddings",
    "text-classification": "/v1/text-classification",
    "image-classification": "/v1/image-classification",
    "object-detection": "/v1/object-detection",
    "audio-classification": "/v1/audio-classification",
    "voice-activity-detection": "/v1/models/{model}/predict",
    "automatic-speech-recognition": "/v1/audio/transcriptions",
    "text-generation": "/v1/chat/completions",
}
#: OpenAI's ``owned_by`` of every catalogue entry: the platform serves (and answers for) them.
OWNED_BY = "aimaas"


def _limits(
    manifest: ModelManifest, catalog: Any
) -> tuple[dict[str, float] | None, api.TokenPrices | None]:
    """A model's input limits for the catalogue, and a language model's token prices."""
    params = manifest.preprocessing
    if isinstance(params, SpeechPreprocessing):
        return {"min_seconds": params.min_seconds, "max_seconds": params.max_seconds}, None
    if not isinstance(params, GenerationPreprocessing):
        return None, None
    limits = {
        "context_length": params.context_length,
        "max_new_tokens": params.max_new_tokens,
        "max_prompt_chars": params.max_prompt_chars,
    }
    prices = catalog.token_prices.get(manifest.task)
    if prices is None:
        return limits, None
    return limits, api.TokenPrices(
        input_usd_per_1k=float(prices.input_usd), output_usd_per_1k=float(prices.output_usd)
    )


def model_info(container: Container, name: str) -> api.ModelInfo:
    """The catalogue entry of ``name`` (its newest version's manifest)."""
    from aimaas.plans import load_catalog

    registry = container.registry
    manifest = registry.resolve(name)
    catalog = load_catalog()
    try:
        list_price = catalog.list_price(manifest.task, manifest.name)
        price = api.Price(
            unit=list_price.unit,
            usd=float(list_price.usd),
            request_fee_usd=float(catalog.request_fee_usd),
            currency=catalog.currency,
        )
    except KeyError:
        price = None
    speech = manifest.preprocessing
    speech = speech if isinstance(speech, SpeechPreprocessing) else None
    limits, tokens = _limits(manifest, catalog)
    return api.ModelInfo(
        id=manifest.name,
        created=int(manifest.created_at.timestamp()),
        owned_by=OWNED_BY,
        name=manifest.name,
        task=manifest.task,
        description=manifest.description,
        version=manifest.version,
        versions=registry.versions(name),
        target=manifest.target,
        billing_unit=manifest.billing_unit,
        price=price,
        labels=manifest.labels,
        max_batch_size=manifest.max_batch_size,
        schema=api.ModelSchema(
            endpoint=_ENDPOINTS[manifest.task],
            inputs=[api.TensorInfo(**t.model_dump()) for t in manifest.inputs],
            outputs=[api.TensorInfo(**t.model_dump()) for t in manifest.outputs],
        ),
        licence=manifest.source.licence,
        parity=api.ParityOut(**manifest.parity.model_dump()),
        accuracy=[api.AccuracyOut(**a.model_dump()) for a in manifest.accuracy],
        languages=speech.languages if speech else None,
        limits=limits,
        token_prices=tokens,
    )


@router.get("/models", response_model=api.ModelList, summary="The model catalogue")
async def list_models(container: ContainerDep, call: IdentifiedCallDep) -> api.ModelList:
    def build() -> api.ModelList:  # lists the store: file system or S3 I/O
        names = container.registry.names()
        return api.ModelList(data=[model_info(container, name) for name in names])

    return await call.run(build)


@router.get("/models/{model}", response_model=api.ModelInfo, summary="One model")
async def get_model(
    container: ContainerDep, call: IdentifiedCallDep, model: Annotated[str, Path()]
) -> api.ModelInfo:
    return await call.run(model_info, container, model)


@dataclass(frozen=True)
class PredictOptions:
    """The query parameters of the generic predict route."""

    top_k: int
    vad: bool


Predictor = Callable[
    [Request, Container, Call, ModelManifest, PredictOptions], Awaitable[BaseModel]
]


async def _predict_text(
    request: Request, container: Container, call: Call, manifest: ModelManifest, _: PredictOptions
) -> BaseModel:
    body = await bodies.json_body(request, api.TextClassificationIn)
    return await call.run(tasks.text_classification, container, call, body, manifest)


async def _predict_embeddings(
    request: Request, container: Container, call: Call, manifest: ModelManifest, _: PredictOptions
) -> BaseModel:
    body = await bodies.json_body(request, api.EmbeddingsIn)
    return await call.run(tasks.embeddings, container, call, body, manifest)


async def _predict_images(
    request: Request,
    container: Container,
    call: Call,
    manifest: ModelManifest,
    options: PredictOptions,
) -> BaseModel:
    images = await bodies.image_inputs(request)
    return await _run_images(container, call, manifest, images, options.top_k)


async def _predict_audio(
    request: Request,
    container: Container,
    call: Call,
    manifest: ModelManifest,
    options: PredictOptions,
) -> BaseModel:
    clips = await bodies.audio_inputs(request)
    return await call.run(tasks.audio_classification, container, call, clips, options.vad, manifest)


async def _predict_vad(
    request: Request, container: Container, call: Call, manifest: ModelManifest, _: PredictOptions
) -> BaseModel:
    clips = await bodies.audio_inputs(request)
    return await call.run(tasks.voice_activity, container, call, clips, manifest)


async def _predict_detection(
    request: Request, container: Container, call: Call, manifest: ModelManifest, _: PredictOptions
) -> BaseModel:
    images = await bodies.detection_inputs(request)
    threshold, most = DEFAULT_DETECTION_THRESHOLD, MAX_DETECTIONS
    out, _png = await _detect(container, call, manifest, images, threshold, most, render=False)
    return out


#: How the generic predict route reads a body and answers, by the model's task.
PREDICTORS: dict[str, Predictor] = {
    "text-classification": _predict_text,
    "embeddings": _predict_embeddings,
    "image-classification": _predict_images,
    "object-detection": _predict_detection,
    "audio-classification": _predict_audio,
    "voice-activity-detection": _predict_vad,
}


@router.post(
    "/models/{model}/predict",
    summary="Run any model by name; the body is that of the model's task route",
    response_model=api.TextClassificationOut
    | api.EmbeddingsOut
    | api.ImageClassificationOut
    | api.ObjectDetectionOut
    | api.AudioClassificationOut
    | api.VadOut,
)
async def predict(
    request: Request,
    container: ContainerDep,
    call: CallDep,
    model: Annotated[str, Path()],
    version: Version = None,
    top_k: TopK = 5,
    vad: Vad = False,
) -> Response:
    if is_classifier_id(model):  # a tenant's own classifier, found only under its owner
        body = await bodies.json_body(request, api.TextClassificationIn)
        body = body.model_copy(update={"model": model, "version": version or body.version})
        return respond(await call.run(tasks.text_classification, container, call, body))
    manifest = container.registry.resolve(model, version)
    predictor = PREDICTORS.get(manifest.task)
    if predictor is None:
        raise errors.InvalidInput(
            f"{manifest.name} serves {manifest.task!r}: call {_ENDPOINTS[manifest.task]}."
        )
    return respond(await predictor(request, container, call, manifest, PredictOptions(top_k, vad)))


health_router = APIRouter()


@health_router.head("/health", include_in_schema=False)  # load balancers probe with HEAD
@health_router.get("/health", response_model=api.Health, summary="Liveness (no auth)")
async def health(container: ContainerDep) -> api.Health:
    return api.Health(
        version=__version__,
        stage=container.settings.stage,
        models_loaded=container.backends.cpu.runners.loaded()
        if hasattr(container.backends.cpu, "runners")
        else [],
    )
