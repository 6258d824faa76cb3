"""Key format, hashing and header extraction."""

from __future__ import annotations

import pytest

from aimaas.auth import extract_key, generate_key, hash_key, parse_key
from aimaas.auth.keys import KeyRecord, key_matches
from aimaas.errors import Unauthorized


def test_generated_keys_are_long_random_and_carry_their_id() -> None:
    keys = {generate_key()[1] for _ in range(200)}
    assert len(keys) == 200
    key_id, key = generate_key()
    assert key.startswith(f"amk_{key_id}_")
    assert len(key.split("_", 2)[2]) >= 40  # 256 bits, url-safe base64
    assert parse_key(key) == key_id
    for bad in (
        "",
        "amk_",
        "sk_live_abc",
        f"amk_{key_id}",
        f"amk_{key_id.upper()}_{'a' * 43}",
        f"amk_{key_id}_short",
        key + " ",
    ):
        assert parse_key(bad) is None


def test_hash_is_peppered_and_compared_in_constant_time() -> None:
    _, key = generate_key()
    stored = hash_key(key, "pepper-1")
    assert stored.startswith("hmac-sha256:") and key not in stored
    assert key_matches(key, stored, "pepper-1")
    assert not key_matches(key, stored, "pepper-2")
    assert not key_matches(generate_key()[1], stored, "pepper-1")


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "K"},
        {"X-API-Key": "K"},
        {"Authorization": "Bearer K"},
        {"authorization": "bearer   K "},
        {"x-api-key": "K", "Authorization": "Bearer K"},  # the same key twice is fine
        {"x-api-key": "K", "Authorization": "Basic dXNlcjpwYXNz"},  # other schemes ignored
    ],
)
def test_extract_key_accepts_both_headers(headers: dict[str, str]) -> None:
    assert extract_key(headers) == "K"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Unsupported Authorization scheme"),
        ({"Authorization": "Bearer "}, "empty Bearer"),
        ({"x-api-key": "K1", "Authorization": "Bearer K2"}, "Two different API keys"),
    ],
)
def test_extract_key_refuses_with_401(headers: dict[str, str], message: str) -> None:
    with pytest.raises(Unauthorized, match=message) as caught:
        extract_key(headers)
    assert caught.value.status == 401
    assert "K1" not in caught.value.message and "K2" not in caught.value.message


def test_key_record_usable_window() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = KeyRecord(key_id="k", tenant_id="t", key_hash="h")
    assert record.usable(now)
    assert not KeyRecord(key_id="k", tenant_id="t", key_hash="h", status="revoked").usable(now)
    grace = KeyRecord(key_id="k", tenant_id="t", key_hash="h", expires_at=now + timedelta(1))
    assert grace.usable(now) and not grace.usable(now + timedelta(days=2))


def test_settings_repr_never_shows_the_pepper() -> None:
    from aimaas.config import Settings

    settings = Settings.from_env({"AIMAAS_KEY_PEPPER": "pepper-value-123"})
    assert settings.extra["AIMAAS_KEY_PEPPER"] == "pepper-value-123"
    assert "pepper-value-123" not in repr(settings)
