"""Exception handlers: every failure leaves the API in the one shape of ``aimaas.errors``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aimaas import errors
from aimaas.api.context import REQUEST_ID_HEADER

_HTTP_ERRORS: dict[int, type[errors.ApiError]] = {
    400: errors.MalformedRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.InvalidInput,
    503: errors.BackendUnavailable,
}
_MESSAGES = {
    400: "The request body could not be parsed.",
    404: "No such route; see /docs for the API.",
    405: "This method is not allowed on this route.",
}


def error_response(request: Request, error: errors.ApiError) -> JSONResponse:
    """The JSON response of ``error`` for ``request``."""
    request_id = getattr(request.state, "request_id", None)
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(errors.error_body(error, request_id), error.status, headers=headers)


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def summarize_validation(details: Sequence[Mapping[str, Any]], limit: int = 5) -> str:
    """A short, client-facing summary of Pydantic/FastAPI validation errors.

    Locations keep only field names and list indexes (Pydantic adds union branch labels such
    as ``list[constrained-str]``), ``body`` is dropped, and repeated lines are merged.
    """
    lines: list[str] = []
    for detail in details:
        parts = [
            str(p)
            for p in detail.get("loc", ())
            if p != "body" and (isinstance(p, int) or _FIELD.match(str(p)))
        ]
        message = str(detail.get("msg", "invalid"))
        line = f"{'.'.join(parts)}: {message}" if parts else message
        if line not in lines:
            lines.append(line)
    summary = "; ".join(lines[:limit])
    if len(lines) > limit:
        summary += f"; and {len(lines) - limit} more"
    return f"Invalid request: {summary}"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ApiError)
    return error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = list(exc.errors())
    if any(d.get("type") == "json_invalid" for d in details):
        return error_response(request, errors.MalformedRequest("The body is not valid JSON."))
    return error_response(request, errors.InvalidInput(summarize_validation(details)))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    cls = _HTTP_ERRORS.get(status)
    message = _MESSAGES.get(status) or str(exc.detail)
    if cls is None:
        error = errors.ApiError(message, code="method_not_allowed" if status == 405 else "error")
        error.status = status
    else:
        error = cls(message)
    error.headers.update(exc.headers or {})
    return error_response(request, error)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers of :class:`aimaas.errors.ApiError`, validation and HTTP errors.

    Unexpected exceptions are turned into a 500 by
    :class:`aimaas.api.middleware.RequestContextMiddleware`.
    """
    app.add_exception_handler(errors.ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
