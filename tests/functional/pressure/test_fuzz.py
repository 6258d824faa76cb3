"""Property-based fuzzing of every operation from the served OpenAPI document (schemathesis).

The schema is loaded from the running local server; every generated request carries a valid key
so the fuzzing reaches the handlers, not only the key check. Checks on every response:

- ``not_a_server_error``: no 5xx, whatever the input;
- ``response_schema_conformance``: the body matches the documented response of its status;
- the platform's own: every 4xx body is ``{"error": {"code", "message", "request_id"}}`` with
  the request id of the ``X-Request-Id`` header.

At least :data:`MIN_REQUESTS` requests are sent in all (``MAX_EXAMPLES`` per operation bounds the
run); the last test prints the per-operation summary and checks the total.
"""

from __future__ import annotations

import collections
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.functional.pressure.support import REGISTRY, ROOT, LiveServer, has_model

MAX_EXAMPLES = 100
MIN_REQUESTS = 1000
SUMMARY_FILE = ROOT / "build" / "pressure" / "fuzz-summary.txt"

#: (method path) -> status code -> count; filled by the fuzz test, read by the summary.
SENT: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


def _document() -> dict[str, Any]:
    # The document depends on the routes only, not on the adapters: build the app around a
    # container that holds settings alone (no database, no models). test_schema_is_what_is_served
    # checks that the running server publishes the same document.
    from aimaas.api import create_app
    from aimaas.config import Settings

    container = SimpleNamespace(settings=Settings(), batch=None)  # the schema needs no adapters
    return create_app(container=container).openapi()  # type: ignore[arg-type]


DOCUMENT = _document()
# Raw WAV, BMP and TIFF bodies are bytes like application/octet-stream: send them the same way
# (schemathesis otherwise skips those media types).
schemathesis.serializer.alias(
    ["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "image/bmp", "image/tiff"],
    "application/octet-stream",
)
schema = schemathesis.openapi.from_dict(DOCUMENT)
#: Real model names: a random ``{model}`` is almost always a 404, so two in three generated
#: cases are pointed at a real model to reach the handlers with fuzzed queries and bodies.
REAL_MODELS = (
    sorted(p.name for p in REGISTRY.iterdir() if has_model(p.name)) if REGISTRY.is_dir() else []
)


#: The language model's routes: a fuzzed body keeps its shape and its oddities, but a valid one
#: is held to a few tokens and short texts, so a case takes a second, not a whole deadline (a
#: random 16,000-character prompt would take the CPU model longer than the deadline to read).
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
MOST_TOKENS, LONGEST_TEXT = 4, 300


def _bounded_generation(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    for field in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(field), int) and body[field] > MOST_TOKENS:
            body[field] = MOST_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MOST_TOKENS
    if isinstance(body.get("prompt"), str):
        body["prompt"] = body["prompt"][:LONGEST_TEXT]
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] = message["content"][:LONGEST_TEXT]
    return body


def test_schema_is_what_is_served(live_server: LiveServer) -> None:
    served = httpx.get(f"{live_server.base_url}/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx body is the one error shape and names the response's request id."""
    if not 400 <= response.status_code < 500:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body}"
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}, f"error fields: {sorted(error)}"
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["request_id"] == response.headers.get("x-request-id", [None])[0], error
    return True


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same inputs on every CI run: a failure can be replayed
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_fuzz_operation(case: Any, live_server: LiveServer) -> None:
    label = f"{case.method.upper()} {case.path}"
    # Generated credentials would only test the key check (the catalogue does that): replace
    # them with the tenant's real key so every request reaches its handler.
    generated = case.headers or {}
    case.headers = {
        k: v for k, v in generated.items() if k.lower() not in ("x-api-key", "authorization")
    }
    headers = live_server.tenants["a"].headers
    if REAL_MODELS and case.path_parameters and "model" in case.path_parameters:
        generated_name = str(case.path_parameters["model"])
        if len(generated_name) % 3:
            case.path_parameters["model"] = REAL_MODELS[len(generated_name) % len(REAL_MODELS)]
    if case.path in GENERATION_PATHS:
        case.body = _bounded_generation(case.body)
    response = case.call(base_url=live_server.base_url, headers=headers, timeout=60)
    SENT[label][response.status_code] += 1
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance, error_shape],
        headers=headers,
    )


def _documented(label: str) -> bool:
    method, path = label.split(" ", 1)
    return method.lower() in DOCUMENT["paths"].get(path, {})


def test_fuzz_summary(live_server: LiveServer) -> None:
    """Print what was sent per operation; the total is at least MIN_REQUESTS, the server lives."""
    if not SENT:
        pytest.skip("run together with test_fuzz_operation")
    total = sum(sum(c.values()) for c in SENT.values())
    documented = {label for label in SENT if _documented(label)}
    statuses: collections.Counter[int] = collections.Counter()
    for counts in SENT.values():
        statuses.update(counts)
    lines = [
        f"schemathesis: {total} requests, {len(documented)} documented operations "
        f"(+{len(SENT) - len(documented)} undocumented method probes); "
        f"by status: {dict(sorted(statuses.items()))}"
    ]
    for label in sorted(documented):
        counts = SENT[label]
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        lines.append(f"  {label:<36} {sum(counts.values()):>5}  ({by_status})")
    print("\n".join(lines))
    SUMMARY_FILE.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_FILE.write_text("\n".join(lines) + "\n")
    assert total >= MIN_REQUESTS, f"only {total} requests were generated"
    assert not any(s >= 500 for c in SENT.values() for s in c), lines
    assert live_server.process.poll() is None
