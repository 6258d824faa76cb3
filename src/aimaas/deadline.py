"""The request deadline: how long the call being served may still take.

API Gateway gives up on a request after 29 s; an answer sent later reaches nobody, and a call
billed then would be billed for nothing. So every request gets a deadline below that
(``AIMAAS_REQUEST_DEADLINE_S``, 25 s; under Lambda also the invocation's own remaining time), set
by the middleware in a context variable that follows the request into worker threads. Everything
that waits or retries on the request's path (the GPU backends, the ledger's retries, queues)
bounds itself by :func:`time_left`, and the meter refuses to record a call once too little time
is left to deliver its answer (504, not billed).
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

from aimaas.errors import DeadlineExceeded

_deadline: ContextVar[float | None] = ContextVar("aimaas_deadline", default=None)
#: Time kept in hand to serialise and send an answer once it is billed.
DELIVERY_MARGIN_S = 0.25


def start(seconds: float | None) -> Token[float | None]:
    """Give the current request ``seconds`` from now (None: no deadline)."""
    return _deadline.set(None if seconds is None else time.monotonic() + seconds)


def reset(token: Token[float | None]) -> None:
    """End the deadline set by :func:`start`."""
    _deadline.reset(token)


def time_left() -> float | None:
    """Seconds until the current request's deadline (None when it has none)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def bounded(timeout_s: float) -> float:
    """``timeout_s``, or less when the deadline is nearer.

    Raises
    ------
    aimaas.errors.DeadlineExceeded
        The deadline has passed.
    """
    left = time_left()
    if left is None:
        return timeout_s
    if left <= 0:
        raise DeadlineExceeded("The request ran out of time before it could be answered.")
    return min(timeout_s, left)


def ensure_deliverable() -> None:
    """Refuse (504) to go on with a call that could no longer be answered in time: checked
    before its usage is recorded, so such a call is never billed."""
    left = time_left()
    if left is not None and left < DELIVERY_MARGIN_S:
        raise DeadlineExceeded(
            "The request took too long and was not served; it is not billed. Retry it, or "
            "send less work per request."
        )
