"""``python -m aimaas_admin``: the operator's command line (typer).

Store selection: ``--store sqlite --db PATH`` (local file, the default) or ``--store aws``
(DynamoDB tables from ``--tenants-table/--usage-table/--audit-table`` or the ``AIMAAS_*_TABLE``
variables, API Gateway keys in the usage plans ``aimaas-<stage>-<plan>``, and the key pepper from
the stage's SSM parameter ``/aimaas/<stage>/key-pepper``, as the deployed functions read it).
Every command is recorded in the audit log with ``--actor`` (default: the OS user) and this
host's name.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from aimaas.auth.pepper import PepperError
from aimaas.config import Settings
from aimaas.plans import load_catalog
from aimaas_admin.audit import export_events
from aimaas_admin.invoice_html import RENDERERS
from aimaas_admin.service import AdminService, today

app = typer.Typer(
    help="aimaas administration: tenants, keys, plans, usage, invoices, audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
plan_app = typer.Typer(help="Plans.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(plan_app, name="plan")
app.add_typer(usage_app, name="usage")
app.add_typer(audit_app, name="audit")


class Store(StrEnum):
    sqlite = "sqlite"
    aws = "aws"


class InvoiceFormat(StrEnum):
    json = "json"
    csv = "csv"
    html = "html"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


_STATE: dict[str, AdminService] = {}


@app.callback()
def main(
    store: Annotated[Store, typer.Option(help="sqlite (local file) or aws.")] = Store.sqlite,
    db: Annotated[Path | None, typer.Option(help="SQLite file (--store sqlite).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who acts (default: OS user).")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage (usage plan names).")] = None,
    tenants_table: Annotated[str | None, typer.Option(help="DynamoDB tenants table.")] = None,
    usage_table: Annotated[str | None, typer.Option(help="DynamoDB usage table.")] = None,
    audit_table: Annotated[str | None, typer.Option(help="DynamoDB audit table.")] = None,
) -> None:
    """Choose the store; every command below is audited."""
    settings = Settings.from_env()
    if store is Store.aws:
        settings = replace(
            settings,
            key_store="dynamodb",
            ledger="dynamodb",
            tenants_table=tenants_table or settings.tenants_table,
            usage_table=usage_table or settings.usage_table,
            audit_table=audit_table or settings.audit_table,
        )
    else:
        settings = replace(
            settings, key_store="sqlite", ledger="sqlite", sqlite_path=db or settings.sqlite_path
        )
    if stage:
        settings = replace(settings, stage=stage)
    try:
        _STATE["service"] = AdminService(settings, actor=actor)
    except PepperError as error:  # e.g. --store aws with a stage whose pepper is not in SSM
        _fail(error)


def service() -> AdminService:
    return _STATE["service"]


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code=1)


def _day(value: str) -> datetime:
    return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)


# tenant --------------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    name: str,
    plan: Annotated[str, typer.Option(help="Plan name from plans.toml.")] = "free",
    tenant_id: Annotated[
        str | None, typer.Option("--id", help="Tenant id (default: random).")
    ] = None,
) -> None:
    """Create a tenant."""
    try:
        tenant = service().create_tenant(name, plan=plan, tenant_id=tenant_id)
    except (KeyError, ValueError) as error:
        _fail(error)
    typer.echo(
        json.dumps({"tenant_id": tenant.tenant_id, "name": tenant.name, "plan": tenant.plan})
    )


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants (JSON lines)."""
    for tenant in service().list_tenants():
        typer.echo(
            json.dumps(
                {
                    "tenant_id": tenant.tenant_id,
                    "name": tenant.name,
                    "plan": tenant.plan,
                    "status": tenant.status,
                }
            )
        )


@tenant_app.command("suspend")
def tenant_suspend(tenant_id: str) -> None:
    """Suspend a tenant: all its keys stop working (403)."""
    try:
        service().set_tenant_status(tenant_id, "suspended")
    except KeyError as error:
        _fail(error)
    typer.echo(f"suspended {tenant_id}")


