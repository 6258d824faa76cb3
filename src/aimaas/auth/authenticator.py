"""From request headers to a :class:`Principal`: the one key check for local mode, the inference
app and the Lambda authorizer (standard library, boto3 and the core only).

Accepted credentials: ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (header names are
case-insensitive). Both may be sent if they carry the same key.

Outcomes, in the order they are checked:

======================================================  =====================================
situation                                               error
======================================================  =====================================
no key; ``Authorization`` not ``Bearer``; two different  :class:`~aimaas.errors.Unauthorized`
keys in the two headers; not an ``amk_`` key             (401)
unknown key id; wrong secret; revoked; past its          :class:`~aimaas.errors.Forbidden`
rotation grace; tenant unknown or suspended              (403)
the tenant's hard monthly limit reached (ledger's month  :class:`~aimaas.errors.QuotaExceeded`
counter >= plan ``hard_limits.monthly_requests``)        (429, ``Retry-After`` = seconds to the
                                                         next month, UTC)
======================================================  =====================================

Error messages never contain the key.

The hard limit is checked before a call is served and counted when it is recorded.
:meth:`Authenticator.authenticate` (the Lambda authorizer) only checks the counter; the serving
app admits each call with :meth:`Authenticator.admit`, which near the limit takes a slot of a
ledger reservation, so concurrent calls at the boundary cannot overshoot it in one process and
overshoot it by a bounded few across processes (:mod:`aimaas.metering.limits`).
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from aimaas.auth.keys import KeyStore, key_matches, now_utc, parse_key, usage_identifier
from aimaas.errors import Forbidden, QuotaExceeded, Unauthorized
from aimaas.metering.ledger import UsageLedger
from aimaas.metering.limits import Admission, LimitGuard
from aimaas.metering.records import next_month_start
from aimaas.plans import Catalog, load_catalog

logger = logging.getLogger("aimaas.auth")

#: Seconds between two ``last_used_at`` writes of the same key.
TOUCH_INTERVAL_S = 300


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the key used (its id, not the key) and the tenant's plan.

    ``usage_identifier`` is the API Gateway API key value of that key (AWS only,
    :func:`aimaas.auth.keys.usage_identifier`), which the authorizer returns as
    ``usageIdentifierKey`` so the usage plan throttles the tenant.
    """

    tenant_id: str
    key_id: str
    plan: str
    usage_identifier: str | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def extract_key(headers: Mapping[str, str]) -> str:
    """The API key a request presents.

    Raises
    ------
    aimaas.errors.Unauthorized
        No key, a non-Bearer ``Authorization`` header without ``x-api-key``, an empty Bearer
        token, or two different keys.
    """
    api_key = (_header(headers, "x-api-key") or "").strip()
    authorization = (_header(headers, "authorization") or "").strip()
    bearer = ""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            bearer = token.strip()
            if not bearer:
                raise Unauthorized("The Authorization header has an empty Bearer token.")
        elif not api_key:
            raise Unauthorized(
                "Unsupported Authorization scheme; send 'Authorization: Bearer <key>' or "
                "an 'x-api-key' header."
            )
    if api_key and bearer and not _same(api_key, bearer):
        raise Unauthorized(
            "Two different API keys were sent (x-api-key and Authorization: Bearer); send one."
        )
    key = api_key or bearer
    if not key:
        raise Unauthorized(
            "Missing API key: send an 'x-api-key' header or 'Authorization: Bearer <key>'."
        )
    return key


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Authenticator:
    """Checks a request's key against the key store and the tenant's hard monthly limit.

    Parameters
    ----------
    store
        Tenants and keys.
    ledger
        The usage ledger (its month counter enforces the hard limit).
    pepper
        The HMAC pepper the key hashes were made with, or a function that returns it (called
        on each use, never at construction: behind a trusted authorizer the app never needs it,
        so it never pays for the SSM read at cold start; the function caches, with a max age,
        so a replaced pepper is seen, see :mod:`aimaas.auth.pepper`).
    catalog
        Plans (``plans.toml`` by default).
    clock
        Returns "now" (tests pass a fixed clock).
    touch
        Record ``last_used_at`` (at most every five minutes per key).
    """

    def __init__(
        self,
        store: KeyStore,
        ledger: UsageLedger,
        *,
        pepper: str | Callable[[], str],
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = now_utc,
        touch: bool = True,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self._pepper = pepper
        self.catalog = catalog or load_catalog()
        self.clock = clock
        self.touch = touch
        self.guard = LimitGuard(ledger)

    @property
    def pepper(self) -> str:
        """The pepper, asked of its source on each use."""
        return self._pepper() if callable(self._pepper) else self._pepper

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Resolve the caller of a request and enforce its tenant's hard monthly limit.

        Parameters
        ----------
        headers
            The request headers (any case).

        Returns
        -------
        Principal
            The tenant, key id and plan.

        Raises
        ------
        aimaas.errors.Unauthorized
            Missing or malformed credentials (401).
        aimaas.errors.Forbidden
            Unknown, revoked or expired key, or an inactive tenant (403).
        aimaas.errors.QuotaExceeded
            The tenant's hard monthly limit is reached (429 with Retry-After).
        """
        principal = self.identify(headers)
        self.enforce_limits(principal)
        return principal

    def identify(self, headers: Mapping[str, str]) -> Principal:
        """Resolve the caller without checking limits (401/403 as :meth:`authenticate`)."""
        key = extract_key(headers)
        key_id = parse_key(key)
        if key_id is None:
            raise Unauthorized("The API key is not well formed (expected 'amk_...').")
        now: datetime = self.clock()
        record = self.store.get_key(key_id)
        # One message for every rejected key, so a caller cannot probe which key ids exist.
        rejected = Forbidden("The API key is not valid (unknown, revoked or expired).")
        if record is None or not key_matches(key, record.key_hash, self.pepper):
            logger.info("key rejected", extra={"key_id": key_id, "reason": "unknown"})
            raise rejected
        if not record.usable(now):
            logger.info("key rejected", extra={"key_id": key_id, "reason": record.status})
            raise rejected
        tenant = self.store.get_tenant(record.tenant_id)
        if tenant is None or tenant.status != "active":
            logger.info("key rejected", extra={"key_id": key_id, "reason": "tenant inactive"})
            raise Forbidden("The account of this API key is not active.")
        # Write last_used_at at most every TOUCH_INTERVAL_S per key: the record just read says
        # whether it is stale, so most calls write nothing (a failed DynamoDB condition would
        # still cost a write unit, and SQLite would take its write lock).
        stale = record.last_used_at is None or (
            (now - record.last_used_at).total_seconds() >= TOUCH_INTERVAL_S
        )
        if self.touch and stale:
            try:
                self.store.touch_key(key_id, now, TOUCH_INTERVAL_S)
            except Exception as error:  # best effort: a stale last_used_at must not fail a call
                logger.warning(
                    "could not record last use",
                    extra={"key_id": key_id, "error_type": type(error).__name__},
                )
        if record.usage_identifier:  # written before identifiers were derived
            identifier: str | None = record.usage_identifier
        elif record.apigw_key_id:
            identifier = usage_identifier(key_id, self.pepper)
        else:  # no gateway key (local mode)
            identifier = None
        return Principal(
            tenant_id=tenant.tenant_id,
            key_id=key_id,
            plan=tenant.plan,
            usage_identifier=identifier,
        )

    def enforce_limits(self, principal: Principal) -> int:
        """The tenant's calls this month; :class:`~aimaas.errors.QuotaExceeded` if used up."""
        now: datetime = self.clock()
        plan = self.catalog.plan(principal.plan)
        used = self.ledger.month_calls(principal.tenant_id, now)
        if used >= plan.monthly_requests:
            raise self._quota_exceeded(plan.name, plan.monthly_requests, now)
        return used

    def admit(self, principal: Principal, used: int | None = None) -> Admission:
        """Admit one call of ``principal`` within its hard monthly limit.

        Near the limit the call takes a slot of the ledger's reservation, so concurrent calls
        cannot all pass one counter read (:mod:`aimaas.metering.limits`).

        Parameters
        ----------
        principal
            The caller.
        used
            The tenant's calls this month if already read (by the Lambda authorizer, which
            passes it in its context); read from the ledger when None.

        Returns
        -------
        Admission
            Call :meth:`~aimaas.metering.limits.Admission.finish` when the call ends.

        Raises
        ------
        aimaas.errors.QuotaExceeded
            The limit leaves no room for this call (429 with Retry-After).
        """
        now: datetime = self.clock()
        plan = self.catalog.plan(principal.plan)
        if used is None:
            used = self.ledger.month_calls(principal.tenant_id, now)
        admission = self.guard.admit(principal.tenant_id, plan.monthly_requests, used, now)
        if admission is None:
            raise self._quota_exceeded(plan.name, plan.monthly_requests, now)
        return admission

    @staticmethod
    def _quota_exceeded(plan: str, limit: int, now: datetime) -> QuotaExceeded:
        return QuotaExceeded(
            f"The monthly limit of {limit} requests of plan '{plan}' is reached; it resets at "
            "the start of next month (UTC).",
            retry_after=math.ceil((next_month_start(now) - now).total_seconds()),
        )
