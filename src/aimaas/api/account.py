"""The caller's own account: who it is, its invoices, its keys and their audit trail.

These routes are what the browser console (``/console``) calls with the customer's key; they
give a key no power over anything but its own tenant. Key management (``/v1/keys``) is
self-service only where the tenant's plan says so (``self_service_keys`` in ``plans.toml``),
and goes through the same :class:`~aimaas.auth.lifecycle.KeyLifecycle` as the admin CLI (key
store and API Gateway key together), with an audit event for every change. Another tenant's key
id is a 404, the same as one that never existed, so ids cannot be probed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from aimaas.api.calls import Call
from aimaas.api.classifiers import audit
from aimaas.api.container import Container
from aimaas.api.dependencies import ContainerDep, IdentifiedCallDep
from aimaas.auth import KeyRecord
from aimaas.errors import Forbidden, InvalidInput, NotFound
from aimaas.metering.invoice import month_invoice, render_csv
from aimaas.plans import load_catalog

router = APIRouter(tags=["account"])

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: How far back ``GET /v1/audit`` looks (a console page, not an export).
AUDIT_DAYS = 90


class AccountOut(BaseModel):
    """The caller's tenant, plan and where it stands against the plan's hard limit."""

    tenant_id: str
    tenant_name: str
    plan: str
    plan_description: str
    key_id: str = Field(description="The id of the key this request was made with.")
    monthly_limit: int = Field(description="The plan's hard monthly request limit.")
    month_to_date_calls: int = Field(description="Billed calls this calendar month (UTC).")
    self_service_keys: bool = Field(description="Whether this plan may manage its own keys.")
    currency: str


class KeyOut(BaseModel):
    """One key as its owner sees it: never the secret, never its hash."""

    key_id: str
    label: str
    status: Literal["active", "revoked"]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class NewKeyIn(BaseModel):
    """``POST /v1/keys``."""

    label: str = Field(default="", max_length=64, description="A name to tell keys apart.")


class NewKeyOut(BaseModel):
    """A key just issued: ``key`` is shown this once and never again."""

    key: str = Field(description="The secret API key. Store it now; it cannot be shown again.")
    record: KeyOut
    replaced: str | None = Field(default=None, description="The key id a rotation revoked.")


class AuditEventOut(BaseModel):
    """One audited change to the caller's tenant."""

    at: datetime
    action: str
    target: str
    actor: str
    outcome: str


class InvoiceLineOut(BaseModel):
    """One line: a model and task, or the request fee. Decimals as strings (exact)."""

    model: str
    task: str
    unit: str
    calls: int
    quantity: str
    unit_price: str
    amount: str


class InvoiceDayOut(BaseModel):
    """One day's calls and cost."""

    day: str
    calls: int
    cost: str


class InvoiceOut(BaseModel):
    """The month's invoice (the admin CLI's ``invoice --format json``, same builder)."""

    invoice_id: str
    tenant_id: str
    tenant_name: str
    plan: str
    currency: str
    month: str
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    lines: list[InvoiceLineOut]
    days: list[InvoiceDayOut]
    total_calls: int
    total: str
    amount_due: str


def _key_out(record: KeyRecord) -> KeyOut:
    return KeyOut(
        key_id=record.key_id,
        label=record.label,
        status=record.status,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        expires_at=record.expires_at,
    )


async def self_service(call: IdentifiedCallDep) -> Call:
    """The call of a tenant whose plan lets it manage its own keys (403 otherwise)."""
    if not load_catalog().plan(call.principal.plan).self_service_keys:
        raise Forbidden(
            f"The {call.principal.plan!r} plan does not include self-service keys; "
            "ask your operator for a new key."
        )
    return call


SelfServiceDep = Annotated[Call, Depends(self_service)]
KeyIdPath = Annotated[str, Path(pattern=r"^[a-z0-9]{12}$", description="A key id.")]


def _own_key(container: Container, call: Call, key_id: str) -> KeyRecord:
    record = container.authenticator.store.get_key(key_id)
    if record is None or record.tenant_id != call.principal.tenant_id:
        raise NotFound(f"No key {key_id!r}.")
    return record


def _issue(container: Container, call: Call, label: str) -> tuple[KeyRecord, str]:
    return container.keys().create(call.principal.tenant_id, label=label)


@router.get("/v1/account", response_model=AccountOut, summary="Your tenant, plan and limit")
async def get_account(container: ContainerDep, call: IdentifiedCallDep) -> AccountOut:
    """Who the key belongs to, its plan, and how much of the hard monthly limit is used."""
    principal = call.principal

    def build() -> AccountOut:
        tenant = container.authenticator.store.get_tenant(principal.tenant_id)
        catalog = load_catalog()
        plan = catalog.plan(principal.plan)
        return AccountOut(
            tenant_id=principal.tenant_id,
            tenant_name=tenant.name if tenant else "",
            plan=plan.name,
            plan_description=plan.description,
            key_id=principal.key_id,
            monthly_limit=plan.monthly_requests,
            month_to_date_calls=container.ledger.month_calls(
                principal.tenant_id, datetime.now(UTC)
            ),
            self_service_keys=plan.self_service_keys,
            currency=catalog.currency,
        )

    return await call.run(build)


