"""The demo tenant and key of local mode, created once and reused across restarts.

Keys are stored only as hashes, so the demo key itself is kept in a file beside the SQLite
database (mode 0600, in the ignored ``.aimaas/`` folder) to be printed again next time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from aimaas.auth import KeyStore, Tenant, build_key_store, issue_key, parse_key
from aimaas.auth.keys import new_tenant_id, now_utc, pepper_from
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
    path = Path(settings.sqlite_path).parent / DEMO_FILE
    store = build_key_store(settings)
    try:
        if path.is_file():
            saved = json.loads(path.read_text())
            if _usable(store, saved["tenant_id"], saved["key"]):
                return DemoCredentials(saved["tenant_id"], saved["key"])
        tenant_id = new_tenant_id()
        store.create_tenant(
            Tenant(tenant_id=tenant_id, name="Local demo", plan=plan, created_at=now_utc())
        )
        _, key = issue_key(store, tenant_id, pepper_from(settings), label="local demo")
    finally:
        store.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"tenant_id": tenant_id, "key": key}, handle)
    return DemoCredentials(tenant_id, key)
