"""One API call as task functions see it: who calls, under which id, and how to run its work.

Routes build a :class:`Call` from the request (a FastAPI dependency,
:func:`aimaas.api.dependencies.current_call`); task functions take ``(container, call, ...)``
and never see the Starlette request, so the batch worker, tests and other entry points can call
them the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from aimaas.api.context import mark_model
from aimaas.auth import Principal

T = TypeVar("T")

_BILLED = "billed"


def was_billed(state: Mapping[str, Any]) -> bool:
    """Whether the call of the request state ``state`` made a new usage record."""
    return bool(state.get(_BILLED))


@dataclass
class Call:
    """One call to the API.

    Attributes
    ----------
    request_id
        The idempotency key of the call: a retry with the same id is billed once.
    principal
        The authenticated caller.
    inline
        True where a process serves one request at a time (Lambda): blocking work then runs
        inline, since a thread-pool hop would only add latency.
    batch
        True for a line of a batch job: billed at the plan's batch discount
        (:func:`aimaas.plans.batch_task`).
    state
        The request's state mapping (``scope["state"]``), shared with the middleware, which
        reads the served model from it for the ``X-Aimaas-Model`` header and metrics.
    """

    request_id: str
    principal: Principal
    inline: bool = False
    batch: bool = False
    state: MutableMapping[str, Any] = field(default_factory=dict, repr=False)
    _inputs: Any = field(default=None, init=False, repr=False)

    def bind_input(self, model_id: str, wire_request: Any) -> None:
        """Fold one batch this call sends to a model into the call's :attr:`request_digest`.

        The digest is taken over what the models are asked (model, version, task, parameters
        and decoded inputs), not over the body's bytes, so a client's retry that re-encodes the
        same request (a new multipart boundary, other JSON spacing, base64 instead of raw bytes)
        still matches, and any different request does not.
        """
        if self._inputs is None:
            self._inputs = hashlib.sha256()
        self._inputs.update(model_id.encode() + b"\0")
        self._inputs.update(wire_request.model_dump_json().encode() + b"\0")

    @property
    def request_digest(self) -> str | None:
        """The sha256 of every batch sent so far (None when the call ran no model)."""
        return None if self._inputs is None else self._inputs.hexdigest()

    def mark_billed(self) -> None:
        """Record that this call made a new usage record (its hard-limit slot is spent)."""
        self.state[_BILLED] = True

    @property
    def billed(self) -> bool:
        """Whether this call made a new usage record (a replay or a failure did not)."""
        return was_billed(self.state)

    def mark_model(self, model_id: str) -> None:
        """Record the model serving this call (``name@version``) for headers and log lines."""
        mark_model(self.state, model_id)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound or blocking ``fn(*args)`` for this call (see :func:`run_blocking`)."""
        return await run_blocking(self.inline, fn, *args)


async def run_blocking(inline: bool, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` inline or in the thread pool.

    Under Lambda a process serves exactly one request at a time, so ``fn`` runs inline (and
    Mangum's per-invocation root task would make AnyIO start a fresh worker thread every time).
    Under uvicorn ``fn`` goes to the thread pool so the event loop keeps serving others.
    """
    if inline:
        return fn(*args)
    return await run_in_threadpool(fn, *args)
