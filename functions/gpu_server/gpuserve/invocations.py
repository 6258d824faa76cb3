"""The GPU server's ASGI application: SageMaker's ``GET /ping`` and ``POST /invocations``.

``/invocations`` takes one request of the platform's wire format
(:mod:`aimaas.inference.wire`) and answers its result. The model (``name/version``,
``name@version`` or ``name``) is named by, in this order: the ``X-Amzn-SageMaker-Target-Model``
header (the HTTP backend; a multi-model endpoint), ``model=<id>`` in the
``X-Amzn-SageMaker-Custom-Attributes`` header (``invoke_endpoint(CustomAttributes=...)``: how a
single-model endpoint, which refuses ``TargetModel``, passes it), or a ``"model"`` body field.

Concurrent requests for one model are batched (see :mod:`.models`). Errors use the platform's
single shape (:func:`aimaas.errors.error_body`): 400 unreadable JSON, 404 unknown model, 413 too
large, 415 not JSON, 422 invalid input, 503 overloaded or unable to serve.

``GET /metrics`` returns per-model batching and latency statistics as JSON; the same numbers
are logged every ``AIMAAS_GPU_METRICS_S`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aimaas import errors
from aimaas.inference.wire import (
    REQUEST_ADAPTER,
    RESULT_ADAPTER,
    TARGET_MODEL_HEADER,
    batch_size,
)
from aimaas.registry import ModelRegistry
from aimaas.wiring import build_model_store

from .engine import build_target
from .generation import (
    STREAM_MEDIA_TYPE,
    GenerationWorker,
    chunk_line,
    error_line,
    max_generations,
    wants_stream,
)
from .models import ModelPool
from .settings import ServerSettings

logger = logging.getLogger("gpuserve")

REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-sagemaker-inference-id", "idempotency-key")
# A single-model SageMaker endpoint refuses the TargetModel header ("not a multi-model
# endpoint"); there the caller names the model in CustomAttributes, which SageMaker forwards.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
JSON_TYPES = ("application/json", "application/x-json", "text/json")


def parse_target_model(value: str) -> tuple[str, str | None]:
    """Split ``name/version``, ``name@version`` or ``name`` into name and optional version."""
    value = value.strip().removesuffix(".tar.gz")
    for separator in ("/", "@"):
        if separator in value:
            name, _, version = value.partition(separator)
            return name, version or None
    return value, None


def custom_attribute(value: str, key: str) -> str | None:
    """``key``'s value in SageMaker custom attributes (``"model=a/1.0.0; trace=x"``)."""
    for part in value.replace(";", ",").split(","):
        name, sep, found = part.partition("=")
        if sep and name.strip() == key and found.strip():
            return found.strip()
    return None


def _request_id(request: Request) -> str:
    for header in REQUEST_ID_HEADERS:
        value = request.headers.get(header)
        if value and len(value) <= 128 and value.isprintable():
            return value
    return str(uuid.uuid4())


def _error_response(error: errors.ApiError, request: Request) -> JSONResponse:
    request_id = _request_id(request)
    headers = {**error.headers, "X-Request-Id": request_id}
    return JSONResponse(errors.error_body(error, request_id), error.status, headers=headers)


_HTTP_CODES: Mapping[int, str] = {404: "not_found", 405: "method_not_allowed"}


