"""Local mode's demo credentials and settings (the server itself is tested over HTTP)."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

from aimaas.config import Settings
from aimaas.wiring import build_authenticator, build_ledger
from aimaas_admin import AdminService
from aimaas_local.cli import banner, local_settings
from aimaas_local.demo import DEMO_FILE, ensure_demo_key


def test_demo_key_is_reused_and_replaced_when_revoked(tmp_path: Path) -> None:
    settings = Settings(sqlite_path=tmp_path / "aimaas.db")
    first = ensure_demo_key(settings)
    assert ensure_demo_key(settings) == first  # a restart prints the same key
    saved = tmp_path / DEMO_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    ledger = build_ledger(settings)
    principal = build_authenticator(settings, ledger).authenticate(
        {"authorization": f"Bearer {first.key}"}
    )
    assert principal.tenant_id == first.tenant_id
    admin = AdminService(settings, actor="test")
    admin.revoke_key(first.key.split("_")[1])
    admin.close()
    second = ensure_demo_key(settings)
    assert second.key != first.key
    ledger.close()


def test_local_settings_force_local_adapters(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIMAAS_MODEL_STORE", "s3")
    monkeypatch.setenv("AIMAAS_TRUST_AUTHORIZER", "true")
    args = argparse.Namespace(registry=str(tmp_path / "reg"), db=str(tmp_path / "x.db"))
    settings = local_settings(args)
    assert settings.model_store == "folder" and settings.key_store == "sqlite"
    assert settings.trust_authorizer is False  # no API Gateway in front: check every key
    assert settings.registry_path == (tmp_path / "reg").resolve()
    key_file = tmp_path / "demo-key.json"
    text = banner("http://127.0.0.1:8000", "amk_demo", settings.registry_path, key_file)
    assert text.count("amk_demo") == 1  # shown once (it was printed six times)
    assert "Bearer $AIMAAS_KEY" in text and "Content-Type: application/json" in text
    hidden = banner("http://127.0.0.1:8000", None, settings.registry_path, key_file)
    assert "amk_" not in hidden and str(key_file) in hidden
