"""The routes the console calls (``/v1/account``, ``/v1/invoices``, ``/v1/keys``,
``/v1/audit``) over real HTTP, with real keys in the SQLite key store: what a key may do to
its own tenant and nothing more."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aimaas_testing.auth import tenant_key
from aimaas_testing.paths import REGISTRY, REPO_ROOT
from aimaas_testing.servers import launch_local_server

CONSOLE_ORIGIN = "https://console.example.com"


@dataclass
class Server:
    url: str
    db: Path

    def call(self, method: str, path: str, key: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("account")
    running = launch_local_server(
        registry=REGISTRY,
        db=folder / "aimaas.db",
        log_path=folder / "server.log",
        args=["--log-level", "warning"],
        env={
            "AIMAAS_ONNX_THREADS": "1",
            "PYTHONPATH": str(REPO_ROOT / "src"),
            "AIMAAS_CONSOLE_ORIGIN": CONSOLE_ORIGIN,
        },
    )
    try:
        yield Server(running.url, folder / "aimaas.db")
    finally:
        running.stop()


def test_account_reports_plan_limit_and_usage(server: Server) -> None:
    key = tenant_key(server.db, plan="free", label="Free Co")
    before = server.call("GET", "/v1/account", key).json()
    assert (before["plan"], before["tenant_name"]) == ("free", "Free Co")
    assert before["monthly_limit"] == 10000 and before["self_service_keys"] is False
    assert before["key_id"] == key.split("_")[1]
    assert server.call("POST", "/v1/embeddings", key, json={"input": "hi"}).status_code == 200
    after = server.call("GET", "/v1/account", key).json()
    assert after["month_to_date_calls"] == before["month_to_date_calls"] + 1


def test_free_plan_lists_keys_but_cannot_make_them(server: Server) -> None:
    key = tenant_key(server.db, plan="free")
    listed = server.call("GET", "/v1/keys", key).json()
    assert [k["key_id"] for k in listed] == [key.split("_")[1]]
    assert set(listed[0]) == {"key_id", "label", "status", "created_at", "last_used_at",
                              "expires_at"}  # fmt: skip
    assert server.call("POST", "/v1/keys", key, json={}).status_code == 403
    own = key.split("_")[1]
    assert server.call("POST", f"/v1/keys/{own}/revoke", key).status_code == 403


def test_rotate_replaces_the_key_and_another_tenant_cannot_touch_it(server: Server) -> None:
    key = tenant_key(server.db, plan="pro")
    other = tenant_key(server.db, plan="pro")
    old_id = key.split("_")[1]
    assert server.call("POST", f"/v1/keys/{old_id}/revoke", other).status_code == 404
    assert server.call("POST", f"/v1/keys/{old_id}/rotate", other).status_code == 404
    rotated = server.call("POST", f"/v1/keys/{old_id}/rotate", key)
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["replaced"] == old_id and body["key"].startswith("amk_")
    assert server.call("GET", "/v1/account", key).status_code == 403
    assert server.call("GET", "/v1/account", body["key"]).status_code == 200
    events = server.call("GET", "/v1/audit", body["key"]).json()
    assert events[0]["action"] == "key.rotate" and events[0]["target"] == old_id
    assert server.call("GET", "/v1/audit", other).json() == []


def test_invoice_json_and_csv_agree(server: Server) -> None:
    key = tenant_key(server.db, plan="pro")
    for text in ("one", "two", "three"):
        server.call("POST", "/v1/text-classification", key, json={"text": text})
    month = datetime.now(UTC).strftime("%Y-%m")
    invoice = server.call("GET", f"/v1/invoices/{month}", key).json()
    assert invoice["total_calls"] == 3
    answer = server.call("GET", f"/v1/invoices/{month}", key, params={"format": "csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    total = list(csv.DictReader(io.StringIO(answer.text)))[-1]
    assert (int(total["calls"]), total["amount"]) == (3, invoice["total"])
    assert server.call("GET", "/v1/invoices/2026-13", key).status_code == 422


def test_the_routes_are_in_openapi(server: Server) -> None:
    paths = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"]
    for path in ("/v1/account", "/v1/invoices/{month}", "/v1/keys", "/v1/keys/{key_id}/revoke",
                 "/v1/keys/{key_id}/rotate", "/v1/audit"):  # fmt: skip
        assert path in paths


def test_cors_admits_only_the_consoles_origin(server: Server) -> None:
    def preflight(origin: str) -> httpx.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        return httpx.options(server.url + "/v1/keys", headers=headers, timeout=30)

    allowed = preflight(CONSOLE_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    assert "access-control-allow-credentials" not in allowed.headers
    refused = preflight("https://evil.example.com")
    assert "access-control-allow-origin" not in refused.headers
