"""Keys at the front door: missing, wrong, Bearer, revoked; the same on every target."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tests.e2e.support import ENGLISH, AdminCli, Target, Tenant, wait_until

EMBED = "/v1/embeddings"
BODY = {"input": ENGLISH}


def test_missing_key_is_refused(http: requests.Session, target: Target) -> None:
    # The platform says 401 (no credentials); API Gateway says 403 before the platform sees it.
    response = http.post(target.url(EMBED), json=BODY, timeout=target.timeout_s)
    assert response.status_code == target.missing_key_status, response.text
    if target.name == "local":
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _tampered(key: str) -> str:
    """The same key with its last character changed: well formed, right key id, wrong secret."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.mark.parametrize("kind", ["wrong-secret", "unknown-id"])
def test_wrong_key_is_forbidden(
    http: requests.Session, target: Target, api_key: str, kind: str
) -> None:
    prefix, _, rest = api_key.partition("_")
    key_id, _, secret = rest.partition("_")
    wrong = _tampered(api_key) if kind == "wrong-secret" else f"{prefix}_{key_id[::-1]}_{secret}"
    response = http.post(
        target.url(EMBED), json=BODY, headers={"x-api-key": wrong}, timeout=target.timeout_s
    )
    assert response.status_code == 403, response.text
    if target.name == "local":
        assert response.json()["error"]["code"] == "forbidden"


def test_malformed_key(http: requests.Session, target: Target) -> None:
    # Not a platform key at all: the platform says 401 (not a credential); API Gateway says 403.
    response = http.post(
        target.url(EMBED), json=BODY, headers={"x-api-key": "not-a-key"}, timeout=target.timeout_s
    )
    assert response.status_code == (401 if target.name == "local" else 403), response.text


def test_valid_key_in_x_api_key(call: Callable[..., requests.Response]) -> None:
    response = call("POST", EMBED, json=BODY)
    assert response.status_code == 200, response.text
    assert response.headers.get("X-Request-Id")


def test_bearer_key(http: requests.Session, target: Target, api_key: str) -> None:
    """Bearer works where the target's key source reads it; elsewhere it is refused, not ignored."""
    response = http.post(
        target.url(EMBED),
        json=BODY,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=target.timeout_s,
    )
    if target.bearer_ok:
        assert response.status_code == 200, response.text
    else:
        # A REST API with the HEADER key source reads only x-api-key (as on AWS).
        assert response.status_code == 403, response.text


def test_revoked_key_stops_working(
    new_tenant: Callable[[], Tenant],
    admin: AdminCli,
    call: Callable[..., requests.Response],
    target: Target,
) -> None:
    tenant = new_tenant()
    assert call("POST", EMBED, key=tenant.key, json=BODY).status_code == 200
    admin.revoke(tenant.key_id)

    def refused() -> bool:
        return call("POST", EMBED, key=tenant.key, json=BODY).status_code == 403

    took = wait_until(refused, within_s=target.revoke_within_s, every_s=1.0)
    print(f"revoked key refused after {took:.1f} s on {target.name}")
    # Once refused it stays refused (no flapping between cached and fresh answers).
    assert refused()
