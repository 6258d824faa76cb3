"""Auth and the usage route through the real FastAPI app, over HTTP (TestClient) and through
Mangum with API Gateway REST events (the trusted-authorizer path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from mangum import Mangum

from aimaas.plans import load_catalog
from aimaas_testing.metering import sample_record

NOW = datetime.now(UTC).replace(microsecond=0)
DAY1 = (NOW - timedelta(days=2)).replace(hour=10)


@pytest.fixture
def seeded(world):
    """Two tenants with records on two days; returns (world, tenant a, key a, tenant b, key b)."""
    a = world.admin.create_tenant("A", plan="pro")
    b = world.admin.create_tenant("B", plan="free")
    key_a_id, key_a = world.admin.create_key(a.tenant_id)
    _, key_b = world.admin.create_key(b.tenant_id)
    for i, (units, stamp, model) in enumerate(
        [
            (1.5, DAY1, "all-minilm-l6-v2"),
            (0.5, DAY1, "all-minilm-l6-v2-int8"),
            (2.25, DAY1 + timedelta(days=1), "all-minilm-l6-v2"),
        ]
    ):
        world.ledger.put(
            sample_record(
                f"a{i}",
                tenant_id=a.tenant_id,
                key_id=key_a_id,
                units=units,
                timestamp=stamp,
                model=model,
            )
        )
    world.ledger.put(sample_record("b0", tenant_id=b.tenant_id, units=100, timestamp=DAY1))
    return world, a, key_a, b, key_b


def test_usage_is_the_callers_own_and_priced(seeded) -> None:
    world, a, key_a, b, _ = seeded
    client = TestClient(world.app())
    params = {
        "start": (DAY1 - timedelta(days=1)).date().isoformat(),
        "end": (NOW + timedelta(days=1)).date().isoformat(),
        "group_by": "day,model",
    }
    response = client.get("/v1/usage", params=params, headers={"Authorization": f"Bearer {key_a}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == a.tenant_id and body["plan"] == "pro"
    assert body["total_calls"] == 3  # tenant B's record is not there
    catalog = load_catalog()
    pro = catalog.plan("pro").price_multiplier
    big = catalog.model_prices["embeddings", "all-minilm-l6-v2"].usd
    small = catalog.task_prices["embeddings"].usd
    fees = body["total_calls"] * catalog.request_fee_usd
    expected_total = (Decimal("3.75") * big + Decimal("0.5") * small + fees) * pro
    assert Decimal(str(body["total_cost"])) == pytest.approx(expected_total, rel=Decimal("1e-12"))
    rows = {(r["day"], r["model"]): r for r in body["rows"]}
    first = rows[DAY1.date().isoformat(), "all-minilm-l6-v2"]
    assert first["calls"] == 1 and first["units"] == 1.5 and first["task"] is None
    assert body["month_to_date_calls"] == world.ledger.month_calls(a.tenant_id)
    # A range with a time of day reads the raw records: the same numbers.
    precise = client.get(
        "/v1/usage",
        params={**params, "start": (DAY1 - timedelta(hours=1)).isoformat()},
        headers={"x-api-key": key_a},
    ).json()
    assert precise["rows"] == body["rows"] and precise["total_calls"] == 3
    # Another tenant's usage: 403, whatever the parameters.
    denied = client.get(
        "/v1/usage", params={**params, "tenant_id": b.tenant_id}, headers={"x-api-key": key_a}
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    own = client.get(
        "/v1/usage", params={**params, "tenant_id": a.tenant_id}, headers={"x-api-key": key_a}
    )
    assert own.json()["total_calls"] == 3


def test_http_401_403_429_and_error_shape(seeded) -> None:
    world, a, key_a, _, key_b = seeded
    client = TestClient(world.app())
    missing = client.get("/v1/usage")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert set(missing.json()["error"]) == {"code", "message", "request_id"}
    conflict = client.get(
        "/v1/usage", headers={"x-api-key": key_a, "Authorization": f"Bearer {key_b}"}
    )
    assert conflict.status_code == 401 and "Two different" in conflict.json()["error"]["message"]
    assert client.get("/v1/usage", headers={"x-api-key": key_a[:-2] + "zz"}).status_code == 403
    bad = client.get("/v1/usage", params={"group_by": "tenant"}, headers={"x-api-key": key_a})
    assert bad.status_code == 422
    assert (
        client.get(
            "/v1/usage", params={"start": "yesterday"}, headers={"x-api-key": key_a}
        ).status_code
        == 422
    )
    # Hard limit: fill tenant A's month counter.
    limit = load_catalog().plan("pro").monthly_requests
    for i in range(3):
        world.ledger.put(sample_record(f"now{i}", tenant_id=a.tenant_id, timestamp=NOW))
    world.bump_month_counter(a.tenant_id, NOW.strftime("%Y-%m"), limit)
    over = client.post("/v1/embeddings", headers={"x-api-key": key_a}, json={"input": "x"})
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) > 0
    assert over.json()["error"]["code"] == "quota_exceeded"
    # A tenant at its limit still sees its usage (issue 13: it got 429 here).
    usage = client.get("/v1/usage", headers={"x-api-key": key_a})
    assert usage.status_code == 200, usage.text
    assert usage.json()["month_to_date_calls"] >= usage.json()["monthly_limit"]


def test_openapi_declares_both_schemes(world) -> None:
    schema = TestClient(world.app()).get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["scheme"] == "bearer"
    usage_security = schema["paths"]["/v1/usage"]["get"]["security"]
    assert {"ApiKey": []} in usage_security and {"Bearer": []} in usage_security


def rest_event(
    path: str,
    query: dict[str, str],
    authorizer: dict[str, str] | None,
    method: str = "GET",
    body: str | None = None,
) -> dict:
    """An API Gateway REST proxy event as Mangum receives it (no credential headers: the
    authorizer has already consumed them)."""
    return {
        "resource": "/v1/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Host": ["abc123.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        "pathParameters": {"proxy": path.removeprefix("/v1/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/v1/{proxy+}",
            "httpMethod": "GET",
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.9", "apiKey": "usage-identifier-value"},
            **({"authorizer": authorizer} if authorizer is not None else {}),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def test_trusted_authorizer_context_through_mangum(seeded) -> None:
    world, a, _, _, _ = seeded
    handler = Mangum(world.app(trust_authorizer=True), lifespan="off")
    context = {
        "tenant_id": a.tenant_id,
        "key_id": "anykeyid0000",
        "plan": "pro",
        "principalId": a.tenant_id,
        "integrationLatency": 12,
    }
    response = handler(rest_event("/v1/usage", {"group_by": "task"}, context), None)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["tenant_id"] == a.tenant_id
    # Over the hard limit, flagged by the authorizer: 429 with Retry-After from the app.
    flagged_context = {**context, "quota_retry_after": "120"}
    assert handler(rest_event("/v1/usage", {}, flagged_context), None)["statusCode"] == 200
    flagged = handler(
        rest_event("/v1/embeddings", {}, flagged_context, method="POST", body='{"input": "x"}'),
        None,
    )
    assert flagged["statusCode"] == 429
    assert flagged["multiValueHeaders"].get(
        "retry-after", flagged["headers"].get("retry-after")
    ) in (["120"], "120")
    # No authorizer context: fall back to the headers, which are absent here -> 401.
    assert handler(rest_event("/v1/usage", {}, None), None)["statusCode"] == 401
    # Trust is off: the authorizer context is ignored and the key is required.
    untrusted = Mangum(world.app(), lifespan="off")
    assert untrusted(rest_event("/v1/usage", {}, context), None)["statusCode"] == 401
