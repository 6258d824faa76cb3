"""The FastAPI dependency that turns a request into a :class:`~aimaas.auth.Principal`.

Two ways in, chosen by configuration, not by guessing:

- ``Settings.trust_authorizer`` true (behind API Gateway): the REQUEST Lambda authorizer
  (``functions/authorizer``) has already checked the key, its status and the hard limit, and
  put ``tenant_id``, ``key_id`` and ``plan`` in ``requestContext.authorizer`` of the event
  (read by the middleware into ``request.state.gateway``). The principal is built from that context
  without a second lookup. If the authorizer flagged the tenant as over its hard limit
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

from aimaas.api.context import GatewayContext
from aimaas.auth import Principal
from aimaas.errors import QuotaExceeded

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


def _authorizer_context(request: Request) -> Mapping[str, Any] | None:
    gateway: GatewayContext | None = getattr(request.state, "gateway", None)
    if gateway is None:
        return None
    context = gateway.authorizer
    required = ("tenant_id", "key_id", "plan")
    return context if all(context.get(name) for name in required) else None


def require_principal(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """The caller of ``request`` (FastAPI dependency).

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
    container = request.app.state.container
    if container.settings.trust_authorizer:
        context = _authorizer_context(request)
        if context is not None:
            retry_after = context.get("quota_retry_after")
            if retry_after:
                raise QuotaExceeded(
                    "The monthly request limit of your plan is reached; it resets at the start "
                    "of next month (UTC).",
                    retry_after=int(retry_after),
                )
            return Principal(
                tenant_id=str(context["tenant_id"]),
                key_id=str(context["key_id"]),
                plan=str(context["plan"]),
                usage_identifier=None,
            )
    principal: Principal = container.authenticator.authenticate(dict(request.headers))
    return principal
