"""Auth: API keys, tenants and the request check shared by local mode, the app and the authorizer.

Public face::

    from aimaas.auth import Principal, Authenticator, build_authenticator
    from aimaas.auth import KeyStore, build_key_store, Tenant, KeyRecord

- :class:`Principal`: the caller (tenant, key id, plan).
- :class:`Authenticator`: ``authenticate(headers) -> Principal`` (401/403/429, see
  :mod:`aimaas.auth.authenticator`).
- :class:`KeyStore`: the port; adapters ``sqlite`` and ``dynamodb`` chosen by
  :func:`build_key_store` from ``Settings.key_store``. Keys are stored only as HMAC-SHA256
  hashes (see :mod:`aimaas.auth.keys`).

Standard library, boto3 and the core only: the authorizer zip imports this package.
"""

from aimaas.auth.authenticator import Authenticator, Principal, build_authenticator, extract_key
from aimaas.auth.keys import (
    KEY_STORES,
    KeyRecord,
    KeyStore,
    Tenant,
    build_key_store,
    generate_key,
    hash_key,
    issue_key,
    parse_key,
    revoke_key,
)

__all__ = [
    "KEY_STORES",
    "Authenticator",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "Tenant",
    "build_authenticator",
    "build_key_store",
    "extract_key",
    "generate_key",
    "hash_key",
    "issue_key",
    "parse_key",
    "revoke_key",
]
