"""The hard monthly limit under concurrency: near the limit, calls are admitted one at a time.

Far from its limit a tenant's call is admitted on the month counter alone (one read, as
before). Within :data:`RESERVE_MARGIN` calls of the limit each call must also win one slot of
a ledger reservation (:meth:`~aimaas.metering.ledger.UsageLedger.reserve`: one atomic
conditional write), whose allowance is what the counter and this process's calls in flight
left below the limit when the first such call made it. A call that ends without a new billed
record (an error, a replayed Idempotency-Key) gives its slot back.

Bound on the overshoot
----------------------
- One process (local mode, any number of threads, SQLite counters exact in the same
  transaction as the record): **none**. Calls in flight are counted when the allowance is made,
  and every later call needs a slot.
- Many processes on one ledger (Lambda, DynamoDB): the reservation is shared, so what is left is
  what the allowance could not see when it was made: calls another process admitted before the
  reservation existed and had not recorded yet, and records the stream aggregator had not yet
  added to the month counter (typically a second or two). Both are bounded by the plan's
  gateway throttle: at most about ``burst + rate * 2 s`` calls (free 20, pro 200, enterprise
  2,000 with ``plans.toml``'s throttles). The counter itself stays exact, so the next call is
  refused.

A reservation is keyed by tenant, month and limit, so a plan change starts a new one. Its
allowance is fixed when it is made: calls counted in flight then that end unbilled are not
handed back to it, so near the limit the guard may refuse a few calls it could have served
(it errs toward the limit, never past it).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import month_bucket

logger = logging.getLogger("aimaas.metering")

#: Calls from the limit at which admission starts to reserve (one conditional write a call).
RESERVE_MARGIN = 100


@dataclass
class Admission:
    """One admitted call; :meth:`finish` must be called once when the call ends.

    Attributes
    ----------
    tenant_id, month, limit
        The reservation the call holds a slot of (``reserved``), or would have.
    reserved
        Whether the call took a reservation slot (it was admitted near the limit).
    """

    tenant_id: str
    month: str
    limit: int
    reserved: bool
    _guard: LimitGuard | None = field(default=None, repr=False)
    _finished: bool = field(default=False, repr=False)

    def finish(self, billed: bool) -> None:
        """End the call: give its slot back unless it made a new billed record.

        Parameters
        ----------
        billed
            True when the call's usage record was new (a replay or a failure is False).
        """
        if self._finished or self._guard is None:
            return
        self._finished = True
        self._guard.finish(self, billed)


class LimitGuard:
    """Admits a tenant's calls against its hard monthly limit (see the module docstring).

    Parameters
    ----------
    ledger
        The usage ledger: its month counter and its reservations.
    margin
        Calls from the limit at which admission goes through the reservation.
    """

    def __init__(self, ledger: UsageLedger, *, margin: int = RESERVE_MARGIN) -> None:
        self.ledger = ledger
        self.margin = margin
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()

    def in_flight(self, tenant_id: str) -> int:
        """Calls of ``tenant_id`` this process has admitted and not finished."""
        with self._lock:
            return self._in_flight[tenant_id]

    def admit(self, tenant_id: str, limit: int, used: int, now: datetime) -> Admission | None:
        """Admit one call of a tenant that has ``used`` calls of its ``limit`` this month.

        Returns
        -------
        Admission or None
            The admitted call, or None when the limit leaves no room for it.
        """
        month = month_bucket(now)
        if used >= limit:
            return None
        with self._lock:
            others = self._in_flight[tenant_id]
            self._in_flight[tenant_id] += 1
        admission = Admission(tenant_id, month, limit, reserved=False, _guard=self)
        if limit - used > self.margin:
            return admission
        try:
            admitted = self.ledger.reserve(tenant_id, month, limit, limit - used - others)
        except BaseException:
            self._forget(tenant_id)
            raise
        if not admitted:
            self._forget(tenant_id)
            return None
        admission.reserved = True
        return admission

    def finish(self, admission: Admission, billed: bool) -> None:
        """End ``admission`` (use :meth:`Admission.finish`)."""
        self._forget(admission.tenant_id)
        if not admission.reserved or billed:
            return
        try:
            self.ledger.release(admission.tenant_id, admission.month, admission.limit)
        except Exception as error:  # best effort: a lost slot refuses one call, never overbills
            logger.warning(
                "could not give back a reservation slot",
                extra={"tenant_id": admission.tenant_id, "error_type": type(error).__name__},
            )

    def _forget(self, tenant_id: str) -> None:
        with self._lock:
            self._in_flight[tenant_id] -= 1
            if self._in_flight[tenant_id] <= 0:
                del self._in_flight[tenant_id]
