"""Auth: API keys, tenants and the request check shared by local mode, the app and the authorizer.

Public face::

    from aimaas.auth import Principal, Authenticator, KeyStore, Tenant, KeyRecord

- :class:`Principal`: the caller (tenant, key id, plan).
- :class:`Authenticator`: ``authenticate(headers) -> Principal`` (401/403/429, see
  :mod:`aimaas.auth.authenticator`).
- :class:`KeyStore`: the port; adapters ``sqlite`` and ``dynamodb`` (:mod:`aimaas.auth.sqlite`,
  :mod:`aimaas.auth.dynamodb`), chosen by :func:`aimaas.wiring.build_key_store`. Keys are
  stored only as HMAC-SHA256 hashes (see :mod:`aimaas.auth.keys`).

Standard library, boto3 and the core only: the authorizer zip imports this package.
"""

from aimaas.auth.authenticator import Authenticator, Principal, extract_key
from aimaas.auth.keys import (
    KeyRecord,
    KeyStore,
    Tenant,
    generate_key,
    hash_key,
    issue_key,
    parse_key,
    revoke_key,
)

__all__ = [
    "Authenticator",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "Tenant",
    "extract_key",
    "generate_key",
    "hash_key",
    "issue_key",
    "parse_key",
    "revoke_key",
]