@router.get(
    "/v1/invoices/{month}",
    response_model=InvoiceOut,
    summary="Your invoice of a month",
    responses={200: {"content": {"text/csv": {}}}, 422: {"description": "Bad month"}},
)
async def get_invoice(
    container: ContainerDep,
    call: IdentifiedCallDep,
    month: Annotated[str, Path(description="YYYY-MM (UTC).")],
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv.")] = "json",
) -> InvoiceOut | Response:
    """The month's invoice at the tenant's current plan, as JSON or as CSV (one row a line)."""
    if not _MONTH.match(month):
        raise InvalidInput(f"{month[:16]!r} is not a month (YYYY-MM).")
    principal = call.principal

    def build() -> InvoiceOut | Response:
        tenant = container.authenticator.store.get_tenant(principal.tenant_id)
        invoice = month_invoice(
            container.ledger,
            tenant_id=principal.tenant_id,
            tenant_name=tenant.name if tenant else "",
            plan=principal.plan,
            month=month,
        )
        if format == "csv":
            return Response(
                render_csv(invoice),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{invoice.invoice_id}.csv"'},
            )
        return InvoiceOut.model_validate(invoice.as_dict())

    return await call.run(build)


@router.get("/v1/keys", response_model=list[KeyOut], summary="Your keys (never their secrets)")
async def list_keys(container: ContainerDep, call: IdentifiedCallDep) -> list[KeyOut]:
    """Every key of the caller's tenant, oldest first: id, label, status and dates."""
    store = container.authenticator.store
    records = await call.run(lambda: store.list_keys(call.principal.tenant_id))
    return [_key_out(record) for record in records]


@router.post("/v1/keys", response_model=NewKeyOut, status_code=201, summary="Issue a key")
async def create_key(container: ContainerDep, call: SelfServiceDep, body: NewKeyIn) -> NewKeyOut:
    """A new key for the caller's tenant; the secret is in this answer only."""

    def build() -> NewKeyOut:
        record, key = _issue(container, call, body.label)
        audit(container, call, "key.create", call.principal.tenant_id, key_id=record.key_id)
        return NewKeyOut(key=key, record=_key_out(record))

    return await call.run(build)


@router.post("/v1/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key now")
async def revoke_own_key(
    container: ContainerDep, call: SelfServiceDep, key_id: KeyIdPath
) -> KeyOut:
    """Revoke one of the caller's keys at once (idempotent). Revoking the key in use is allowed:
    the next call with it gets 403."""

    def build() -> KeyOut:
        _own_key(container, call, key_id)
        record = container.keys().revoke(key_id)
        audit(container, call, "key.revoke", key_id)
        return _key_out(record)

    return await call.run(build)


@router.post("/v1/keys/{key_id}/rotate", response_model=NewKeyOut, summary="Replace a key")
async def rotate_own_key(
    container: ContainerDep, call: SelfServiceDep, key_id: KeyIdPath
) -> NewKeyOut:
    """Issue a replacement with the same label and revoke the old key at once."""

    def build() -> NewKeyOut:
        old = _own_key(container, call, key_id)
        if old.status != "active":
            raise InvalidInput(f"Key {key_id!r} is {old.status}; issue a new key instead.")
        record, key = _issue(container, call, old.label)
        container.keys().revoke(key_id)
        audit(container, call, "key.rotate", key_id, new_key_id=record.key_id)
        return NewKeyOut(key=key, record=_key_out(record), replaced=key_id)

    return await call.run(build)


@router.get("/v1/audit", response_model=list[AuditEventOut], summary="Changes to your account")
async def list_audit(container: ContainerDep, call: IdentifiedCallDep) -> list[AuditEventOut]:
    """Audited changes to the caller's tenant in the last 90 days, newest first."""
    log = container.audit
    tenant_id = call.principal.tenant_id
    if log is None:
        return []

    def build() -> list[AuditEventOut]:
        end = datetime.now(UTC) + timedelta(seconds=1)
        events = [
            AuditEventOut(
                at=e.at, action=e.action, target=e.target, actor=e.actor, outcome=e.outcome
            )
            for e in log.list(end - timedelta(days=AUDIT_DAYS), end)
            if e.details.get("tenant_id") == tenant_id or e.target == tenant_id
        ]
        return events[::-1]

    return await call.run(build)
