"""The inference Lambda handler with real API Gateway event shapes, in process, real models."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aimaas_testing.imports import load_module
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
HANDLER = ROOT / "functions" / "inference" / "inference_handler.py"


events = load_module("aimaas_test_lambda_events", Path(__file__).with_name("lambda_events.py"))


@pytest.fixture(scope="module")
def lambda_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("lambda") / "aimaas.db"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AIMAAS_STAGE": "local",
            "AIMAAS_REGISTRY": str(REGISTRY),
            "AIMAAS_SQLITE_PATH": str(db),
            "AIMAAS_TRUST_AUTHORIZER": "true",
            "POWERTOOLS_SERVICE_NAME": "aimaas-inference",
            "POWERTOOLS_METRICS_NAMESPACE": "aimaas",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",  # the core's per-prediction line is DEBUG
        }.items():
            patch.setenv(key, value)
        core = logging.getLogger("aimaas")
        saved = (list(core.handlers), core.level, core.propagate)
        module = load_module("aimaas_test_inference_handler", HANDLER)
        try:
            yield {"handler": module.handler, "db": db, "module": module}
        finally:
            module.app.state.container.close()
            sys.modules.pop("aimaas_test_inference_handler", None)
            # The handler routes the core's loggers to Powertools at import; later tests in
            # this process (caplog) need them propagating to the root logger again.
            core.handlers = saved[0]
            core.setLevel(saved[1])
            core.propagate = saved[2]


def _call(
    env: dict[str, Any], event: dict[str, Any], context: Any = None
) -> tuple[int, dict[str, str], Any]:
    response = env["handler"](event, context or events.LambdaContext())
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[0])
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], headers, json.loads(body) if body else None


def _photo() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_text_classification_through_the_handler(lambda_env: dict, capfd: Any) -> None:
    event = events.json_event(
        "/v1/text-classification",
        {"text": "这支球队昨晚赢得了冠军"},
        headers={"Authorization": "Bearer amk_secretsecretsecret_should_never_be_logged"},
        request_id="apigw-req-0001",
    )
    log_handler = lambda_env["module"].logger.registered_handler
    buffer = io.StringIO()
    previous = log_handler.setStream(buffer)  # the handler bound its stream at import
    try:
        status, headers, body = _call(lambda_env, event)
    finally:
        log_handler.setStream(previous)
    assert status == 200, body
    assert headers["x-request-id"] == "apigw-req-0001"
    assert body["model"].startswith("multilingual-topic-classifier@") and body["label"]
    out = buffer.getvalue() + capfd.readouterr().out  # logs + EMF metrics (printed)
    assert "amk_secret" not in out  # keys never reach the logs
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    served = [x for x in lines if x.get("message") == "request served"]
    assert served and served[-1]["request_id"] == "apigw-req-0001"
    assert served[-1]["model"] == body["model"]
    core = [x for x in lines if x.get("message") == "prediction served"]
    assert core and core[-1]["request_id"] == "apigw-req-0001"  # core logs are tagged too
    emf = [x for x in lines if "_aws" in x]
    assert emf, out
    metric = emf[-1]
    assert metric["model"] == body["model"] and metric["status_class"] == "2xx"
    names = {m["Name"] for m in metric["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Latency", "Requests"} <= names


def test_binary_image_body_base64_encoded_by_api_gateway(lambda_env: dict) -> None:
    event = events.rest_event(
        "POST",
        "/v1/image-classification",
        body=_photo(),
        binary=True,
        headers={"content-type": "image/jpeg"},
        query={"top_k": "3"},
    )
    status, _, body = _call(lambda_env, event)
    assert status == 200, body
    assert len(body["predictions"]) == 3
    assert "cat" in body["label"].lower() or "mau" in body["label"].lower()


def test_detection_through_the_handler_as_json_and_as_a_binary_png(lambda_env: dict) -> None:
    photo = _photo()
    event = events.rest_event(
        "POST", "/v1/object-detection", body=photo, binary=True,
        headers={"content-type": "image/jpeg"},
    )  # fmt: skip
    status, _, body = _call(lambda_env, event)
    assert status == 200, body
    assert "cat" in {d["label"] for d in body["detections"]}
    # API Gateway returns a binary body only when the request accepts a binary media type:
    # the handler must answer base64 with the PNG's own content type.
    event = events.rest_event(
        "POST", "/v1/object-detection", body=photo, binary=True,
        headers={"content-type": "image/jpeg", "accept": "image/png"},
    )  # fmt: skip
    response = lambda_env["handler"](event, events.LambdaContext())
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[0])
    assert headers["content-type"] == "image/png" and headers["x-aimaas-units"] == "1"
    drawn = Image.open(io.BytesIO(base64.b64decode(response["body"])))
    assert drawn.format == "PNG" and drawn.size == (451, 300)


def test_usage_is_recorded_for_the_authorizer_tenant(lambda_env: dict) -> None:
    from aimaas.metering.sqlite import SqliteLedger

    event = events.json_event("/v1/embeddings", {"input": ["a", "b"]}, request_id="apigw-emb-1")
    status, _, body = _call(lambda_env, event)
    assert status == 200 and len(body["data"]) == 2
    ledger = SqliteLedger(lambda_env["db"])
    record = ledger.get(events.AUTHORIZER["tenant_id"], "apigw-emb-1")
    ledger.close()
    assert record is not None and record.key_id == events.AUTHORIZER["key_id"]
    assert float(record.units) == pytest.approx(body["usage"]["units"])


def test_errors_through_the_handler(lambda_env: dict) -> None:
    status, headers, body = _call(
        lambda_env,
        events.rest_event(
            "POST",
            "/v1/text-classification",
            body="{broken",
            headers={"content-type": "application/json"},
        ),
    )
    assert status == 400 and body["error"]["request_id"] == headers["x-request-id"]
    status, _, body = _call(lambda_env, events.rest_event("GET", "/v1/nothing-here"))
    assert status == 404 and body["error"]["code"] == "not_found"
    # No authorizer context and no key: the app's own check answers 401.
    no_auth = events.json_event("/v1/embeddings", {"input": "x"}, authorizer=None)
    status, _, body = _call(lambda_env, no_auth)
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_health_and_idempotency_key_via_handler(lambda_env: dict) -> None:
    status, _, body = _call(lambda_env, events.rest_event("GET", "/health", authorizer=None))
    assert status == 200 and body["status"] == "ok"
    event = events.json_event(
        "/v1/embeddings", {"input": "x"}, headers={"Idempotency-Key": "client-key-7"}
    )
    _, headers, _ = _call(lambda_env, event)
    assert headers["x-request-id"] == "client-key-7"


def test_ledger_sees_one_record_per_request(lambda_env: dict) -> None:
    from aimaas.metering.sqlite import SqliteLedger

    event = events.json_event("/v1/embeddings", {"input": "x"}, request_id="apigw-dup")
    assert _call(lambda_env, event)[0] == 200
    assert _call(lambda_env, event)[0] == 200  # an API Gateway retry of the same request
    ledger = SqliteLedger(lambda_env["db"])
    now = datetime.now(UTC)
    ids = [
        r.request_id
        for r in ledger.records(
            events.AUTHORIZER["tenant_id"], now - timedelta(1), now + timedelta(1)
        )
    ]
    ledger.close()
    assert ids.count("apigw-dup") == 1


def test_an_invocation_about_to_time_out_is_a_504_and_not_billed(lambda_env: dict) -> None:
    """1.2 s left of the invocation: the deadline is 0.2 s (a second kept to hand the answer
    back), under the delivery margin, so the call is refused before it is billed."""
    from aimaas.metering.sqlite import SqliteLedger

    event = events.json_event("/v1/embeddings", {"input": "x"}, request_id="apigw-late")
    status, _, body = _call(lambda_env, event, events.LambdaContext(remaining_ms=1200))
    assert status == 504, body
    assert body["error"]["code"] == "deadline_exceeded"
    ledger = SqliteLedger(lambda_env["db"])
    try:
        assert ledger.get(events.AUTHORIZER["tenant_id"], "apigw-late") is None
    finally:
        ledger.close()


def test_docs_behind_the_stage_url_point_at_the_stage(lambda_env: dict) -> None:
    event = events.rest_event("GET", "/docs", authorizer=None)
    event["requestContext"]["path"] = "/prod/docs"
    response = lambda_env["handler"](event, events.LambdaContext())
    assert response["statusCode"] == 200
    assert "/prod/openapi.json" in response["body"]
    assert "/prod/docs-static/swagger-ui-bundle.js" in response["body"]
    spec = events.rest_event("GET", "/openapi.json", authorizer=None)
    spec["requestContext"]["path"] = "/prod/openapi.json"
    status, _, body = _call(lambda_env, spec)
    assert status == 200 and body["servers"] == [{"url": "/prod"}]
    # A custom domain (no stage in the URL) keeps plain paths.
    plain = events.rest_event("GET", "/docs", authorizer=None)
    plain["requestContext"]["path"] = "/docs"
    assert "url: '/openapi.json'" in lambda_env["handler"](plain, events.LambdaContext())["body"]


def test_unrecorded_usage_is_a_503_and_a_ledger_failure_metric(
    lambda_env: dict, capfd: Any
) -> None:
    from aimaas.metering import Meter
    from aimaas_testing.metering import FlakyLedger

    container = lambda_env["module"].app.state.container
    healthy = container.meter
    container.meter = Meter(
        FlakyLedger(healthy.ledger, fail_before=1.0), attempts=2, sleep=lambda _: None
    )
    capfd.readouterr()
    try:
        event = events.json_event("/v1/embeddings", {"input": "x"}, request_id="apigw-lost")
        status, _, body = _call(lambda_env, event)
    finally:
        container.meter = healthy
    assert status == 503 and body["error"]["code"] == "usage_not_recorded"
    documents = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    failures = [
        d
        for d in documents
        if "_aws" in d
        and any(
            m["Name"] == "LedgerWriteFailures" for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        )
    ]
    # Dimensioned by service alone: the series the observability stack's alarm watches.
    assert len(failures) == 1
    assert failures[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert failures[0]["service"] == "aimaas-inference"


def test_a_custom_classifier_survives_a_cold_start(lambda_env: dict) -> None:
    tickets = json.loads((ROOT / "tests" / "data" / "support_tickets.json").read_text())
    create = events.json_event(
        "/v1/classifiers", {"name": "tickets", "examples": tickets["train"][:60]}
    )
    status, _, created = _call(lambda_env, create)
    assert status == 201, created
    ask = {"model": created["id"], "text": "Please send me last month's invoice."}
    status, _, warm = _call(lambda_env, events.json_event("/v1/text-classification", ask))
    assert status == 200 and warm["label"] == "billing", warm
    # A new execution environment: the handler module imported afresh, a new container over
    # the same data (the local store sits beside AIMAAS_SQLITE_PATH).
    cold = load_module("aimaas_test_inference_handler_cold", HANDLER)
    try:
        status, _, body = _call(
            {"handler": cold.handler},
            events.json_event(f"/v1/models/{created['id']}/predict", {"text": ask["text"]}),
        )
    finally:
        cold.app.state.container.close()
        sys.modules.pop("aimaas_test_inference_handler_cold", None)
    assert status == 200 and body["label"] == "billing"
    assert body["scores"] == pytest.approx(warm["scores"], abs=1e-6)
