"""Test doubles for the authenticator port."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aimaas.auth import Principal
from aimaas.metering.limits import Admission


class Unlimited:
    """The limit half of an authenticator double: every call is admitted, far from any limit
    (subclasses say who calls with ``identify``)."""

    def enforce_limits(self, principal: Principal) -> int:
        """No limits: no calls counted."""
        return 0

    def admit(self, principal: Principal, used: int | None = None) -> Admission:
        """An admission that holds no reservation."""
        return Admission(principal.tenant_id, "0000-00", 0, reserved=False)


@dataclass(frozen=True)
class FixedAuthenticator(Unlimited):
    """Takes every request as coming from ``principal``, with no limits: for tests of what
    happens after authentication (routing, model stores, backends)."""

    principal: Principal

    def identify(self, headers: Mapping[str, str]) -> Principal:
        return self.principal


def tenant_key(db: Path, plan: str = "pro", label: str = "tests") -> str:
    """A key for a new tenant of its own in the SQLite key store at ``db`` (issued through the
    auth package, as the admin CLI does), for tests that must not share the demo tenant."""
    from aimaas.auth import Tenant, issue_key
    from aimaas.auth.keys import new_tenant_id
    from aimaas.config import Settings
    from aimaas.wiring import build_key_store, pepper_from

    settings = Settings(sqlite_path=db)
    store = build_key_store(settings)
    try:
        tenant_id = new_tenant_id()
        store.create_tenant(Tenant(tenant_id=tenant_id, name=label, plan=plan))
        _, key = issue_key(store, tenant_id, pepper_from(settings), label=label)
    finally:
        store.close()
    return key
