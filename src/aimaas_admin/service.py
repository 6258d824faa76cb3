"""The admin operations, as a Python API (the CLI and local mode call these).

Every method records one audit event (who, what, when, from where), whether it succeeds or
fails; no event ever contains a key, only key ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aimaas.auth import KeyRecord, KeyStore, Tenant
from aimaas.auth.keys import new_tenant_id, now_utc
from aimaas.auth.lifecycle import KeyLifecycle
from aimaas.config import Settings
from aimaas.metering import UsageLedger, UsageSummary, usage_summary
from aimaas.metering.invoice import Invoice, month_invoice
from aimaas.plans import Catalog, load_catalog
from aimaas.wiring import PROVISIONERS, build_key_store, build_ledger, pepper_from
from aimaas_admin.audit import (
    AuditEvent,
    AuditLog,
    build_audit_log,
    default_actor,
    default_host,
)
from aimaas_admin.provisioner import ApiGatewayProvisioner, KeyProvisioner
from aimaas_admin.reconcile import ReconcileReport, reconcile

_TENANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class AdminService:
    """Tenants, keys, plans, usage, invoices, audit and reconciliation.

    Parameters
    ----------
    settings
        Which adapters to use (``key_store``/``ledger``: ``sqlite`` or ``dynamodb``).
    store, ledger, audit, provisioner
        Override the adapters built from ``settings`` (tests).
    actor
        Who acts (default: the OS user); recorded in the audit log.
    host
        From where (default: this host name).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: KeyStore | None = None,
        ledger: UsageLedger | None = None,
        audit: AuditLog | None = None,
        provisioner: KeyProvisioner | None = None,
        actor: str | None = None,
        host: str | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.settings = settings
        self.store = store or build_key_store(settings)
        self.ledger = ledger or build_ledger(settings)
        self.audit = audit or build_audit_log(settings)
        self.provisioner = provisioner or PROVISIONERS[settings.key_store](settings)
        self.actor = actor or default_actor()
        self.host = host or default_host()
        self.catalog = catalog or load_catalog()
        self.pepper = pepper_from(settings)
        self.clock = clock
        self.keys = KeyLifecycle(self.store, self.provisioner, self.pepper, clock)

    @contextmanager
    def _audited(self, action: str, target: str, **details: Any) -> Iterator[dict[str, Any]]:
        """Record the action once it is done (``ok``) or has failed (``error: <type>``)."""
        extra: dict[str, Any] = {}
        try:
            yield extra
        except Exception as error:
            self._record(action, target, {**details, **extra}, f"error: {type(error).__name__}")
            raise
        self._record(action, target, {**details, **extra}, "ok")

    def _record(self, action: str, target: str, details: dict[str, Any], outcome: str) -> None:
        self.audit.append(
            AuditEvent(
                action=action,
                target=target,
                actor=self.actor,
                host=self.host,
                at=self.clock(),
                details=details,
                outcome=outcome,
            )
        )

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.store.get_tenant(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id!r}")
        return tenant

    # Tenants and plans -------------------------------------------------------------------

    def create_tenant(self, name: str, plan: str = "free", tenant_id: str | None = None) -> Tenant:
        """Create a tenant on ``plan`` (KeyError for an unknown plan)."""
        tenant_id = tenant_id or new_tenant_id()
        with self._audited("tenant.create", tenant_id, name=name, plan=plan):
            if not _TENANT_ID.fullmatch(tenant_id):
                # '#' separates DynamoDB key parts; ids also appear in URLs and file names.
                raise ValueError("tenant id: 1-64 characters among letters, digits, '_' and '-'")
            self.catalog.plan(plan)
            tenant = Tenant(tenant_id=tenant_id, name=name, plan=plan, created_at=self.clock())
            self.store.create_tenant(tenant)
        return tenant

    def list_tenants(self) -> list[Tenant]:
        """Every tenant."""
        with self._audited("tenant.list", "*"):
            return self.store.list_tenants()

    def set_tenant_status(self, tenant_id: str, status: str) -> Tenant:
        """Suspend (``suspended``) or reactivate (``active``) a tenant; its keys follow."""
        if status not in ("active", "suspended"):
            raise ValueError("status must be 'active' or 'suspended'")
        with self._audited("tenant.status", tenant_id, status=status):
            tenant = replace(self._tenant(tenant_id), status=status)  # type: ignore[arg-type]
            self.store.save_tenant(tenant)
        return tenant

    def change_plan(self, tenant_id: str, plan: str) -> Tenant:
        """Move a tenant (and its keys' usage-plan membership) to ``plan``."""
        with self._audited("plan.change", tenant_id, plan=plan) as extra:
            self.catalog.plan(plan)
            tenant = self._tenant(tenant_id)
            extra["old_plan"] = tenant.plan
            gateway_keys = [
                k.apigw_key_id
                for k in self.store.list_keys(tenant_id)
                if k.apigw_key_id and k.status == "active"
            ]
            self.provisioner.plan_changed(gateway_keys, tenant.plan, plan)
            tenant = replace(tenant, plan=plan)
            self.store.save_tenant(tenant)
        return tenant

    # Keys ---------------------------------------------------------------------------------

    def create_key(self, tenant_id: str, label: str = "") -> tuple[str, str]:
        """Issue a key for ``tenant_id``.

        Returns
        -------
        tuple of str
            ``(key_id, key)``. Show ``key`` once; only its hash is stored.
        """
        with self._audited("key.create", tenant_id, label=label) as extra:
            record, key = self.keys.create(tenant_id, label=label)
            extra["key_id"] = record.key_id
            if record.apigw_key_id:
                extra["apigw_key_id"] = record.apigw_key_id
        return record.key_id, key

    def create_console_link_key(
        self, tenant_id: str, ttl: timedelta = timedelta(minutes=15)
    ) -> tuple[KeyRecord, str]:
        """Issue a short-lived key for a console sign-in link.

        An ordinary key (same plan, same gateway key) that the authenticator refuses once
        ``ttl`` has passed (``expires_at``); ``key sweep`` later revokes it and deletes its
        gateway key. The audit event names the key id and expiry, never the key.

        Returns
        -------
        tuple
            ``(record, key)``: ``key`` goes into the link's fragment and nowhere else.

        Raises
        ------
        ValueError
            ``ttl`` is not between one minute and one hour.
        """
        if not timedelta(minutes=1) <= ttl <= timedelta(hours=1):
            raise ValueError("a console link lives between 1 and 60 minutes")
        with self._audited("key.console_link", tenant_id, ttl_s=int(ttl.total_seconds())) as extra:
            record, key = self.keys.create(tenant_id, label="console link")
            record = replace(record, expires_at=self.clock() + ttl)
            self.store.save_key(record)
            extra["key_id"] = record.key_id
            extra["expires_at"] = record.expires_at.isoformat() if record.expires_at else None
        return record, key

    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        """The tenant's key records (hashes, never keys)."""
        with self._audited("key.list", tenant_id):
            return self.store.list_keys(tenant_id)

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke a key now, and delete its API Gateway key."""
        with self._audited("key.revoke", key_id):
            return self.keys.revoke(key_id)

    def rotate_key(self, key_id: str, grace_seconds: int = 0) -> tuple[str, str]:
        """Issue a replacement key; the old one is revoked now or expires after the grace.

        Returns
        -------
        tuple of str
            ``(new_key_id, new_key)``.
        """
        with self._audited("key.rotate", key_id, grace_seconds=grace_seconds) as extra:
            old = self.store.get_key(key_id)
            if old is None:
                raise KeyError(f"unknown key {key_id!r}")
            if old.status != "active":
                raise ValueError(f"key {key_id!r} is {old.status}; issue a new key instead")
            new_key_id, key = self.create_key(old.tenant_id, label=old.label)
            extra["new_key_id"] = new_key_id
            if grace_seconds > 0:
                expires = self.clock() + timedelta(seconds=grace_seconds)
                self.store.save_key(replace(old, expires_at=expires))
                extra["old_expires_at"] = expires.isoformat()
            else:
                self.revoke_key(key_id)
        return new_key_id, key

    def sweep_expired_keys(self) -> list[str]:
        """Revoke every key whose rotation grace has ended (and delete its gateway key).

        The authenticator already refuses such keys; this tidies the store and API Gateway.

        Returns
        -------
        list of str
            The key ids revoked.
        """
        swept: list[str] = []
        with self._audited("key.sweep", "*") as extra:
            now = self.clock()
            for tenant in self.store.list_tenants():
                for record in self.store.list_keys(tenant.tenant_id):
                    if record.status == "active" and record.expires_at and record.expires_at <= now:
                        self.revoke_key(record.key_id)
                        swept.append(record.key_id)
            extra["revoked"] = swept
        return swept

    # Usage, invoices, audit, reconciliation -----------------------------------------------

    def usage(
        self, tenant_id: str, start: datetime, end: datetime, group_by: Sequence[str] = ("day",)
    ) -> UsageSummary:
        """A tenant's priced usage in ``[start, end)``."""
        with self._audited("usage.show", tenant_id, start=start.isoformat(), end=end.isoformat()):
            tenant = self._tenant(tenant_id)
            return usage_summary(
                self.ledger, tenant_id, tenant.plan, start, end, group_by, self.catalog
            )

    def invoice(self, tenant_id: str, month: str) -> Invoice:
        """The invoice of ``month`` (``YYYY-MM``) at the tenant's current plan."""
        with self._audited("invoice.build", tenant_id, month=month):
            tenant = self._tenant(tenant_id)
            return month_invoice(
                self.ledger,
                tenant_id=tenant_id,
                tenant_name=tenant.name,
                plan=tenant.plan,
                month=month,
                catalog=self.catalog,
                issued_at=self.clock(),
            )

    def audit_events(self, start: datetime, end: datetime) -> list[AuditEvent]:
        """Audit events in ``[start, end)``; listing is itself audited."""
        events = list(self.audit.list(start, end))
        self._record(
            "audit.list",
            "*",
            {"start": start.isoformat(), "end": end.isoformat(), "count": len(events)},
            "ok",
        )
        return events

    def reconcile(
        self, key_id: str, start: date, end: date, *, apigateway: Any = None
    ) -> ReconcileReport:
        """Compare the ledger with API Gateway ``GetUsage`` for one key (inclusive days)."""
        with self._audited("reconcile", key_id, start=start.isoformat(), end=end.isoformat()):
            record = self.store.get_key(key_id)
            if record is None:
                raise KeyError(f"unknown key {key_id!r}")
            if not record.apigw_key_id:
                raise ValueError(f"key {key_id!r} has no API Gateway key (local store?)")
            tenant = self._tenant(record.tenant_id)
            provisioner = self.provisioner
            if not isinstance(provisioner, ApiGatewayProvisioner):
                raise ValueError("reconcile needs the AWS store (--store aws)")
            return reconcile(
                self.ledger,
                apigateway or provisioner.client,
                tenant_id=tenant.tenant_id,
                key_id=key_id,
                apigw_key_id=record.apigw_key_id,
                usage_plan_id=provisioner.usage_plan_id(tenant.plan),
                start=start,
                end=end,
            )

    def close(self) -> None:
        """Release connections."""
        self.store.close()
        self.ledger.close()


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()
