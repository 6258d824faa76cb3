"""The local server's HTTP/1.1 protocol: uvicorn's h11 protocol with two guards it lacks.

- **A deadline for request headers.** Uvicorn waits for a request's headers without limit, so
  a client that sends half a header line holds its connection forever (a slow-loris). Here a
  connection waiting for headers is closed after ``header_timeout_s``; once the headers are in,
  the app's own body timeout (``AIMAAS_BODY_TIMEOUT_S``) takes over.
- **The platform's error shape for unparseable requests.** A request h11 cannot parse (a
  malformed ``Content-Length``, a broken request line) never reaches the app; uvicorn answers
  it in plain text. Here it gets the same JSON error body as every other failure.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aimaas.errors import MalformedRequest, error_body

#: Seconds a connection may take to send a request's headers (``AIMAAS_HEADER_TIMEOUT_S``).
HEADER_TIMEOUT_S = float(os.environ.get("AIMAAS_HEADER_TIMEOUT_S") or 10.0)


class GuardedH11Protocol(H11Protocol):
    """See the module docstring (pass as ``uvicorn.run(..., http=GuardedH11Protocol)``)."""

    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def _watch_headers(self) -> None:
        # h11's "their" side is IDLE until a request's headers are complete.
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)
        elif not waiting:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request headers")
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        error = MalformedRequest("The HTTP request could not be parsed (headers or framing).")
        body = json.dumps(error_body(error, None)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
