"""The outermost ASGI layer: request id, body size limit, and the last-resort 500.

It is plain ASGI (not ``BaseHTTPMiddleware``) so that it can

- read Mangum's Lambda event once (:class:`~aimaas.api.context.GatewayContext`) and leave it
  on the request state (``gateway``) for everything after it;

- refuse an over-limit body before the application reads it: ``Content-Length`` is checked
  first, then the body is read up to the limit (a chunked or lying client is caught too);
- replay the buffered body to the application, so every route sees the same bytes;
- add ``X-Request-Id`` to every response, error or not;
- turn any unexpected exception into the platform's 500 error body with no stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimaas import errors
from aimaas.api.context import (
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    GatewayContext,
    model_var,
    request_id_var,
    resolve_request_id,
)

logger = logging.getLogger("aimaas.api")


async def send_error(send: Send, error: errors.ApiError, request_id: str | None) -> None:
    """Send ``error`` as a complete JSON response in the platform's error shape."""
    body = json.dumps(errors.error_body(error, request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if request_id:
        headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
    headers.extend((k.lower().encode(), v.encode()) for k, v in error.headers.items())
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """See the module docstring.

    Parameters
    ----------
    app
        The application to wrap.
    max_body_bytes
        Largest request body accepted (413 above it).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        gateway = GatewayContext.from_scope(scope)
        try:
            request_id = resolve_request_id(headers, gateway)
        except errors.ApiError as exc:
            # The client's key is unusable: answer under the id we would have used without it.
            await send_error(send, exc, resolve_request_id({}, gateway))
            return
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["gateway"] = gateway
        if gateway is not None and gateway.stage_prefix and not scope.get("root_path"):
            # Behind an execute-api URL the browser sees /<stage>/docs: /docs and the OpenAPI
            # "servers" must point at /<stage>/openapi.json. Routing is unaffected (the path
            # Mangum passes has no stage prefix).
            scope["root_path"] = gateway.stage_prefix
        request_token = request_id_var.set(request_id)
        model_token = model_var.set(None)
        try:
            await self._serve(scope, receive, send, headers, request_id)
        finally:
            request_id_var.reset(request_token)
            model_var.reset(model_token)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, request_id: str
    ) -> None:
        too_large = errors.PayloadTooLarge(
            f"The request body is over the limit of {self.max_body_bytes} bytes."
        )
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, too_large, request_id)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await send_error(send, too_large, request_id)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette does

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra: list[Any] = []
                if b"x-request-id" not in present:  # error responses already carry it
                    extra.append((b"x-request-id", request_id.encode()))
                # Routes record the model on the shared scope state (context variables set in a
                # worker thread do not flow back here).
                model = scope.get("state", {}).get("model_id")
                if model and MODEL_HEADER.lower().encode() not in present:
                    extra.append((MODEL_HEADER.lower().encode(), model.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:
            # Logged with its traceback for us; the client gets the plain 500 shape only.
            logger.exception("unhandled error while serving a request")
            if not started:
                await send_error(
                    send,
                    errors.ApiError("An internal error occurred; quote the request id to support."),
                    request_id,
                )
