"""Security properties checked on the real server and the real stores.

- Tenant isolation: a tenant sees only its own usage, cannot ask for another's, and the same
  ``Idempotency-Key`` from two tenants bills each of them once (ledger keys are per tenant).
- Keys at rest: only HMAC hashes are stored; the key and its secret part are not in the bytes of
  the SQLite database (and its WAL), nor in any item of the DynamoDB tables (moto).
- Logs: the server's whole output at DEBUG, captured during a run with text, image and audio
  requests and bad keys, contains no key, no request text, and no image or audio bytes.
- Inputs are not stored: the canary text and media bytes are nowhere in the server's files.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from aimaas.config import Settings
from tests.functional.pressure.support import (
    ROOT,
    LiveServer,
    assert_error_shape,
    image_bytes,
    wav,
)

CANARY_TEXT = "zebra canary quokka 7f3a9 marmalade"
CANARY_WORD = "quokka 7f3a9"


def _secret(key: str) -> str:
    """The secret part of an ``amk_<id>_<secret>`` key (what a leak would expose)."""
    return key.split("_", 2)[2]


def _key_forms(key: str) -> list[bytes]:
    secret = _secret(key)
    return [key.encode(), secret.encode(), base64.b64encode(key.encode())]


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# ---- tenant isolation ---------------------------------------------------------------------------


def test_tenants_see_only_their_own_usage(live_server: LiveServer) -> None:
    a, b = live_server.tenants["a"], live_server.tenants["b"]
    with live_server.client("a") as client_a, live_server.client("b") as client_b:
        for i in range(3):
            response = client_a.post(
                "/v1/embeddings", json={"input": "a"}, headers={"Idempotency-Key": f"iso-a-{i}"}
            )
            assert response.status_code == 200
        # The same Idempotency-Key from the other tenant is a different call of its own.
        response = client_b.post(
            "/v1/embeddings", json={"input": "b"}, headers={"Idempotency-Key": "iso-a-0"}
        )
        assert response.status_code == 200

        usage_a = client_a.get("/v1/usage", params={"group_by": "model"}).json()
        usage_b = client_b.get("/v1/usage", params={"group_by": "model"}).json()
        assert usage_a["tenant_id"] == a.tenant_id and usage_b["tenant_id"] == b.tenant_id
        assert b.tenant_id not in json.dumps(usage_a) and a.tenant_id not in json.dumps(usage_b)

        # Asking for the other tenant's usage is refused, whatever the spelling.
        for params in ({"tenant_id": b.tenant_id}, {"tenant_id": b.tenant_id.upper()}):
            refused = client_a.get("/v1/usage", params=params)
            assert refused.status_code == 403, refused.text
            assert_error_shape(refused)

    ids_a = {r.request_id for r in live_server.records("a")}
    ids_b = {r.request_id for r in live_server.records("b")}
    assert {"iso-a-0", "iso-a-1", "iso-a-2"} <= ids_a
    assert "iso-a-0" in ids_b and not {"iso-a-1", "iso-a-2"} & ids_b
    assert usage_a["month_to_date_calls"] >= 3
    assert usage_b["month_to_date_calls"] == len(ids_b)


# ---- keys at rest -------------------------------------------------------------------------------


def test_sqlite_holds_only_key_hashes(live_server: LiveServer) -> None:
    with live_server.client("a") as client:  # a call, so last_used_at etc. are written too
        assert client.get("/v1/models").status_code == 200
    files = [p for p in live_server.db_path.parent.iterdir() if p.name.startswith("aimaas.db")]
    assert files, "no database files found"
    blob = b"".join(p.read_bytes() for p in files)
    assert b"hmac-sha256:" in blob, "key hashes should be in the database"
    for alias, creds in live_server.tenants.items():
        for form in _key_forms(creds.key):
            assert form not in blob, f"tenant {alias}'s key is stored in clear"


def test_dynamodb_holds_only_key_hashes() -> None:
    import boto3

    from aimaas.wiring import build_authenticator, build_ledger
    from aimaas_admin.provisioner import NoProvisioner
    from aimaas_admin.service import AdminService
    from aimaas_testing.metering import moto_tables

    with moto_tables() as env:
        settings = Settings.from_env(env)
        admin = AdminService(settings, provisioner=NoProvisioner(), actor="t", host="h")
        tenant = admin.create_tenant("dynamo tenant", plan="pro")
        key_id, key = admin.create_key(tenant.tenant_id, label="scan me")
        rotated_id, rotated = admin.rotate_key(key_id, grace_seconds=60)
        # The key works (so the stored hash is the real one), then every table is scanned.
        principal = build_authenticator(settings, build_ledger(settings)).authenticate(
            {"x-api-key": rotated}
        )
        assert principal.tenant_id == tenant.tenant_id
        client = boto3.client("dynamodb")
        dump = ""
        for table in env.values():
            if table.endswith(("tenants", "usage", "audit")):
                items = client.scan(TableName=table)["Items"]
                dump += json.dumps(items)
        assert "hmac-sha256:" in dump
        assert key_id in dump and rotated_id in dump  # ids are stored, keys are not
        for secret_key in (key, rotated):
            for form in _key_forms(secret_key):
                assert form.decode() not in dump


# ---- logs and stored inputs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def traffic(live_server: LiveServer) -> dict[str, bytes]:
    """Send text, image and audio requests (good and bad) and return the canary payloads."""
    image = image_bytes("RGB", size=(97, 89))
    audio = wav(1.0, freq=523.25)
    a, b = live_server.tenants["a"], live_server.tenants["b"]
    with live_server.client("a") as client:
        assert client.post("/v1/embeddings", json={"input": CANARY_TEXT}).status_code == 200
        assert client.post("/v1/text-classification", json={"text": CANARY_TEXT}).is_success
        response = client.post(
            "/v1/text-classification",
            json={"text": CANARY_TEXT, "labels": ["canary label one", "canary label two"]},
        )
        assert response.status_code == 200
        assert client.post(
            "/v1/image-classification", content=image, headers={"Content-Type": "image/png"}
        ).is_success
        assert client.post(
            "/v1/image-classification", json={"image": base64.b64encode(image).decode()}
        ).is_success
        client.post(
            "/v1/audio-classification", content=audio, headers={"Content-Type": "audio/wav"}
        )
        # Failures log too: a bad body with the canary, a wrong key, two keys, a bad image.
        client.post("/v1/text-classification", json={"text": CANARY_TEXT, "bogus": CANARY_TEXT})
        client.post("/v1/text-classification", content=b'{"text": "' + CANARY_TEXT.encode())
        client.post(
            "/v1/image-classification", content=image[:40], headers={"Content-Type": "image/png"}
        )
    httpx.post(f"{live_server.base_url}/v1/embeddings", json={"input": "x"},
               headers={"x-api-key": a.key[:-3] + "zzz"})  # fmt: skip
    httpx.post(f"{live_server.base_url}/v1/embeddings", json={"input": "x"},
               headers={"x-api-key": a.key, "Authorization": f"Bearer {b.key}"})  # fmt: skip
    # A client that puts its key in the query string is refused (401); the key must not be
    # logged either (access logs write the request line).
    httpx.post(
        f"{live_server.base_url}/v1/embeddings", params={"api_key": b.key}, json={"input": "x"}
    )
    return {"image": image, "audio": audio}


def _log_after_banner(live_server: LiveServer) -> bytes:
    # The local-mode banner prints the *demo* key on purpose (to the operator's terminal); every
    # byte after it must be clean, and the tenants' keys must not appear anywhere.
    logs = live_server.logs()
    marker = b"Started server process"
    assert marker in logs
    return logs[logs.index(marker) :]


def test_logs_hold_no_keys_text_or_media(
    live_server: LiveServer, traffic: dict[str, bytes]
) -> None:
    logs = live_server.logs()
    after_banner = _log_after_banner(live_server)
    assert b"prediction served" in logs, "the run should have logged predictions"
    for alias, creds in live_server.tenants.items():
        for form in _key_forms(creds.key):
            assert form not in logs, f"tenant {alias}'s key is in the logs"
    assert b"amk_" not in after_banner, "an API key (or a prefix of one) is in the logs"
    assert CANARY_WORD.encode() not in logs, "request text is in the logs"
    assert b"canary label" not in logs, "zero-shot labels (request content) are in the logs"
    for name, payload in traffic.items():
        assert base64.b64encode(payload)[:64] not in logs, f"{name} base64 is in the logs"
        assert payload[64:128] not in logs, f"{name} bytes are in the logs"
        assert payload[64:96].hex().encode() not in logs, f"{name} hex is in the logs"


def test_inputs_are_not_stored(live_server: LiveServer, traffic: dict[str, bytes]) -> None:
    files = [p for p in _files_under(live_server.db_path.parent) if p != live_server.log_path]
    assert files
    for path in files:
        content = path.read_bytes()
        assert CANARY_WORD.encode() not in content, f"request text stored in {path.name}"
        for name, payload in traffic.items():
            assert payload[64:128] not in content, f"{name} bytes stored in {path.name}"
            assert base64.b64encode(payload)[:64] not in content, f"{name} stored in {path.name}"


def test_error_messages_do_not_echo_input(live_server: LiveServer) -> None:
    with live_server.client("a") as client:
        response = client.post(
            "/v1/text-classification", json={"text": CANARY_TEXT, "extra": CANARY_TEXT}
        )
    assert response.status_code == 422
    # Pydantic's default messages include the offending input; the API's must not.
    assert CANARY_WORD not in assert_error_shape(response)["message"]


def test_public_answers_leak_no_paths_or_keys(live_server: LiveServer) -> None:
    health = httpx.get(f"{live_server.base_url}/health")
    assert health.status_code == 200
    with live_server.client("a") as client:
        models = client.get("/v1/models")
    assert models.status_code == 200
    for text in (health.text, models.text):
        assert "amk_" not in text
        assert str(live_server.db_path.parent) not in text and str(ROOT) not in text
