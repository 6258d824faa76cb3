"""The FastAPI dependencies every route shares: the container, the caller, the call.

Security is a dependency, as FastAPI intends: :func:`caller` runs
:func:`aimaas.api.security.require_principal` (inline under Lambda, in the thread pool under
uvicorn, since a key lookup may block on I/O) and :func:`current_call` turns the request into
the :class:`~aimaas.api.calls.Call` that task functions take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from aimaas.api.calls import Call, run_blocking, was_billed
from aimaas.api.container import Container
from aimaas.api.security import (
    api_key_scheme,
    bearer_scheme,
    require_identity,
    require_principal,
)
from aimaas.auth import Principal
from aimaas.metering.limits import Admission


async def get_container(request: Request) -> Container:
    """The app's :class:`~aimaas.api.container.Container`.

    Async so FastAPI calls it in the event loop: a sync dependency goes through the thread pool,
    and under Lambda, where Mangum runs every invocation on a fresh event loop, that started a
    new worker thread on every request (about 0.4 ms of the handler's overhead).
    """
    return request.app.state.container


def runs_inline(request: Request) -> bool:
    """Whether this process serves one request at a time (behind Lambda: the middleware found
    Mangum's event)."""
    return getattr(request.state, "gateway", None) is not None


async def _checked(request: Request, check: Callable[[Request], Principal]) -> Principal:
    return await run_blocking(runs_inline(request), check, request)


async def caller(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> AsyncIterator[Principal]:
    """The authenticated caller within its plan's limits (401/403/429 otherwise); the two
    schemes document the headers in OpenAPI.

    The call holds a hard-limit admission while it is served; when it ends, a call that made
    no new usage record (an error, a replay) gives its slot back.
    """
    principal = await _checked(request, require_principal)
    admission: Admission = request.state.admission
    try:
        yield principal
    finally:
        billed = was_billed(request.scope.get("state", {}))
        await run_blocking(runs_inline(request), admission.finish, billed)


async def identity(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """The authenticated caller, even at its usage limit (401/403 otherwise)."""
    return await _checked(request, require_identity)


def _call(request: Request, principal: Principal) -> Call:
    return Call(
        request_id=request.state.request_id,
        principal=principal,
        inline=runs_inline(request),
        state=request.scope.setdefault("state", {}),
    )


async def current_call(request: Request, principal: Annotated[Principal, Depends(caller)]) -> Call:
    """The :class:`~aimaas.api.calls.Call` of a billable request."""
    return _call(request, principal)


async def identified_call(
    request: Request, principal: Annotated[Principal, Depends(identity)]
) -> Call:
    """The :class:`~aimaas.api.calls.Call` of a request that is answered at the usage limit."""
    return _call(request, principal)


ContainerDep = Annotated[Container, Depends(get_container)]
CallDep = Annotated[Call, Depends(current_call)]
#: For routes a tenant at its hard limit must still reach (its usage, the catalogue).
IdentifiedCallDep = Annotated[Call, Depends(identified_call)]
