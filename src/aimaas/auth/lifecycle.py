"""Issuing and revoking keys with their gateway counterpart: the one code path for the admin
CLI (:class:`aimaas_admin.service.AdminService`) and the customer's ``/v1/keys``.

A key is issued in the key store first, then given its API Gateway API key (AWS); if that
fails the new key is revoked again, so no key exists that the gateway would refuse. A revoked
key loses its gateway key too. Auditing is the caller's (each records its own actor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from aimaas.auth.keys import KeyRecord, KeyStore, issue_key, revoke_key, usage_identifier
from aimaas.auth.provisioner import KeyProvisioner
from aimaas.storage import now_utc


@dataclass
class KeyLifecycle:
    """Keys as a tenant's lifecycle sees them: issue and revoke, gateway included.

    Parameters
    ----------
    store
        Tenants and keys.
    provisioner
        The gateway side (:class:`~aimaas.auth.provisioner.NoProvisioner` locally).
    pepper
        The key-hash pepper, or a function that returns it.
    clock
        Returns "now".
    """

    store: KeyStore
    provisioner: KeyProvisioner
    pepper: str | Callable[[], str]
    clock: Callable[[], datetime] = now_utc

    def _pepper(self) -> str:
        return self.pepper() if callable(self.pepper) else self.pepper

    def create(self, tenant_id: str, label: str = "") -> tuple[KeyRecord, str]:
        """Issue a key for ``tenant_id`` and its gateway key.

        Returns
        -------
        tuple
            ``(record, key)``: ``key`` is the secret to show once.

        Raises
        ------
        KeyError
            Unknown tenant.
        """
        tenant = self.store.get_tenant(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id!r}")
        pepper = self._pepper()
        record, key = issue_key(self.store, tenant_id, pepper, label=label, at=self.clock())
        try:
            apigw_key_id = self.provisioner.key_created(
                tenant_id, record.key_id, tenant.plan, usage_identifier(record.key_id, pepper)
            )
        except Exception:
            revoke_key(self.store, record.key_id, at=self.clock())
            raise
        if apigw_key_id:
            record = replace(record, apigw_key_id=apigw_key_id)
            self.store.save_key(record)
        return record, key

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key now and delete its gateway key (idempotent). KeyError if unknown."""
        record = revoke_key(self.store, key_id, at=self.clock())
        tenant = self.store.get_tenant(record.tenant_id)
        self.provisioner.key_revoked(record.apigw_key_id, tenant.plan if tenant else "free")
        return record
