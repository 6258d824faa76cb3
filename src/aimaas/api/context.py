"""Per-request context (request id, model) for log lines, carried in context variables.

Context variables follow a request into the thread pool that runs synchronous work, so every
log line of a request, whichever thread writes it, can carry its request id and model.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from aimaas import errors

REQUEST_ID_HEADER = "X-Request-Id"
IDEMPOTENCY_HEADER = "idempotency-key"
MODEL_HEADER = "X-Aimaas-Model"

request_id_var: ContextVar[str | None] = ContextVar("aimaas_request_id", default=None)
model_var: ContextVar[str | None] = ContextVar("aimaas_model", default=None)

# Printable ASCII: the key ends up in logs, headers and ledger keys ('#' is the ledger's key
# separator, so it is refused).
_IDEMPOTENCY_KEY = re.compile(r"^[ -\"$-~]{1,128}$")


def resolve_request_id(headers: Mapping[str, str], scope: Mapping[str, Any]) -> str:
    """The id of a request: ``Idempotency-Key``, else API Gateway's request id, else a uuid4.

    Raises
    ------
    aimaas.errors.MalformedRequest
        An ``Idempotency-Key`` that is empty, longer than 128 characters or not printable.
    """
    key = headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        if not _IDEMPOTENCY_KEY.match(key):
            raise errors.MalformedRequest(
                "Idempotency-Key must be 1 to 128 printable ASCII characters, without '#'."
            )
        return key
    event = scope.get("aws.event")
    if isinstance(event, Mapping):
        context = event.get("requestContext")
        if isinstance(context, Mapping) and context.get("requestId"):
            return str(context["requestId"])
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return request_id_var.get()


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``model`` to every log record written while serving a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        model = model_var.get()
        if model is not None and not hasattr(record, "model"):
            record.model = model
        return True


def mark_model(state: Any, model_id: str) -> None:
    """Record the model serving this request: for log lines and the ``X-Aimaas-Model`` header.

    Parameters
    ----------
    state
        ``request.state`` (shared with the middleware through the ASGI scope).
    model_id
        ``name@version``.
    """
    state.model_id = model_id
    model_var.set(model_id)
