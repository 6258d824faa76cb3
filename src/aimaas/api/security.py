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
from aimaas.metering.limits import Admission

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


def admit(container: Container, principal: Principal, gateway: GatewayContext | None) -> Admission:
    """Admit one call within the caller's hard monthly limit (429 when it leaves no room).

    Behind the authorizer its verdict and the month counter it read are reused; the admission
    near the limit is the app's either way, since only the app knows when the call ends.
    """
    context = _authorizer_context(gateway) if container.settings.trust_authorizer else None
    used: int | None = None
    if context is not None:
        retry_after = context.get("quota_retry_after")
        if retry_after:
            raise QuotaExceeded(
                "The monthly request limit of your plan is reached; it resets at the start "
                "of next month (UTC).",
                retry_after=int(retry_after),
            )
        if str(context.get("month_calls", "")).isdigit():
            used = int(context["month_calls"])
    return container.authenticator.admit(principal, used)


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
        The tenant, key id and plan of the caller. The call's
        :class:`~aimaas.metering.limits.Admission` is left in ``request.state.admission``:
        whoever serves the call finishes it (:func:`aimaas.api.dependencies.caller`).

    Raises
    ------
    aimaas.errors.Unauthorized, aimaas.errors.Forbidden, aimaas.errors.QuotaExceeded
        As :meth:`aimaas.auth.Authenticator.authenticate` (401, 403, 429).
    """
    principal = identified(request)
    gateway = getattr(request.state, "gateway", None)
    request.state.admission = admit(request.app.state.container, principal, gateway)
    return principal