@tenant_app.command("activate")
def tenant_activate(tenant_id: str) -> None:
    """Reactivate a suspended tenant."""
    try:
        service().set_tenant_status(tenant_id, "active")
    except KeyError as error:
        _fail(error)
    typer.echo(f"activated {tenant_id}")


# key -----------------------------------------------------------------------------------


def _show_new_key(key_id: str, key: str) -> None:
    typer.echo(f"key_id: {key_id}")
    typer.echo(f"key:    {key}")
    typer.echo("Store this key now: it is shown once and cannot be recovered.", err=True)


@key_app.command("create")
def key_create(
    tenant_id: str, label: Annotated[str, typer.Option(help="A note for operators.")] = ""
) -> None:
    """Issue a key (printed once)."""
    try:
        key_id, key = service().create_key(tenant_id, label=label)
    except (KeyError, LookupError, ValueError) as error:
        _fail(error)
    _show_new_key(key_id, key)


@key_app.command("list")
def key_list(tenant_id: str) -> None:
    """List a tenant's keys (ids and status, never keys)."""
    for record in service().list_keys(tenant_id):
        typer.echo(
            json.dumps(
                {
                    "key_id": record.key_id,
                    "status": record.status,
                    "label": record.label,
                    "created_at": record.created_at.isoformat(),
                    "last_used_at": record.last_used_at.isoformat()
                    if record.last_used_at
                    else None,
                    "expires_at": record.expires_at.isoformat() if record.expires_at else None,
                    "apigw_key_id": record.apigw_key_id,
                }
            )
        )


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke a key now."""
    try:
        service().revoke_key(key_id)
    except KeyError as error:
        _fail(error)
    typer.echo(f"revoked {key_id}")


@key_app.command("rotate")
def key_rotate(
    key_id: str,
    grace_seconds: Annotated[int, typer.Option(help="Keep the old key this long (0: revoke).")] = 0,
) -> None:
    """Issue a replacement key; the old one is revoked now or after the grace period."""
    try:
        new_key_id, key = service().rotate_key(key_id, grace_seconds=grace_seconds)
    except (KeyError, ValueError) as error:
        _fail(error)
    _show_new_key(new_key_id, key)


@key_app.command("sweep")
def key_sweep() -> None:
    """Revoke keys whose rotation grace period has ended (run it from a schedule)."""
    swept = service().sweep_expired_keys()
    typer.echo(json.dumps({"revoked": swept}))


# console -------------------------------------------------------------------------------

#: Where ``console-link`` points when neither ``--console`` nor ``AIMAAS_CONSOLE_URL`` says:
#: the local server's console.
LOCAL_CONSOLE_URL = "http://127.0.0.1:8000/console/"


def console_link(console_url: str, key: str) -> str:
    """The sign-in link: the console's URL with the key in the fragment.

    A fragment is never sent to a server (not to CloudFront, not in a ``Referer``), so the key
    reaches no access log; the console reads it, signs in and removes it from the address bar.
    """
    base = console_url.split("#", 1)[0]
    if "?" in base:
        raise ValueError("the console URL must not carry a query")
    return f"{base}#signin={key}"


@app.command("console-link")
def console_link_command(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant to sign in as.")],
    minutes: Annotated[
        int, typer.Option(min=1, max=60, help="How long the link's key works.")
    ] = 15,
    console: Annotated[
        str | None,
        typer.Option(
            "--console",
            envvar="AIMAAS_CONSOLE_URL",
            help="The console's URL (the console stack's ConsoleUrl output in AWS).",
        ),
    ] = None,
) -> None:
    """Print a short-lived console sign-in link for a tenant (its key in the URL fragment)."""
    url = console or LOCAL_CONSOLE_URL
    try:
        console_link(url, "x")  # refuse a bad URL before issuing anything
        record, key = service().create_console_link_key(tenant, timedelta(minutes=minutes))
    except (KeyError, LookupError, ValueError) as error:
        _fail(error)
    typer.echo(console_link(url, key))
    expires = record.expires_at.isoformat() if record.expires_at else "?"
    typer.echo(f"Key {record.key_id} expires at {expires}; share the link privately.", err=True)


# plan ----------------------------------------------------------------------------------


@plan_app.command("change")
def plan_change(tenant_id: str, plan: str) -> None:
    """Move a tenant to another plan."""
    try:
        tenant = service().change_plan(tenant_id, plan)
    except (KeyError, LookupError) as error:
        _fail(error)
    typer.echo(f"{tenant.tenant_id} is now on plan {tenant.plan}")


@plan_app.command("list")
def plan_list() -> None:
    """The plans of plans.toml."""
    for plan in load_catalog().plans.values():
        typer.echo(
            json.dumps(
                {
                    "plan": plan.name,
                    "monthly_requests": plan.monthly_requests,
                    "rate_limit": plan.throttle.rate_limit,
                    "burst_limit": plan.throttle.burst_limit,
                    "price_multiplier": str(plan.price_multiplier),
                }
            )
        )


# usage, invoice ------------------------------------------------------------------------


@usage_app.command("show")
def usage_show(
    tenant_id: str,
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: month start).")] = None,
    end: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD, exclusive (default: tomorrow).")
    ] = None,
    group_by: Annotated[str, typer.Option(help="Comma-separated: day,model,task,key.")] = "day",
) -> None:
    """A tenant's usage and cost (JSON)."""
    now = datetime.now(UTC)
    since = _day(start) if start else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = _day(end) if end else _day(today().isoformat()) + timedelta(days=1)
    try:
        summary = service().usage(tenant_id, since, until, [g for g in group_by.split(",") if g])
    except (KeyError, ValueError) as error:
        _fail(error)
    typer.echo(
        json.dumps(
            {
                "tenant_id": tenant_id,
                "plan": summary.plan,
                "currency": summary.currency,
                "start": since.isoformat(),
                "end": until.isoformat(),
                "lines": [
                    {
                        **dict(line.group),
                        "unit": line.unit,
                        "calls": line.calls,
                        "units": str(line.units),
                        "cost": str(line.cost),
                    }
                    for line in summary.lines
                ],
                "calls": summary.calls,
                "cost": str(summary.cost),
            },
            indent=2,
        )
    )


