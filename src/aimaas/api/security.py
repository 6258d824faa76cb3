"""The FastAPI dependencies that turn a request into a :class:`~aimaas.auth.Principal`.

Identity and limits are two steps. :func:`identify_caller` (401/403) runs in the middleware
before any body is read, so an unauthenticated client cannot make the server buffer an upload;
:func:`require_principal` then enforces the plan's hard limit (429) for billable routes, while
:func:`require_identity` serves routes a tenant at its limit must still reach (its usage, the
catalogue).

Two ways to identify, chosen by configuration, not by guessing:

- ``Settings.trust_authorizer`` true (behind API Gateway): the REQUEST Lambda authorizer
  (``functions/authorizer``) has already checked the key, its status and the hard limit, and
  put ``tenant_id``, ``key_id`` and ``plan`` in ``requestContext.authorizer`` of the event
  (read by the middleware into ``request.state.gateway``). The principal is built from that
  context without a second lookup. If the authorizer flagged the tenant as over its hard limit
  (``quota_retry_after``), the call is refused here with 429.
- Otherwise (local mode, or no authorizer context): ``container.authenticator`` checks the
  ``x-api-key`` / ``Authorization: Bearer`` headers.

The two security schemes are declared so the OpenAPI document and ``/docs`` show them; the
function reads the headers itself so it can also be called directly with only a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from aimaas.api.container import Container
from aimaas.api.context import GatewayContext
from aimaas.auth import Principal
from aimaas.errors import QuotaExceeded, Unauthorized

api_key_scheme = APIKeyHeader(
    name="x-api-key",
    scheme_name="ApiKey",
    description="An aimaas API key (`amk_...`).",
    auto_error=False,
)
bearer_scheme = HTTPBearer(
    scheme_name="Bearer",
    description="The same API key as a Bearer token: `Authorization: Bearer amk_...`.",
    auto_error=False,
)


def _authorizer_context(gateway: GatewayContext | None) -> Mapping[str, Any] | None:
    if gateway is None:
        return None
    context = gateway.authorizer
    required = ("tenant_id", "key_id", "plan")
    return context if all(context.get(name) for name in required) else None


def _refuse_repeated_credentials(headers: Headers) -> None:
    for name in ("x-api-key", "authorization"):
        if len(headers.getlist(name)) > 1:
            raise Unauthorized(f"The {name} header was sent more than once; send one key.")


def identify_caller(
    container: Container, headers: Headers, gateway: GatewayContext | None
) -> Principal:
    """Who is calling (401/403), without checking usage limits.

    Behind a trusted authorizer the principal comes from its context without a lookup;
    otherwise the authenticator checks the ``x-api-key`` / ``Authorization: Bearer`` headers.
    The middleware calls this before it reads a body, so a caller without a valid key never
    gets to upload one.
    """
    if container.settings.trust_authorizer:
        context = _authorizer_context(gateway)
        if context is not None:
            return Principal(
                tenant_id=str(context["tenant_id"]),
                key_id=str(context["key_id"]),
                plan=str(context["plan"]),
                usage_identifier=None,
            )
    _refuse_repeated_credentials(headers)
    return container.authenticator.identify(dict(headers))


def enforce_limits(
    container: Container, principal: Principal, gateway: GatewayContext | None
) -> None:
    """Refuse (429) a caller whose hard monthly limit is reached."""
    context = _authorizer_context(gateway) if container.settings.trust_authorizer else None
    if context is None:
        container.authenticator.enforce_limits(principal)
        return
    retry_after = context.get("quota_retry_after")
    if retry_after:
        raise QuotaExceeded(
            "The monthly request limit of your plan is reached; it resets at the start "
            "of next month (UTC).",
            retry_after=int(retry_after),
        )


def identified(request: Request) -> Principal:
    """The caller of ``request``, identified by the middleware (or now, if it did not)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        gateway = getattr(request.state, "gateway", None)
        principal = identify_caller(request.app.state.container, request.headers, gateway)
        request.state.principal = principal
    return principal


def require_identity(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """The caller, whatever its usage (for routes that must answer at the limit: usage)."""
    return identified(request)


def require_principal(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """The caller of ``request``, within its plan's limits (FastAPI dependency).

    Parameters
    ----------
    request
        The incoming request; ``request.app.state.container`` supplies settings and the
        authenticator.

    Returns
    -------
    Principal
        The tenant, key id and plan of the caller.

    Raises
    ------
    aimaas.errors.Unauthorized, aimaas.errors.Forbidden, aimaas.errors.QuotaExceeded
        As :meth:`aimaas.auth.Authenticator.authenticate` (401, 403, 429).
    """
    principal = identified(request)
    enforce_limits(request.app.state.container, principal, getattr(request.state, "gateway", None))
    return principal
