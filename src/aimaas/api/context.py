"""Per-request context: what API Gateway said (read once), the request id, the model served.

Mangum puts the Lambda event in ``scope["aws.event"]``; :class:`GatewayContext` is the only
reader of it, once per request, in :class:`aimaas.api.middleware.RequestContextMiddleware`,
which leaves the result on the request state for the request id, the stage prefix, the
authorizer's context and the choice to run work inline.

Context variables follow a request into the thread pool that runs synchronous work, so every
log line of a request, whichever thread writes it, can carry its request id and model.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
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


@dataclass(frozen=True)
class GatewayContext:
    """What API Gateway (through Mangum's event) tells the app about one request.

    Attributes
    ----------
    request_id
        API Gateway's ``requestContext.requestId``.
    stage_prefix
        ``/<stage>`` when the client called a URL that starts with the stage (an execute-api
        URL), so ``/docs`` can point at ``/<stage>/openapi.json``.
    authorizer
        ``requestContext.authorizer``: what the Lambda authorizer returned (empty without one).
    remaining_s
        What is left of the Lambda invocation's timeout (Mangum's ``aws.context``).
    """

    request_id: str | None = None
    stage_prefix: str | None = None
    authorizer: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    remaining_s: float | None = None

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> GatewayContext | None:
        """Read Mangum's event from an ASGI scope; None when the app is not behind Lambda."""
        event = scope.get("aws.event")
        if not isinstance(event, Mapping):
            return None
        context = event.get("requestContext")
        context = context if isinstance(context, Mapping) else {}
        authorizer = context.get("authorizer")
        authorizer = dict(authorizer) if isinstance(authorizer, Mapping) else {}
        remaining = getattr(scope.get("aws.context"), "get_remaining_time_in_millis", None)
        return cls(
            request_id=str(context["requestId"]) if context.get("requestId") else None,
            stage_prefix=_stage_prefix(context),
            authorizer=MappingProxyType(authorizer),
            remaining_s=remaining() / 1000.0 if callable(remaining) else None,
        )


def _stage_prefix(context: Mapping[str, Any]) -> str | None:
    stage, full_path = context.get("stage"), context.get("path")
    if not stage or not isinstance(full_path, str) or stage == "$default":
        return None
    prefix = f"/{stage}"
    return prefix if full_path.startswith(prefix + "/") else None


def resolve_request_id(headers: Mapping[str, str], gateway: GatewayContext | None) -> str:
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
    if gateway is not None and gateway.request_id:
        return gateway.request_id
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


def mark_model(state: MutableMapping[str, Any], model_id: str) -> None:
    """Record the model serving this request: for log lines and the ``X-Aimaas-Model`` header.

    Parameters
    ----------
    state
        The request's state (``scope["state"]``, shared with the middleware).
    model_id
        ``name@version``.
    """
    state["model_id"] = model_id
    model_var.set(model_id)
