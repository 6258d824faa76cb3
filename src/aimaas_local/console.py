"""The browser console (``console/`` in the repository) served by the local server at
``/console``, with the security headers CloudFront adds in AWS.

The console is static files that call the public API with the customer's key; serving it
from the API's own origin locally means no CORS is needed here. The headers are the point:
a strict Content-Security-Policy (scripts and styles from this origin only, no inline script,
no ``eval``), no framing, no referrer (the console never puts a key in a URL, and this makes
sure nothing else leaks either) and no caching of the HTML.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from aimaas.console_policy import SECURITY_HEADERS as BROWSER_HEADERS
from aimaas.console_policy import content_security_policy

#: The console's folder in a checkout (the package is installed editable from ``src/``).
CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"

#: One policy for local mode and CloudFront (:mod:`aimaas.console_policy`); the API serves the
#: console here, so the console calls its own origin.
CONTENT_SECURITY_POLICY = content_security_policy("'self'")
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    **BROWSER_HEADERS,
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _WithHeaders:
    """ASGI wrapper that adds :data:`SECURITY_HEADERS` to every response of ``app``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_console(app: FastAPI, folder: Path = CONSOLE_DIR) -> bool:
    """Serve ``folder`` at ``/console`` (``/console/`` is ``index.html``).

    Parameters
    ----------
    app
        The API app (local mode only; in AWS the files are in S3 behind CloudFront).
    folder
        The console's static files.

    Returns
    -------
    bool
        Whether the console was mounted (False when ``folder`` is missing, e.g. a wheel
        installed without the repository).
    """
    if not (folder / "index.html").is_file():
        return False
    app.mount("/console", _WithHeaders(StaticFiles(directory=folder, html=True)), name="console")
    return True
