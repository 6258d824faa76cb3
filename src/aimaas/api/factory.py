"""The application factory: one FastAPI app for the Lambda (via Mangum) and local mode."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import FastAPI

from aimaas import __version__
from aimaas.api.account import router as account_router
from aimaas.api.classifiers import router as classifiers_router
from aimaas.api.container import Container, build_container
from aimaas.api.handlers import install_error_handlers
from aimaas.api.middleware import RequestContextMiddleware
from aimaas.api.routes import ERRORS, EVENT_MODELS, health_router, router
from aimaas.api.security import identify_caller
from aimaas.api.usage import router as usage_router
from aimaas.config import Settings

DESCRIPTION = """
AI models as a service: text classification, sentence embeddings (OpenAI-compatible), image
classification and keyword spotting, served from verified ONNX models.

Authenticate with `Authorization: Bearer <key>` or `x-api-key: <key>`. Every response carries
`X-Request-Id`; send `Idempotency-Key` to make a retried call bill once. Every error has the
shape `{"error": {"code", "message", "request_id"}}`.
"""


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    settings
        Runtime settings (``Settings.from_env()`` when None and no container is given).
    container
        Pre-wired adapters (tests pass one with fakes); built from ``settings`` when None.

    Returns
    -------
    fastapi.FastAPI
        The app, with ``app.state.container`` set. Models load on first use, not here.
    """
    from fastapi_offline import FastAPIOffline

    # Imported here, not at the top: the batch modules import the API's task code, and this
    # module is imported by the aimaas.api package itself, so importing a batch module first
    # (the worker Lambda, tests) would otherwise come back to a half-initialised package.
    from aimaas.api.batches import router as batches_router
    from aimaas.batch.worker import start_batch_worker

    if container is None:
        container = build_container(settings or Settings.from_env())
    app = FastAPIOffline(
        title="aimaas",
        version=__version__,
        description=DESCRIPTION,
        # Simple clients (requests with data=json.dumps(...)) send JSON with no Content-Type.
        # Routes that take JSON refuse any *other* type with 415; keys are sent in headers a
        # browser cannot forge cross-site, so the CSRF concern behind strictness does not apply.
        strict_content_type=False,
        static_url="/docs-static",
    )
    app.state.container = container
    start_batch_worker(container)  # local mode: the worker threads of the Batch API
    install_error_handlers(app)
    settings = container.settings
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        identify=partial(identify_caller, container),
        body_timeout_s=settings.body_timeout_s,
        max_uploads=settings.max_uploads,
        deadline_s=settings.request_deadline_s,
    )
    console_origin = settings.extra.get("AIMAAS_CONSOLE_ORIGIN")
    if console_origin:
        # The console served from its own origin (CloudFront) calls the API from the browser:
        # only that origin may, with the key in a header and never a cookie. Added last, so it
        # is the outermost layer and answers a preflight before anything asks for a key.
        from fastapi.middleware.cors import CORSMiddleware

        from aimaas.console_policy import (
            CORS_ALLOW_HEADERS,
            CORS_ALLOW_METHODS,
            CORS_EXPOSE_HEADERS,
            CORS_MAX_AGE_S,
        )

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[console_origin],
            allow_methods=list(CORS_ALLOW_METHODS),
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            allow_credentials=False,
            max_age=CORS_MAX_AGE_S,
        )
    app.include_router(health_router)
    app.include_router(router)
    app.include_router(usage_router)
    app.include_router(account_router, responses=ERRORS)
    app.include_router(classifiers_router, responses=ERRORS)
    app.include_router(batches_router, responses=ERRORS)
    _document_event_models(app)
    return app


def _document_event_models(app: FastAPI) -> None:
    """Add the models of streamed events to the OpenAPI components: routes name them only in
    their ``text/event-stream`` answers, which FastAPI does not read models from."""
    from pydantic.json_schema import models_json_schema

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _, extra = models_json_schema(
                [(model, "serialization") for model in EVENT_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, body in extra.get("$defs", {}).items():
                schemas.setdefault(name, body)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
