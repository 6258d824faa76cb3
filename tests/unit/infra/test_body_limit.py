"""The raw body limit per deployment target: behind API Gateway + Lambda a binary body travels
base64-encoded inside Lambda's 6 MB event, so the limit is 4.4 MB, not 6 MB. The figure the
stack passes (``AIMAAS_MAX_BODY_BYTES``) fits the event with the largest headers API Gateway
lets through, and the app answers 413 one byte above it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimaas_testing.imports import load_module
from infra.settings import GATEWAY_PAYLOAD_LIMIT_BYTES, LAMBDA_EVENT_LIMIT_BYTES, PROFILES

REPO = Path(__file__).resolve().parents[3]
#: API Gateway REST: request line and header values, 10,240 bytes in all.
GATEWAY_HEADER_LIMIT_BYTES = 10_240


def _events() -> Any:
    return load_module(
        "aimaas_body_limit_events", REPO / "tests" / "functional" / "inference" / "lambda_events.py"
    )


def _largest_event(body_bytes: int) -> int:
    """Size of the Lambda event for a binary body of ``body_bytes`` with maximal headers."""
    events = _events()
    base = events.rest_event("POST", "/v1/image-classification", body=b"", binary=True)
    used = sum(len(k) + len(v) for k, v in base["headers"].items())
    pad = {"X-Pad": "p" * (GATEWAY_HEADER_LIMIT_BYTES - used - len("X-Pad"))}
    event = events.rest_event(
        "POST",
        "/v1/image-classification",
        body=b"\xff" * body_bytes,
        binary=True,
        headers={"Content-Type": "image/png", **pad},
    )
    return len(json.dumps(event).encode())


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    return synth(stage="dev")


def test_the_stack_passes_each_targets_limit(dev: Any, synth: Any) -> None:
    functions = dev.resources("serving", "AWS::Lambda::Function").values()
    limits = {
        f["Properties"]["Environment"]["Variables"]["AIMAAS_MAX_BODY_BYTES"] for f in functions
    }
    assert limits == {str(PROFILES["aws"].max_body_bytes)}
    assert dev.json("api")["Outputs"]["MaxBodyBytes"]["Value"] == "4400000"
    localstack = synth(profile="localstack", upstream_url="http://127.0.0.1:8000")
    outputs = localstack.json("api")["Outputs"]
    assert int(outputs["MaxBodyBytes"]["Value"]) == PROFILES["localstack"].max_body_bytes


def test_the_lambda_limit_fits_the_event_and_six_mb_does_not() -> None:
    limit = PROFILES["aws"].max_body_bytes
    assert _largest_event(limit) <= LAMBDA_EVENT_LIMIT_BYTES
    # The app's own default (6 MB) would be 8 MB in the event: Lambda refuses it (502).
    assert _largest_event(6 * 1024 * 1024) > LAMBDA_EVENT_LIMIT_BYTES
    for features in PROFILES.values():
        assert features.max_body_bytes <= GATEWAY_PAYLOAD_LIMIT_BYTES


def test_the_app_answers_413_one_byte_above_the_limit(tmp_path: Path) -> None:
    from aimaas.api import create_app
    from aimaas.config import Settings

    limit = PROFILES["aws"].max_body_bytes
    settings = Settings.from_env(
        {
            "AIMAAS_MAX_BODY_BYTES": str(limit),
            "AIMAAS_SQLITE_PATH": str(tmp_path / "aimaas.db"),
            "AIMAAS_REGISTRY": str(tmp_path / "registry"),
        }
    )
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            at_limit = client.post(
                "/v1/image-classification",
                content=b"\x00" * limit,
                headers={"Content-Type": "image/png"},
            )
            over = client.post(
                "/v1/image-classification",
                content=b"\x00" * (limit + 1),
                headers={"Content-Type": "image/png"},
            )
    finally:
        app.state.container.close()
    assert at_limit.status_code == 401  # through the size check, on to the missing key
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "payload_too_large"
