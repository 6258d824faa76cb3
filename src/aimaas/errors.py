"""One error hierarchy and one JSON error shape for every failure the platform reports.

Every error a client can see is an :class:`ApiError` with an HTTP status, a stable machine
readable ``code`` and a human message. :func:`error_body` renders the single shape::

    {"error": {"code": "...", "message": "...", "request_id": "..."}}

This module depends on the standard library only (the authorizer imports it).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base class of every error that is reported to a client.

    Parameters
    ----------
    message
        A human-readable sentence that says what was wrong and, where possible, how to fix it.
        Never include secrets or request content in it.
    code
        Overrides the class's default machine-readable code.
    headers
        Extra response headers (for example ``Retry-After``).
    """

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})


class MalformedRequest(ApiError):
    """The request could not be parsed (bad JSON, invalid UTF-8, broken multipart)."""

    status = 400
    code = "malformed_request"


class Unauthorized(ApiError):
    """No API key, or a key that is not well formed."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="aimaas"'})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    """A well-formed key that is unknown, revoked, or not allowed to see the resource."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """An unknown model, model version or route."""

    status = 404
    code = "not_found"


class RequestTimeout(ApiError):
    """The client sent its request too slowly."""

    status = 408
    code = "request_timeout"


class Conflict(ApiError):
    """The request clashes with one already recorded (an ``Idempotency-Key`` reused for a
    different request)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """The body is over the configured limit (6 MB by default, the Lambda payload limit)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """A Content-Type the endpoint does not accept."""

    status = 415
    code = "unsupported_media_type"


class InvalidInput(ApiError):
    """Parsed, but not acceptable: empty text, a corrupt image, unsupported audio, bad fields."""

    status = 422
    code = "invalid_input"


class QuotaExceeded(ApiError):
    """A hard usage limit is reached; ``retry_after`` seconds until it resets."""

    status = 429
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = max(1, int(retry_after))


class BackendUnavailable(ApiError):
    """A dependency (model store, GPU endpoint, usage ledger) cannot serve right now."""

    status = 503
    code = "backend_unavailable"


class DeadlineExceeded(ApiError):
    """The request's deadline passed before it could be answered (and billed)."""

    status = 504
    code = "deadline_exceeded"


class Overloaded(BackendUnavailable):
    """The server is at capacity for this kind of work; ``retry_after`` seconds is a fair wait.

    Answered instead of queueing without bound, so a flood gets clear 503s and then full
    service again."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = max(1, int(retry_after))


def error_body(error: ApiError, request_id: str | None) -> dict[str, dict[str, str | None]]:
    """Render ``error`` in the platform's single JSON error shape.

    Parameters
    ----------
    error
        The error to render.
    request_id
        The id of the request that failed, so a customer can quote it to support.

    Returns
    -------
    dict
        ``{"error": {"code": ..., "message": ..., "request_id": ...}}``
    """
    return {"error": {"code": error.code, "message": error.message, "request_id": request_id}}