class _HttpError(errors.ApiError):
    """Starlette's own 404/405/... in the platform's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, code=_HTTP_CODES.get(status, "http_error"))
        self.status = status


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for item in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg", ""))
    return "Invalid request: " + "; ".join(parts)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Build the GPU server application.

    Parameters
    ----------
    settings
        Server settings (``ServerSettings.from_env()`` by default).

    Returns
    -------
    FastAPI
        The app; models listed in ``settings.preload`` load during its start-up.
    """
    settings = settings or ServerSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(build_model_store(settings.core))
        target = build_target(settings.target, settings.engine)
        pool = ModelPool(
            registry, target, settings.batching, max_generations(settings.environ, 0) or None
        )
        app.state.pool = pool
        # Listed once: SageMaker pings every few seconds and an S3 store would list a bucket.
        app.state.healthy = bool(registry.names())
        if not app.state.healthy:
            logger.error("no models in %s: /ping answers 503", settings.core.registry_path)
        logger.info(
            "gpu server starting %s",
            json.dumps({"target": target.name, "registry": str(settings.core.registry_path)}),
        )
        await _preload(app, pool, settings)
        reporter = asyncio.create_task(_report(pool, settings.metrics_interval_s))
        try:
            yield
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            await pool.aclose()

    app = FastAPI(
        title="aimaas GPU server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(errors.ApiError)
    async def api_error(request: Request, exc: errors.ApiError) -> JSONResponse:
        return _error_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(_HttpError(exc.status_code, str(exc.detail)), request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return _error_response(errors.ApiError("Internal error."), request)

    @app.get("/ping")
    async def ping(request: Request) -> JSONResponse:
        pool: ModelPool = request.app.state.pool
        healthy = bool(request.app.state.healthy)
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "target": pool.target.name,
            "models": sorted(pool.loaded()),
        }
        return JSONResponse(body, 200 if healthy else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> JSONResponse:
        pool: ModelPool = request.app.state.pool
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return JSONResponse(
            {
                "target": pool.target.name,
                # CPU seconds of this process: what a request costs, whatever else runs here.
                "process": {"pid": os.getpid(), "cpu_s": usage.ru_utime + usage.ru_stime},
                "models": {k: w.describe() for k, w in sorted(pool.loaded().items())},
            }
        )

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        pool: ModelPool = request.app.state.pool
        payload = await _read_json(request, settings.core.max_body_bytes)
        body_model = payload.pop("model", None)
        stream_flag = payload.pop("stream", None)
        header = request.headers.get(TARGET_MODEL_HEADER) or custom_attribute(
            request.headers.get(CUSTOM_ATTRIBUTES_HEADER, ""), "model"
        )
        if header:
            name, version = parse_target_model(header)
        elif isinstance(body_model, str) and body_model:
            name, version = parse_target_model(body_model)
        else:
            raise errors.InvalidInput(
                f"Name the model in the {TARGET_MODEL_HEADER} header or a 'model' field."
            )
        manifest = pool.resolve(name, version)
        try:
            inference = REQUEST_ADAPTER.validate_python(payload)
        except ValidationError as exc:
            raise errors.InvalidInput(_validation_message(exc)) from None
        if inference.task != manifest.task:
            raise errors.InvalidInput(
                f"Model {manifest.name!r} serves {manifest.task!r}, not {inference.task!r}."
            )
        if batch_size(inference) > manifest.max_batch_size:
            raise errors.InvalidInput(
                f"At most {manifest.max_batch_size} inputs per request for {manifest.name!r}."
            )
        worker = await pool.worker(manifest)
        if isinstance(worker, GenerationWorker) and wants_stream(
            request.headers.get("accept", ""), stream_flag
        ):
            # Errors before the first piece (422, 503) are still ordinary answers.
            pieces = await worker.stream(inference)
            return StreamingResponse(
                _stream_lines(pieces, _request_id(request)),
                media_type=STREAM_MEDIA_TYPE,
                headers={"X-Request-Id": _request_id(request), "Cache-Control": "no-store"},
            )
        result = await worker.infer(inference)
        # Set here, not by a middleware: Starlette's HTTP middleware costs about a millisecond
        # per request, which at GPU rates is more than the model.
        return Response(
            RESULT_ADAPTER.dump_json(result),
            media_type="application/json",
            headers={"X-Request-Id": _request_id(request)},
        )

    return app


async def _stream_lines(pieces: AsyncIterator[Any], request_id: str) -> AsyncIterator[bytes]:
    """JSON Lines of a generation; a failure mid-stream ends it with an error record (the 200
    status line is already sent), and the caller bills only what the chunks counted."""
    try:
        async for piece in pieces:
            yield chunk_line(piece)
    except errors.ApiError as exc:
        yield error_line(exc, request_id)
    except Exception:
        logger.exception("generation failed mid-stream")
        yield error_line(errors.ApiError("Internal error."), request_id)
    finally:
        # Shielded: when the client goes away this task is being cancelled, and the close
        # (which frees the generation's slot) must still run.
        with anyio.CancelScope(shield=True):
            await pieces.aclose()  # type: ignore[attr-defined]


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    if content_type.strip().lower() not in JSON_TYPES:
        raise errors.UnsupportedMediaType("Send the request as application/json.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(f"The body is over {limit} bytes.")
    # Count while streaming: a chunked body has no Content-Length to trust.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"The body is over {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.MalformedRequest("The body is not valid UTF-8 JSON.") from None
    if not isinstance(payload, dict):
        raise errors.InvalidInput("The body must be a JSON object.")
    return payload


async def _preload(app: FastAPI, pool: ModelPool, settings: ServerSettings) -> None:
    names = list(settings.preload)
    if names == ["all"]:
        names = pool.registry.names()
    for name in names:
        try:
            await pool.worker(pool.resolve(*parse_target_model(name)))
        except Exception:
            # Serve what did load, but say unhealthy so SageMaker does not route to us.
            logger.exception("preloading %s failed", name)
            app.state.healthy = False


async def _report(pool: ModelPool, interval_s: float) -> None:
    if interval_s <= 0:
        return
    seen: dict[str, int] = {}
    while True:
        await asyncio.sleep(interval_s)
        for model_id, worker in sorted(pool.loaded().items()):
            count = worker.stats.requests + worker.stats.errors
            if seen.get(model_id) != count:
                seen[model_id] = count
                logger.info("metrics %s", json.dumps(worker.describe()))
