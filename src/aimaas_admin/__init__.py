"""Administration: tenants, keys, plans, usage, invoices, audit and reconciliation.

Command line: ``python -m aimaas_admin --help`` (see :mod:`aimaas_admin.cli`).

Python API (what local mode uses to make a demo tenant and key)::

    from aimaas_admin import AdminService
    from aimaas.config import Settings

    admin = AdminService(Settings.from_env(), actor="local-serve")
    tenant = admin.create_tenant("Demo", plan="free")          # -> aimaas.auth.Tenant
    key_id, key = admin.create_key(tenant.tenant_id)            # key: show once, never log
    admin.revoke_key(key_id)
    new_key_id, new_key = admin.rotate_key(key_id, grace_seconds=3600)
    admin.change_plan(tenant.tenant_id, "pro")
    admin.usage(tenant.tenant_id, start, end, ["day", "model"])  # -> UsageSummary
    admin.invoice(tenant.tenant_id, "2026-11")                   # -> Invoice (render_html...)
    admin.audit_events(start, end)                               # -> list[AuditEvent]

``AdminService`` picks its adapters from ``Settings`` like the runtime does: with
``key_store="sqlite"`` everything lives in ``settings.sqlite_path``; with ``dynamodb`` the three
tables and API Gateway (API keys in the usage plan ``aimaas-<stage>-<plan>``) are used. Every
call is written to the append-only audit log. This package is for operators and local mode:
it may import jinja2/matplotlib/typer lazily; the Lambdas never import it.
"""

from aimaas_admin.service import AdminService

__all__ = ["AdminService"]
