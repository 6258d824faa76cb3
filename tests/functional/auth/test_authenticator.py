"""401/403/429 from the one authenticator, on both back ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from aimaas.auth import Authenticator, Principal
from aimaas.errors import Forbidden, QuotaExceeded, Unauthorized
from aimaas.plans import load_catalog
from aimaas_admin import AdminService
from aimaas_admin.provisioner import NoProvisioner
from aimaas_testing.metering import sample_record


def test_both_headers_resolve_the_same_principal(world) -> None:
    tenant = world.admin.create_tenant("Acme", plan="pro")
    key_id, key = world.admin.create_key(tenant.tenant_id)
    expected = Principal(tenant_id=tenant.tenant_id, key_id=key_id, plan="pro")
    assert world.authenticator.authenticate({"x-api-key": key}) == expected
    assert world.authenticator.authenticate({"Authorization": f"Bearer {key}"}) == expected
    assert world.authenticator.authenticate({"X-Api-Key": key, "authorization": f"bearer {key}"})
    assert world.store.get_key(key_id).last_used_at is not None


def test_401_cases(world) -> None:
    tenant = world.admin.create_tenant("Acme")
    _, key = world.admin.create_key(tenant.tenant_id)
    _, other = world.admin.create_key(tenant.tenant_id)
    for headers in (
        {},
        {"x-api-key": "not-a-key"},
        {"Authorization": "Token abc"},
        {"x-api-key": key, "Authorization": f"Bearer {other}"},
    ):
        with pytest.raises(Unauthorized) as caught:
            world.authenticator.authenticate(headers)
        assert caught.value.status == 401
        assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_403_unknown_wrong_secret_revoked_suspended(world) -> None:
    tenant = world.admin.create_tenant("Acme")
    key_id, key = world.admin.create_key(tenant.tenant_id)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # right id, wrong secret
    unknown = f"amk_{'z' * 12}_{'A' * 43}"
    for bad in (forged, unknown):
        with pytest.raises(Forbidden):
            world.authenticator.authenticate({"x-api-key": bad})
    world.admin.set_tenant_status(tenant.tenant_id, "suspended")
    with pytest.raises(Forbidden, match="not active"):
        world.authenticator.authenticate({"x-api-key": key})
    world.admin.set_tenant_status(tenant.tenant_id, "active")
    assert world.authenticator.authenticate({"x-api-key": key}).key_id == key_id
    world.admin.revoke_key(key_id)
    with pytest.raises(Forbidden) as caught:
        world.authenticator.authenticate({"x-api-key": key})
    assert caught.value.status == 403


def test_rotation_with_and_without_grace(world) -> None:
    tenant = world.admin.create_tenant("Acme")
    old_id, old = world.admin.create_key(tenant.tenant_id)
    new_id, new = world.admin.rotate_key(old_id)  # immediate
    assert new_id != old_id
    with pytest.raises(Forbidden):
        world.authenticator.authenticate({"x-api-key": old})
    assert world.authenticator.authenticate({"x-api-key": new}).key_id == new_id

    newer_id, newer = world.admin.rotate_key(new_id, grace_seconds=3600)
    # Both work during the grace period...
    assert world.authenticator.authenticate({"x-api-key": new}).key_id == new_id
    assert world.authenticator.authenticate({"x-api-key": newer}).key_id == newer_id
    # ...and the old one stops after it.
    later = Authenticator(
        world.store,
        world.ledger,
        pepper="test-pepper",
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),
    )
    with pytest.raises(Forbidden):
        later.authenticate({"x-api-key": new})
    assert later.authenticate({"x-api-key": newer}).key_id == newer_id
    with pytest.raises(ValueError, match="revoked"):
        world.admin.rotate_key(old_id)
    # The sweep revokes keys whose grace has ended (store and gateway tidy-up).
    later_admin = AdminService(
        world.settings,
        store=world.store,
        ledger=world.ledger,
        audit=world.admin.audit,
        provisioner=NoProvisioner(),
        actor="pytest",
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),
    )
    assert later_admin.sweep_expired_keys() == [new_id]
    assert world.store.get_key(new_id).status == "revoked"
    assert world.store.get_key(newer_id).status == "active"


def test_429_when_the_hard_monthly_limit_is_reached(world) -> None:
    tenant = world.admin.create_tenant("Acme", plan="free")
    key_id, key = world.admin.create_key(tenant.tenant_id)
    limit = load_catalog().plan("free").monthly_requests
    now = datetime(2026, 6, 30, 23, 59, 30, tzinfo=UTC)
    clocked = Authenticator(world.store, world.ledger, pepper="test-pepper", clock=lambda: now)
    # Fill the month's counter to one below the limit through the ledger itself (the DynamoDB
    # variant writes the counter with the same UpdateItem ADD the ledger uses).
    record = sample_record("seed", tenant_id=tenant.tenant_id, key_id=key_id, timestamp=now)
    assert world.ledger.put(record)
    world.bump_month_counter(tenant.tenant_id, "2026-06", limit - 2)
    assert world.ledger.month_calls(tenant.tenant_id, now) == limit - 1
    assert clocked.authenticate({"x-api-key": key}).tenant_id == tenant.tenant_id
    world.ledger.put(sample_record("last", tenant_id=tenant.tenant_id, timestamp=now))
    with pytest.raises(QuotaExceeded) as caught:
        clocked.authenticate({"x-api-key": key})
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "30"  # to 2026-07-01T00:00:00Z
    # A new month starts from zero.
    july = Authenticator(
        world.store, world.ledger, pepper="test-pepper", clock=lambda: now + timedelta(minutes=1)
    )
    assert july.authenticate({"x-api-key": key}).key_id == key_id


def test_last_used_is_written_only_when_stale(world) -> None:
    tenant = world.admin.create_tenant("Acme")
    key_id, key = world.admin.create_key(tenant.tenant_id)
    with mock.patch.object(world.store, "touch_key", wraps=world.store.touch_key) as touch:
        for _ in range(5):
            world.authenticator.authenticate({"x-api-key": key})
    assert touch.call_count == 1
    first = world.store.get_key(key_id).last_used_at
    later = Authenticator(
        world.store,
        world.ledger,
        pepper="test-pepper",
        clock=lambda: datetime.now(UTC) + timedelta(minutes=6),
    )
    later.authenticate({"x-api-key": key})
    assert world.store.get_key(key_id).last_used_at > first
