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

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimaas import deadline, errors
from aimaas.api.calls import run_blocking
from aimaas.api.context import (
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    GatewayContext,
    model_var,
    request_id_var,
    resolve_request_id,
)

logger = logging.getLogger("aimaas.api")
#: Every route under this prefix needs a key; the rest (health, docs) is open.
PROTECTED_PREFIX = "/v1/"


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


#: Identifies the caller from the headers before the body is read (raises 401/403).
Identify = Callable[[Headers, GatewayContext | None], Any]


class RequestContextMiddleware:
    """See the module docstring.

    Parameters
    ----------
    app
        The application to wrap.
    max_body_bytes
        Largest request body accepted (413 above it).
    identify
        Who is calling, from the headers (:func:`aimaas.api.security.identify_caller`): run
        for every ``/v1/`` request before its body is read, so a caller without a valid key is
        answered 401/403 at once and never makes the server buffer an upload. The principal
        is left on the request state for the route.
    body_timeout_s
        Longest wait for the next piece of a body, and for the whole body four times that
        (408 after it): a slow upload cannot hold its buffer indefinitely.
    max_uploads
        Bodies being received at once; one more is answered 503 with Retry-After.
    deadline_s
        The request deadline (:mod:`aimaas.deadline`; under Lambda never later than the
        invocation's remaining time less a second); 0 for none.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        identify: Identify | None = None,
        body_timeout_s: float = 15.0,
        max_uploads: int = 64,
        deadline_s: float = 0.0,
    ) -> None:
        self.app = app
        self.deadline_s = deadline_s
        self.max_body_bytes = max_body_bytes
        self.identify = identify
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self._uploads = 0

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
        deadline_token = deadline.start(self._deadline_s(gateway))
        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                # Header-only and free: the same answer (413) whoever is calling.
                await send_error(send, self._too_large(), request_id)
                return
            if self.identify is not None and scope["path"].startswith(PROTECTED_PREFIX):
                try:
                    state["principal"] = await run_blocking(
                        gateway is not None, self.identify, headers, gateway
                    )
                except errors.ApiError as exc:
                    await send_error(send, exc, request_id)
                    return
            await self._serve(scope, receive, send, headers, request_id, gateway is None)
        finally:
            deadline.reset(deadline_token)
            request_id_var.reset(request_token)
            model_var.reset(model_token)

    def _too_large(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"The request body is over the limit of {self.max_body_bytes} bytes."
        )

    def _deadline_s(self, gateway: GatewayContext | None) -> float | None:
        limits = [s for s in (self.deadline_s or None,) if s]
        if gateway is not None and gateway.remaining_s is not None:
            limits.append(gateway.remaining_s - 1.0)  # a second to hand the answer back
        return min(limits) if limits else None

    async def _read_body(self, receive: Receive, streamed: bool) -> bytearray | None:
        """The whole body, or None when the client disconnects. ``streamed``: the body comes
        from a socket and may be slow (under Lambda the event holds all of it: no timers).

        Raises
        ------
        aimaas.errors.PayloadTooLarge
            Over ``max_body_bytes`` (a chunked or lying client is caught here).
        aimaas.errors.RequestTimeout
            A piece took longer than ``body_timeout_s``, or the body longer than four times it.
        """
        body, more = bytearray(), True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * self.body_timeout_s
        while more:
            wait = min(self.body_timeout_s, deadline - loop.time())
            try:
                message = await (
                    asyncio.wait_for(receive(), timeout=max(wait, 0.0)) if streamed else receive()
                )
            except TimeoutError:
                raise errors.RequestTimeout(
                    "The request body arrived too slowly; send it in one go."
                ) from None
            if message["type"] == "http.disconnect":
                return None
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                raise self._too_large()
        return body

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        request_id: str,
        streamed: bool,
    ) -> None:
        declared = headers.get("content-length")
        expects_body = (declared not in (None, "0")) or "transfer-encoding" in headers
        if expects_body and self._uploads >= self.max_uploads:
            await send_error(
                send, errors.Overloaded("Too many uploads are in progress; retry shortly."),
                request_id,
            )  # fmt: skip
            return
        self._uploads += expects_body
        try:
            body = await self._read_body(receive, streamed)
        except errors.ApiError as exc:
            await send_error(send, exc, request_id)
            return
        finally:
            self._uploads -= expects_body
        if body is None:  # the client went away
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
