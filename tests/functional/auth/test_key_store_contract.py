"""The key-store contract, run against both adapters (SQLite and DynamoDB on moto)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aimaas.auth import KeyRecord, KeyStore, Tenant, hash_key, issue_key, revoke_key
from aimaas.config import Settings
from aimaas.wiring import build_key_store

T0 = datetime(2026, 4, 1, 8, tzinfo=UTC)


def test_tenants_roundtrip(store: KeyStore) -> None:
    tenant = Tenant(tenant_id="t_1", name="One", plan="free", created_at=T0)
    store.create_tenant(tenant)
    store.create_tenant(Tenant(tenant_id="t_0", name="Zero", plan="pro", created_at=T0))
    assert store.get_tenant("t_1") == tenant
    assert store.get_tenant("t_missing") is None
    with pytest.raises(ValueError, match="already exists"):
        store.create_tenant(tenant)
    store.save_tenant(replace(tenant, plan="pro", status="suspended"))
    assert store.get_tenant("t_1").plan == "pro"
    assert store.get_tenant("t_1").status == "suspended"
    assert [t.tenant_id for t in store.list_tenants()] == ["t_0", "t_1"]
    with pytest.raises(KeyError):
        store.save_tenant(replace(tenant, tenant_id="t_missing"))


def test_keys_are_stored_as_hashes_only(store: KeyStore) -> None:
    store.create_tenant(Tenant(tenant_id="t_1", name="One", plan="free", created_at=T0))
    record, key = issue_key(store, "t_1", "pepper", label="ci", at=T0)
    stored = store.get_key(record.key_id)
    assert stored == record
    assert stored.key_hash == hash_key(key, "pepper")
    assert key not in repr(stored)
    with pytest.raises(KeyError, match="unknown tenant"):
        issue_key(store, "t_missing", "pepper")
    with pytest.raises(ValueError, match="already exists"):
        store.create_key(record)


def test_list_revoke_touch(store: KeyStore) -> None:
    store.create_tenant(Tenant(tenant_id="t_1", name="One", plan="free", created_at=T0))
    first, _ = issue_key(store, "t_1", "p", at=T0)
    second, _ = issue_key(store, "t_1", "p", at=T0 + timedelta(seconds=1))
    assert [k.key_id for k in store.list_keys("t_1")] == [first.key_id, second.key_id]
    assert store.list_keys("t_other") == []
    revoked = revoke_key(store, first.key_id, at=T0 + timedelta(hours=1))
    assert store.get_key(first.key_id).status == "revoked" == revoked.status
    assert not revoked.usable(T0 + timedelta(hours=1))
    with pytest.raises(KeyError):
        revoke_key(store, "nokeyhere000")
    store.touch_key(second.key_id, T0 + timedelta(minutes=10))
    assert store.get_key(second.key_id).last_used_at == T0 + timedelta(minutes=10)
    store.touch_key(second.key_id, T0 + timedelta(minutes=11))  # within 5 minutes: no write
    assert store.get_key(second.key_id).last_used_at == T0 + timedelta(minutes=10)
    store.touch_key(second.key_id, T0 + timedelta(minutes=20))
    assert store.get_key(second.key_id).last_used_at == T0 + timedelta(minutes=20)
    with pytest.raises(KeyError):
        store.save_key(KeyRecord(key_id="nokeyhere000", tenant_id="t_1", key_hash="h"))


def test_build_key_store_by_name(tmp_path) -> None:
    built = build_key_store(Settings(key_store="sqlite", sqlite_path=tmp_path / "k.db"))
    assert type(built).__name__ == "SqliteKeyStore"
    with pytest.raises(ValueError, match="unknown key store"):
        build_key_store(Settings(key_store="ldap"))
    with pytest.raises(ValueError, match="AIMAAS_TENANTS_TABLE"):
        build_key_store(Settings(key_store="dynamodb"))


def test_pepper_from_ssm_parameter_and_lazy_in_the_authenticator() -> None:
    import boto3

    from aimaas.auth.pepper import clear_cache
    from aimaas.wiring import build_authenticator, pepper_from
    from aimaas_testing.metering import moto_tables

    with moto_tables() as env:
        boto3.client("ssm").put_parameter(
            Name="/aimaas/test/key-pepper", Value="from-ssm", Type="SecureString"
        )
        clear_cache()
        settings = Settings.from_env(
            {
                **env,
                "AIMAAS_KEY_PEPPER_PARAMETER": "/aimaas/test/key-pepper",
                "AIMAAS_KEY_PEPPER": "ignored",
            }
        )
        assert pepper_from(settings) == "from-ssm"
        clear_cache()
        from aimaas.wiring import build_ledger

        authenticator = build_authenticator(settings, build_ledger(settings))
        assert callable(authenticator._pepper)  # nothing read at construction
        assert authenticator.pepper == "from-ssm"
        clear_cache()
