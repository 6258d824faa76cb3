"""The demo tenant and key of local mode, created once and reused across restarts.

The tenant and key are made through :class:`aimaas_admin.AdminService`, so the audit log
records them. Keys are stored only as hashes, so the demo key itself is kept in a file beside
the SQLite database (mode 0600, in the ignored ``.aimaas/`` folder) to be printed again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from aimaas.auth import KeyStore, parse_key
from aimaas.auth.keys import now_utc
from aimaas.config import Settings

DEMO_FILE = "demo-key.json"


@dataclass(frozen=True)
class DemoCredentials:
    """The demo tenant and its API key."""

    tenant_id: str
    key: str


def _usable(store: KeyStore, tenant_id: str, key: str) -> bool:
    key_id = parse_key(key)
    record = store.get_key(key_id) if key_id else None
    tenant = store.get_tenant(tenant_id)
    return (
        record is not None
        and record.tenant_id == tenant_id
        and record.usable(now_utc())
        and tenant is not None
        and tenant.status == "active"
    )


def ensure_demo_key(settings: Settings, plan: str = "pro") -> DemoCredentials:
    """Reuse the saved demo key if it still works; otherwise create a tenant and a key.

    Parameters
    ----------
    settings
        Local settings (``sqlite`` key store).
    plan
        Plan of a newly created demo tenant.

    Returns
    -------
    DemoCredentials
        The tenant id and the full API key.
    """
    from aimaas_admin import AdminService  # audited tenant and key creation

    path = Path(settings.sqlite_path).parent / DEMO_FILE
    admin = AdminService(settings, actor="local-serve")
    try:
        if path.is_file():
            saved = json.loads(path.read_text())
            if _usable(admin.store, saved["tenant_id"], saved["key"]):
                return DemoCredentials(saved["tenant_id"], saved["key"])
        tenant = admin.create_tenant("Local demo", plan=plan)
        _, key = admin.create_key(tenant.tenant_id, label="local demo")
    finally:
        admin.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"tenant_id": tenant.tenant_id, "key": key}, handle)
    return DemoCredentials(tenant.tenant_id, key)
