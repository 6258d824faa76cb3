"""The browser console's security policy, in one place for every host that serves it.

The local server (:mod:`aimaas_local.console`) sends these headers itself; in AWS a CloudFront
response-headers policy (:mod:`infra.stacks.console`) sends the same ones, and the API answers
the console's cross-origin calls with the same CORS rules (the app's middleware and the
gateway's preflight). Standard library only: the CDK app imports it.
"""

from __future__ import annotations

from types import MappingProxyType

#: What the console's calls to the API use: methods, request headers, the one response header
#: it reads, and how long a browser may reuse a preflight answer.
CORS_ALLOW_METHODS: tuple[str, ...] = ("GET", "POST", "DELETE")
CORS_ALLOW_HEADERS: tuple[str, ...] = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "x-api-key",
)
CORS_EXPOSE_HEADERS: tuple[str, ...] = ("X-Request-Id",)
CORS_MAX_AGE_S = 600


def content_security_policy(connect_src: str = "'self'") -> str:
    """The console's Content-Security-Policy.

    Scripts and styles from the console's own origin only (no inline script, no ``eval``),
    no framing, no forms posting elsewhere, and network calls only to ``connect_src``.

    Parameters
    ----------
    connect_src
        Where the console may send requests: ``'self'`` where the API serves the console
        (local mode), the API's URL where the console has its own origin (CloudFront).

    Returns
    -------
    str
        The header's value.
    """
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src {connect_src}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


#: The other security headers, sent with every console file.
SECURITY_HEADERS = MappingProxyType(
    {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
        "cross-origin-opener-policy": "same-origin",
    }
)
