"""API keys, tenants and the key store port (standard library only).

Key format
----------
``amk_<key id>_<secret>``: ``amk_`` marks an aimaas key (secret scanners can match it), the
key id is 12 non-secret characters ``[a-z0-9]`` that name the key in logs, the CLI and the
ledger, and the secret is ``secrets.token_urlsafe(32)`` (256 random bits, 43 characters).
The whole key is shown once, when it is issued. The store keeps only
``hmac-sha256:<hex>`` of the whole key, keyed with a pepper (:mod:`aimaas.auth.pepper`: in AWS
an SSM SecureString), so a leaked table does not give working keys, and a lookup is one read by
key id followed by a constant-time comparison.

Rotation issues a new key and either revokes the old one at once or lets it live for a grace
period (``expires_at``). Revocation is immediate: the authenticator reads the key's status
with a strongly consistent read on every call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from aimaas.storage import Stored, now_utc

KEY_PREFIX = "amk_"
KEY_ID_LENGTH = 12
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_PATTERN = re.compile(r"^amk_([a-z0-9]{12})_([A-Za-z0-9_-]{40,128})$")
#: Used when no pepper is configured, for a SQLite key store only (see aimaas.auth.pepper).
DEFAULT_PEPPER = "aimaas-local-pepper"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TenantStatus = Literal["active", "suspended"]
KeyStatus = Literal["active", "revoked"]


def new_key_id() -> str:
    """A fresh non-secret key id."""
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def new_tenant_id() -> str:
    """A fresh tenant id (``t_`` + 16 hex characters)."""
    return "t_" + secrets.token_hex(8)


def generate_key(key_id: str | None = None) -> tuple[str, str]:
    """Make a new API key.

    Returns
    -------
    tuple of str
        ``(key_id, key)``; ``key`` is the secret to show once and never store.
    """
    key_id = key_id or new_key_id()
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_key(key: str) -> str | None:
    """The key id of a well-formed key, or None if ``key`` is not an aimaas key."""
    match = _KEY_PATTERN.match(key)
    return match.group(1) if match else None


def hash_key(key: str, pepper: str) -> str:
    """The stored form of a key: ``hmac-sha256:<hex>`` keyed with ``pepper``."""
    digest = hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def usage_identifier(key_id: str, pepper: str) -> str:
    """The value of a key's API Gateway API key: the usage-plan bucket the authorizer names.

    Derived, never stored: HMAC-SHA256 of the key id under the pepper, 64 hex characters (API
    Gateway takes 20 to 128). The admin tooling gives the gateway key this value; the authorizer
    computes it again, so it needs neither a stored copy nor ``apigateway:GET`` on the region's
    API keys. It only names a usage-plan bucket (with the API's key source AUTHORIZER, API
    Gateway never accepts it from a client), and without the pepper nobody can compute it.
    """
    message = f"usage-identifier:{key_id}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def key_matches(key: str, stored_hash: str, pepper: str) -> bool:
    """Constant-time check of ``key`` against its stored hash."""
    return hmac.compare_digest(hash_key(key, pepper), stored_hash)


@dataclass(frozen=True)
class Tenant(Stored):
    """A customer account."""

    tenant_id: str
    name: str
    plan: str
    status: TenantStatus = "active"
    created_at: datetime = _EPOCH


@dataclass(frozen=True)
class KeyRecord(Stored):
    """What the store knows about one key (never the key itself).

    ``apigw_key_id`` links the key to its API Gateway API key (AWS only), whose value is
    :func:`usage_identifier` (derived, not stored). ``usage_identifier`` is only read from
    records written before that: their gateway key has a random value, kept here.
    """

    key_id: str
    tenant_id: str
    key_hash: str
    status: KeyStatus = "active"
    created_at: datetime = _EPOCH
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    label: str = ""
    apigw_key_id: str | None = None
    usage_identifier: str | None = None

    def usable(self, at: datetime) -> bool:
        """Active and not past its rotation grace period."""
        return self.status == "active" and (self.expires_at is None or at < self.expires_at)


class KeyStore(ABC):
    """Port: tenants and keys. Adapters: ``sqlite`` and ``dynamodb`` (see :data:`KEY_STORES`)."""

    @abstractmethod
    def create_tenant(self, tenant: Tenant) -> None:
        """Store a new tenant; ValueError if the id exists."""

    @abstractmethod
    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """One tenant, or None."""

    @abstractmethod
    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id."""

    @abstractmethod
    def save_tenant(self, tenant: Tenant) -> None:
        """Overwrite an existing tenant (plan or status change); KeyError if unknown."""

    @abstractmethod
    def create_key(self, record: KeyRecord) -> None:
        """Store a new key record; ValueError if the key id exists."""

    @abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None:
        """One key record, read strongly consistently, or None."""

    @abstractmethod
    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        """The tenant's keys, oldest first."""

    @abstractmethod
    def save_key(self, record: KeyRecord) -> None:
        """Overwrite an existing key record; KeyError if unknown."""

    @abstractmethod
    def touch_key(self, key_id: str, at: datetime, min_interval_s: int = 300) -> None:
        """Set ``last_used_at`` if it is older than ``min_interval_s`` (best effort)."""

    def close(self) -> None:  # noqa: B027 - optional for adapters without resources
        """Release connections."""


def issue_key(
    store: KeyStore, tenant_id: str, pepper: str, *, label: str = "", at: datetime | None = None
) -> tuple[KeyRecord, str]:
    """Create and store a key for ``tenant_id``.

    Returns
    -------
    tuple
        ``(record, key)``: the stored record and the key to show once.

    Raises
    ------
    KeyError
        Unknown tenant.
    """
    if store.get_tenant(tenant_id) is None:
        raise KeyError(f"unknown tenant {tenant_id!r}")
    key_id, key = generate_key()
    record = KeyRecord(
        key_id=key_id,
        tenant_id=tenant_id,
        key_hash=hash_key(key, pepper),
        created_at=at or now_utc(),
        label=label,
    )
    store.create_key(record)
    return record, key


def revoke_key(store: KeyStore, key_id: str, *, at: datetime | None = None) -> KeyRecord:
    """Revoke a key now (idempotent). KeyError if unknown."""
    record = store.get_key(key_id)
    if record is None:
        raise KeyError(f"unknown key {key_id!r}")
    revoked = replace(record, status="revoked", expires_at=record.expires_at or at or now_utc())
    store.save_key(revoked)
    return revoked