@app.command("invoice")
def invoice(
    tenant_id: str,
    month: Annotated[str, typer.Option(help="YYYY-MM (UTC).")],
    fmt: Annotated[
        InvoiceFormat, typer.Option("--format", help="json, csv or html.")
    ] = InvoiceFormat.json,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """A month's invoice as JSON, CSV or HTML (with a daily usage and cost chart)."""
    try:
        document = RENDERERS[fmt.value](service().invoice(tenant_id, month))
    except (KeyError, ValueError) as error:
        _fail(error)
    if output:
        output.write_text(document, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(document, nl=False)


# audit, reconcile ----------------------------------------------------------------------


def _audit_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    # Default: the last year (the DynamoDB log is one partition per month, one query each).
    since = _day(start) if start else datetime.now(UTC) - timedelta(days=366)
    until = _day(end) if end else datetime.now(UTC) + timedelta(seconds=1)
    return since, until


@audit_app.command("list")
def audit_list(
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: a year ago).")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD, exclusive.")] = None,
) -> None:
    """Audit events, oldest first (JSON lines)."""
    since, until = _audit_range(start, end)
    typer.echo(export_events(service().audit_events(since, until), "jsonl"), nl=False)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl or csv.")
    ] = ExportFormat.jsonl,
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD, exclusive.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export audit events as JSON lines or CSV."""
    since, until = _audit_range(start, end)
    document = export_events(service().audit_events(since, until), fmt.value)
    if output:
        output.write_text(document, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(document, nl=False)


@app.command("reconcile")
def reconcile_command(
    key_id: str,
    start: Annotated[str, typer.Option(help="YYYY-MM-DD (inclusive).")],
    end: Annotated[str, typer.Option(help="YYYY-MM-DD (inclusive).")],
) -> None:
    """Compare the ledger with API Gateway GetUsage for one key; exit 2 if over-billed."""
    try:
        report = service().reconcile(key_id, date.fromisoformat(start), date.fromisoformat(end))
    except (KeyError, ValueError, LookupError) as error:
        _fail(error)
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.over_billed_days:
        raise typer.Exit(code=2)
