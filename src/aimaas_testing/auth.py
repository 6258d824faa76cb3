"""Test doubles for the authenticator port."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aimaas.auth import Principal


@dataclass(frozen=True)
class FixedAuthenticator:
    """Takes every request as coming from ``principal``, with no limits: for tests of what
    happens after authentication (routing, model stores, backends)."""

    principal: Principal

    def identify(self, headers: Mapping[str, str]) -> Principal:
        return self.principal

    def enforce_limits(self, principal: Principal) -> None:
        """No limits."""
