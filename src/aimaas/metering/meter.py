"""The meter: makes a usage record durable, with retries, or refuses to serve.

Policy: **no durable record, no answer.** The serving route calls :meth:`Meter.record` after
the model has produced its result and before answering. If the record cannot be made durable
after the retries, :meth:`Meter.record` raises :class:`aimaas.errors.BackendUnavailable`; the
route answers 503 and the caller is not billed (there is no record). So every answered call is
billed exactly once: the ledger dedupes on ``(tenant_id, request_id)``, which also makes a
retry after an ambiguous failure (the write landed but its acknowledgement was lost) safe: the
retry finds the record and returns False, and the call is served.

The one residual case: every attempt fails, yet one of them had in fact landed. The call is then
recorded but answered 503. Reconciliation (``python -m aimaas_admin reconcile``) and the
``status`` field of records make such cases visible; they are over-billing by at most the calls
that failed this way, never under-billing.

Retries use `tenacity <https://tenacity.readthedocs.io>`_ (exponential back-off with jitter). It
is imported lazily so that the authorizer, which never meters, does not ship it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aimaas import deadline
from aimaas.errors import BackendUnavailable
from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import UsageRecord

logger = logging.getLogger("aimaas.metering")

# The error code of a prediction refused because its usage could not be recorded; the inference
# handler counts these as the LedgerWriteFailures metric that an alarm watches.
USAGE_NOT_RECORDED = "usage_not_recorded"

# Programming errors: retrying cannot help, and they must not be reported as an outage.
_NOT_RETRIED: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError)


def _past_the_deadline(state: object) -> bool:
    """A tenacity stop condition: no retry whose wait would end past the request's deadline
    (the answer could not reach the client anyway)."""
    left = deadline.time_left()
    upcoming = float(getattr(state, "upcoming_sleep", 0.0) or 0.0)
    return left is not None and left <= upcoming + deadline.DELIVERY_MARGIN_S


class Meter:
    """Record usage durably or fail loudly.

    Parameters
    ----------
    ledger
        Where records go.
    attempts
        Total tries per record (first try included).
    initial_wait_s, max_wait_s
        Exponential back-off bounds between tries (jitter added).
    sleep
        The sleep function (tests pass a no-op to run fast).
    """

    def __init__(
        self,
        ledger: UsageLedger,
        *,
        attempts: int = 4,
        initial_wait_s: float = 0.02,
        max_wait_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.ledger = ledger
        self.attempts = attempts
        self.initial_wait_s = initial_wait_s
        self.max_wait_s = max_wait_s
        self.sleep = sleep

    def record(self, record: UsageRecord) -> bool:
        """Make ``record`` durable.

        Returns
        -------
        bool
            True if it is new, False if that request id was already recorded (a retry); in both
            cases the record is durable and the call may be answered.

        Raises
        ------
        aimaas.errors.BackendUnavailable
            The ledger kept failing: do not answer the call (503); it is not billed.
        """
        import tenacity

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts) | _past_the_deadline,
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.initial_wait_s, max=self.max_wait_s, jitter=self.initial_wait_s
            ),
            retry=tenacity.retry_if_not_exception_type(_NOT_RETRIED),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return bool(retrying(self.ledger.put, record))
        except _NOT_RETRIED:
            raise
        except Exception as error:
            logger.error(
                "usage not recorded; the call is not served",
                extra={
                    "request_id": record.request_id,
                    "tenant_id": record.tenant_id,
                    "error_type": type(error).__name__,
                },
            )
            raise BackendUnavailable(
                "Usage could not be recorded, so the request was not served and is not billed; "
                "retry the request.",
                code=USAGE_NOT_RECORDED,
            ) from error

    @staticmethod
    def _log_retry(state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        logger.warning(
            "ledger write failed; retrying",
            extra={
                "attempt": getattr(state, "attempt_number", None),
                "error_type": type(error).__name__ if error else None,
            },
        )
