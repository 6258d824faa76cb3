"""The HTTP routes: task endpoints, the model catalogue, the generic predict, health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from aimaas import __version__
from aimaas.api import bodies, tasks
from aimaas.api import schemas as api
from aimaas.api.security import api_key_scheme, bearer_scheme, require_principal
from aimaas.api.service import container_of, run_blocking
from aimaas.auth import Principal
from aimaas.manifest import ModelManifest

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


async def caller(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """``require_principal`` run inline under Lambda and in the thread pool under uvicorn.

    A key lookup may block on I/O; where only one request is in flight (see
    :func:`aimaas.api.service.run_blocking`) a thread hop would only add latency.
    """
    # Honour overrides of require_principal (tests replace it), as FastAPI would.
    check = request.app.dependency_overrides.get(require_principal, require_principal)
    if check is require_principal:
        return await run_blocking(request, require_principal, request)
    return await run_blocking(request, check)


Caller = Annotated[Principal, Depends(caller)]
ModelName = Annotated[str | None, Query(description="Model name (default: the stage's).")]
Version = Annotated[str | None, Query(description="Model version (default: newest).")]
TopK = Annotated[int, Query(ge=1, le=20, description="How many labels to return.")]
Vad = Annotated[bool, Query(description="Also return speech segments from the silero-vad model.")]

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
    body: api.TextClassificationIn, request: Request, principal: Caller
) -> Response:
    return respond(await run_blocking(request, tasks.text_classification, request, principal, body))


@router.post(
    "/embeddings",
    response_model=api.EmbeddingsOut,
    dependencies=[Depends(bodies.require_json)],
    summary="Sentence embeddings (OpenAI-compatible)",
)
async def create_embeddings(
    body: api.EmbeddingsIn, request: Request, principal: Caller
) -> Response:
    return respond(await run_blocking(request, tasks.embeddings, request, principal, body))


async def _images(request: Request) -> tuple[list[bytes], int | None]:
    files = await bodies.read_files(request, bodies.IMAGE_TYPES, "image")
    if files is not None:
        return files, None
    parsed = bodies.parse_json(await request.body(), api.ImageJsonIn)
    return tasks.image_files_from_json(parsed), parsed.top_k


async def _clips(request: Request) -> list[bytes]:
    files = await bodies.read_files(request, bodies.AUDIO_TYPES, "audio")
    if files is not None:
        return files
    return tasks.audio_files_from_json(bodies.parse_json(await request.body(), api.AudioJsonIn))


@router.post(
    "/image-classification",
    response_model=api.ImageClassificationOut,
    summary="Classify images (ImageNet labels)",
    openapi_extra=bodies.binary_body_openapi(bodies.IMAGE_TYPES, api.ImageJsonIn),
)
async def classify_image(
    request: Request,
    principal: Caller,
    top_k: TopK = 5,
    model: ModelName = None,
    version: Version = None,
) -> Response:
    images, json_top_k = await _images(request)
    manifest = tasks.resolve(request, "image-classification", model, version)
    result = await run_blocking(
        request,
        tasks.image_classification,
        request,
        principal,
        images,
        json_top_k or top_k,
        manifest,
    )
    return respond(result)


@router.post(
    "/audio-classification",
    response_model=api.AudioClassificationOut,
    summary="Spot keywords in WAV audio (any rate, mono or stereo)",
    openapi_extra=bodies.binary_body_openapi(bodies.AUDIO_TYPES, api.AudioJsonIn),
)
async def classify_audio(
    request: Request,
    principal: Caller,
    vad: Vad = False,
    model: ModelName = None,
    version: Version = None,
) -> Response:
    clips = await _clips(request)
    manifest = tasks.resolve(request, "audio-classification", model, version)
    result = await run_blocking(
        request, tasks.audio_classification, request, principal, clips, vad, manifest
    )
    return respond(result)


# ---- catalogue and generic predict ------------------------------------------------------------

_ENDPOINTS = {
    "embeddings": "/v1/embeddings",
    "text-classification": "/v1/text-classification",
    "image-classification": "/v1/image-classification",
    "audio-classification": "/v1/audio-classification",
    "voice-activity-detection": "/v1/models/{model}/predict",
}


def model_info(request: Request, name: str) -> api.ModelInfo:
    """The catalogue entry of ``name`` (its newest version's manifest)."""
    from aimaas.plans import load_catalog

    registry = container_of(request).registry
    manifest = registry.resolve(name)
    catalog = load_catalog()
    try:
        list_price = catalog.list_price(manifest.task, manifest.name)
        price = api.Price(
            unit=list_price.unit, usd=float(list_price.usd), currency=catalog.currency
        )
    except KeyError:
        price = None
    return api.ModelInfo(
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
        accuracy=[a.model_dump() for a in manifest.accuracy],
    )


@router.get("/models", response_model=api.ModelList, summary="The model catalogue")
async def list_models(request: Request, principal: Caller) -> api.ModelList:
    registry = container_of(request).registry

    def build() -> api.ModelList:  # lists the store: file system or S3 I/O
        return api.ModelList(data=[model_info(request, name) for name in registry.names()])

    return await run_blocking(request, build)


@router.get("/models/{model}", response_model=api.ModelInfo, summary="One model")
async def get_model(
    request: Request, principal: Caller, model: Annotated[str, Path()]
) -> api.ModelInfo:
    return await run_blocking(request, model_info, request, model)


async def _predict(
    request: Request, principal: Any, manifest: ModelManifest, top_k: int, vad: bool
) -> Any:
    task = manifest.task
    if task in ("text-classification", "embeddings"):
        bodies.check_json(request)
        raw = await request.body()
        if task == "text-classification":
            text_in = bodies.parse_json(raw, api.TextClassificationIn)
            return await run_blocking(
                request, tasks.text_classification, request, principal, text_in, manifest
            )
        emb_in = bodies.parse_json(raw, api.EmbeddingsIn)
        return await run_blocking(request, tasks.embeddings, request, principal, emb_in, manifest)
    if task == "image-classification":
        images, json_top_k = await _images(request)
        return await run_blocking(
            request,
            tasks.image_classification,
            request,
            principal,
            images,
            json_top_k or top_k,
            manifest,
        )
    clips = await _clips(request)
    if task == "audio-classification":
        return await run_blocking(
            request, tasks.audio_classification, request, principal, clips, vad, manifest
        )
    return await run_blocking(request, tasks.voice_activity, request, principal, clips, manifest)


@router.post(
    "/models/{model}/predict",
    summary="Run any model by name; the body is that of the model's task route",
    response_model=api.TextClassificationOut
    | api.EmbeddingsOut
    | api.ImageClassificationOut
    | api.AudioClassificationOut
    | api.VadOut,
)
async def predict(
    request: Request,
    principal: Caller,
    model: Annotated[str, Path()],
    version: Version = None,
    top_k: TopK = 5,
    vad: Vad = False,
) -> Response:
    manifest = container_of(request).registry.resolve(model, version)
    return respond(await _predict(request, principal, manifest, top_k, vad))


health_router = APIRouter()


@health_router.get("/health", response_model=api.Health, summary="Liveness (no auth)")
async def health(request: Request) -> api.Health:
    container = container_of(request)
    return api.Health(
        version=__version__,
        stage=container.settings.stage,
        models_loaded=container.backends.cpu.runners.loaded()
        if hasattr(container.backends.cpu, "runners")
        else [],
    )
