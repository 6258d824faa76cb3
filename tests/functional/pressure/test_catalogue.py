"""A catalogue of hostile inputs against the real local server, each with its expected answer.

Every case sends its own ``Idempotency-Key`` (the request id the ledger is keyed on), so after
the catalogue the last test can check, record by record, that no failed request was billed and
every served one was, and that the worker is still alive.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.functional.pressure.support import (
    LiveServer,
    assert_error_shape,
    image_bytes,
    require_model,
    wav,
)

MAX_BODY = 6 * 1024 * 1024  # Settings.max_body_bytes default (the Lambda payload limit)
JSON = {"Content-Type": "application/json"}
PNG = {"Content-Type": "image/png"}
WAV = {"Content-Type": "audio/wav"}
KWS = "keyword-spotter"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` but carries a few bytes of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def cmyk_jpeg() -> bytes:
    return image_bytes("CMYK", fmt="JPEG")


def truncated_jpeg() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    return whole[: len(whole) // 2]


def nested(depth: int, key: str) -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass(frozen=True)
class Case:
    """One hostile (or awkward but valid) request and what the API must answer."""

    id: str
    path: str
    status: int
    message: str  # a substring of the error message (or of the body for a 2xx)
    body: Callable[[], dict[str, Any]] = field(default=lambda: {})
    method: str = "POST"
    needs: str | None = None  # a model that must be in the registry
    check: Callable[[dict[str, Any]], None] | None = None  # extra checks of a 2xx body


def _usage_units(expected: float) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        assert body["usage"]["units"] == pytest.approx(expected, rel=1e-3), body["usage"]

    return check


def _truncated_to_256(body: dict[str, Any]) -> None:
    # Over-long text is truncated to the model's 256 tokens; usage reports (and bills) that.
    assert body["usage"]["prompt_tokens"] == 256, body["usage"]
    assert len(body["data"][0]["embedding"]) == 384


CASES = [
    # ---- text ---------------------------------------------------------------------------------
    Case("empty-text", "/v1/text-classification", 422, "at least 1 character",
         lambda: {"json": {"text": ""}}),
    Case("whitespace-text", "/v1/text-classification", 422, "is empty",
         lambda: {"json": {"text": " \t\n  "}}),
    Case("whitespace-in-batch", "/v1/embeddings", 422, "is empty",
         lambda: {"json": {"input": ["fine", "   "]}}),
    Case("text-over-token-limit", "/v1/embeddings", 200, '"prompt_tokens":256',
         lambda: {"json": {"input": "word " * 19_999}}, check=_truncated_to_256),
    Case("text-over-char-limit", "/v1/embeddings", 422, "at most 100000 characters",
         lambda: {"json": {"input": "x" * 100_001}}),
    Case("nested-json-text-route", "/v1/text-classification", 400, "could not be parsed",
         lambda: {"content": nested(100_000, "text"), "headers": JSON}),
    Case("nested-json-image-route", "/v1/image-classification", 400, "not valid UTF-8 JSON",
         lambda: {"content": nested(100_000, "image"), "headers": JSON}),
    Case("nested-json-predict", "/v1/models/all-minilm-l6-v2/predict", 400,
         "not valid UTF-8 JSON", lambda: {"content": nested(100_000, "input"), "headers": JSON}),
    Case("nested-json-shallow", "/v1/embeddings", 422, "Invalid request",
         lambda: {"content": nested(500, "input"), "headers": JSON}),
    Case("wrong-type-number", "/v1/text-classification", 422, "valid string",
         lambda: {"json": {"text": 123}}),
    Case("wrong-type-object", "/v1/embeddings", 422, "Invalid request",
         lambda: {"json": {"input": {"a": 1}}}),
    Case("wrong-type-top-level", "/v1/embeddings", 422, "Invalid request",
         lambda: {"json": ["hello"]}),
    Case("unknown-field", "/v1/text-classification", 422, "Extra inputs",
         lambda: {"json": {"text": "hi", "evil": True}}),
    Case("nan-text", "/v1/text-classification", 422, "valid string",
         lambda: {"content": b'{"text": NaN}', "headers": JSON}),
    Case("infinity-dimensions", "/v1/embeddings", 422, "finite number",
         lambda: {"content": b'{"input": "hi", "dimensions": Infinity}', "headers": JSON}),
    Case("nan-top-k", "/v1/image-classification", 422, "finite number",
         lambda: {"content": b'{"image": "aGk=", "top_k": NaN}', "headers": JSON}),
    Case("invalid-utf8", "/v1/text-classification", 400, "could not be parsed",
         lambda: {"content": b'{"text": "\xff\xfe\xfd"}', "headers": JSON}),
    Case("invalid-utf8-image-json", "/v1/image-classification", 400, "not valid UTF-8",
         lambda: {"content": b'{"image": "\xff\xfe"}', "headers": JSON}),
    Case("text-plain", "/v1/text-classification", 415, "not accepted",
         lambda: {"content": b"hello", "headers": {"Content-Type": "text/plain"}}),
    Case("batch-over-limit", "/v1/embeddings", 422, "over the batch limit",
         lambda: {"json": {"input": ["x"] * 65}}),
    Case("unicode-mix", "/v1/embeddings", 200, '"object":"list"',
         lambda: {"json": {"input": ["你好 🌍 \u200b\u202e مرحبا", "\x00 nul and \ufeff bom"]}}),
    # ---- images -------------------------------------------------------------------------------
    Case("zero-byte-image", "/v1/image-classification", 422, "the image is empty",
         lambda: {"content": b"", "headers": {"Content-Type": "image/png"}}),
    Case("truncated-jpeg", "/v1/image-classification", 422, "could not be decoded",
         lambda: {"content": truncated_jpeg(), "headers": {"Content-Type": "image/jpeg"}}),
    Case("png-decompression-bomb", "/v1/image-classification", 422, "too large to decode safely",
         lambda: {"content": png_header_only(100_000, 100_000),
                  "headers": {"Content-Type": "image/png"}}),
    Case("png-over-pixel-limit", "/v1/image-classification", 422, "over the limit",
         lambda: {"content": png_header_only(8_000, 8_000),
                  "headers": {"Content-Type": "image/png"}}),
    Case("not-an-image", "/v1/image-classification", 422, "could not be decoded",
         lambda: {"content": b"GIF89a" + b"\x00" * 50, "headers": {"Content-Type": "image/gif"}}),
    Case("bad-base64", "/v1/image-classification", 422, "not valid base64",
         lambda: {"json": {"image": "!!not base64!!"}}),
    Case("image-and-images", "/v1/image-classification", 422, "exactly one",
         lambda: {"json": {"image": "aGk=", "images": ["aGk="]}}),
    Case("multipart-without-file", "/v1/image-classification", 422, "has no file",
         lambda: {"files": {"note": (None, "no file here")}}),
    Case("cmyk-jpeg", "/v1/image-classification", 200, '"predictions"',
         lambda: {"content": cmyk_jpeg(), "headers": {"Content-Type": "image/jpeg"}},
         check=_usage_units(1.0)),
    Case("png-16-bit", "/v1/image-classification", 200, '"predictions"',
         lambda: {"content": image_bytes("I;16"), "headers": {"Content-Type": "image/png"}},
         check=_usage_units(1.0)),
    Case("png-rgba", "/v1/image-classification", 200, '"predictions"',
         lambda: {"content": image_bytes("RGBA"), "headers": {"Content-Type": "image/png"}},
         check=_usage_units(1.0)),
    Case("body-just-over-limit", "/v1/image-classification", 413, "over the limit of 6291456",
         lambda: {"content": b"\xff" * (MAX_BODY + 1), "headers": {"Content-Type": "image/jpeg"}}),
    Case("body-at-limit-not-an-image", "/v1/image-classification", 422, "could not be decoded",
         lambda: {"content": b"\xff" * MAX_BODY, "headers": {"Content-Type": "image/jpeg"}}),
    # ---- audio --------------------------------------------------------------------------------
    Case("wav-header-overstates-length", "/v1/audio-classification", 200, '"duration_s":1.0',
         lambda: {"content": wav(1.0, declared_frames=160_000),
                  "headers": {"Content-Type": "audio/wav"}},
         needs=KWS, check=_usage_units(1.0)),  # billed for the samples sent, not the claim
    Case("wav-stereo", "/v1/audio-classification", 200, '"scores"',
         lambda: {"content": wav(1.0, channels=2), "headers": {"Content-Type": "audio/wav"}},
         needs=KWS, check=_usage_units(1.0)),
    Case("wav-8khz", "/v1/audio-classification", 200, '"scores"',
         lambda: {"content": wav(1.0, rate=8000), "headers": {"Content-Type": "audio/wav"}},
         needs=KWS, check=_usage_units(1.0)),
    Case("wav-two-minutes", "/v1/audio-classification", 422, "longer than 60 seconds",
         lambda: {"content": wav(120.0, rate=8000, bits=8),
                  "headers": {"Content-Type": "audio/wav"}}, needs=KWS),
    Case("wav-thirty-minutes", "/v1/audio-classification", 413, "over the limit",
         lambda: {"content": wav(1800.0, rate=16000),
                  "headers": {"Content-Type": "audio/wav"}}),
    Case("wav-empty", "/v1/audio-classification", 422, "empty",
         lambda: {"content": b"", "headers": {"Content-Type": "audio/wav"}}, needs=KWS),
    Case("wav-garbage", "/v1/audio-classification", 422, "fmt",
         lambda: {"content": b"RIFF\x00\x00\x00\x00WAVEjunk", "headers": WAV},
         needs=KWS),
    # ---- models and versions ------------------------------------------------------------------
    Case("unknown-model", "/v1/embeddings", 404, "Unknown model 'nope'",
         lambda: {"json": {"input": "x", "model": "nope"}}),
    Case("unknown-version", "/v1/text-classification", 404, "has no version '9.9.9'",
         lambda: {"json": {"text": "x", "version": "9.9.9"}}),
    Case("unknown-version-predict", "/v1/models/mobilenet-v2/predict?version=9.9.9", 404,
         "has no version", lambda: {"content": image_bytes(), "headers": PNG}),
    Case("path-traversal-version", "/v1/models/mobilenet-v2/predict?version=../../etc", 404,
         "has no version", lambda: {"content": image_bytes(), "headers": PNG}),
    Case("path-traversal-model", "/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "",
         method="GET"),
    Case("wrong-task-model", "/v1/embeddings", 422, "serves",
         lambda: {"json": {"input": "x", "model": "mobilenet-v2"}}),
]  # fmt: skip

#: Outcome of each case that ran: request id -> status (the last test reads it).
OUTCOMES: dict[str, int] = {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(live_server: LiveServer, case: Case) -> None:
    if case.needs:
        require_model(case.needs)
    request_id = f"catalogue-{case.id}"
    kwargs = case.body()
    headers = {"Idempotency-Key": request_id, **kwargs.pop("headers", {})}
    with live_server.client("a") as client:
        response = client.request(case.method, case.path, headers=headers, **kwargs)
    OUTCOMES[request_id] = response.status_code
    assert response.status_code == case.status, response.text[:500]
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        error = assert_error_shape(response)
        assert case.message in error["message"], error
    else:
        assert case.message in response.text.replace(" ", ""), response.text[:500]
        if case.check is not None:
            case.check(response.json())


def test_two_different_keys_are_refused(live_server: LiveServer) -> None:
    a, b = live_server.tenants["a"], live_server.tenants["b"]
    response = httpx.post(
        f"{live_server.base_url}/v1/embeddings",
        json={"input": "x"},
        headers={"Authorization": f"Bearer {a.key}", "x-api-key": b.key},
    )
    assert response.status_code == 401
    assert "Two different API keys" in assert_error_shape(response)["message"]
    assert b.key not in response.text and a.key not in response.text


@pytest.mark.parametrize("param", ["api_key", "x-api-key", "key", "access_token", "token"])
def test_key_in_query_string_is_not_accepted(live_server: LiveServer, param: str) -> None:
    key = live_server.tenants["a"].key
    response = httpx.post(
        f"{live_server.base_url}/v1/embeddings", params={param: key}, json={"input": "x"}
    )
    assert response.status_code == 401
    assert "Missing API key" in assert_error_shape(response)["message"]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "Unsupported Authorization scheme"),
        ({"Authorization": "Bearer"}, 401, "empty Bearer token"),
        ({"Authorization": "Bearer amk_not_a_real_key"}, 401, "not well formed"),
        ({"x-api-key": "x" * 10_000}, 401, ""),
        ({"x-api-key": "amk_\u00e9\u00e9"}, 401, ""),
    ],
    ids=["basic-scheme", "empty-bearer", "malformed-key", "huge-key", "latin1-key"],
)
def test_header_tricks(
    live_server: LiveServer, headers: dict[str, str], status: int, message: str
) -> None:
    response = httpx.post(
        f"{live_server.base_url}/v1/embeddings",
        json={"input": "x"},
        headers={k: v.encode("latin-1") for k, v in headers.items()},  # type: ignore[misc]
    )
    assert response.status_code == status, response.text
    assert message in assert_error_shape(response)["message"]


def test_right_key_id_wrong_secret_is_403(live_server: LiveServer) -> None:
    key = live_server.tenants["a"].key
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = httpx.post(
        f"{live_server.base_url}/v1/embeddings", json={"input": "x"}, headers={"x-api-key": forged}
    )
    assert response.status_code == 403
    assert forged not in response.text
    assert_error_shape(response)


def test_bad_idempotency_key_is_400(live_server: LiveServer) -> None:
    with live_server.client("a") as client:
        response = client.post(
            "/v1/embeddings", json={"input": "x"}, headers={"Idempotency-Key": "has#hash"}
        )
    assert response.status_code == 400
    assert "Idempotency-Key" in assert_error_shape(response)["message"]


def test_worker_alive_and_failures_not_billed(live_server: LiveServer) -> None:
    """After the catalogue: /health answers and the ledger holds exactly the served requests."""
    if not OUTCOMES:
        pytest.skip("run with the catalogue cases (nothing was sent)")
    assert httpx.get(f"{live_server.base_url}/health").status_code == 200
    with live_server.client("a") as client:
        assert client.post("/v1/embeddings", json={"input": "still alive"}).status_code == 200
    billed = {r.request_id for r in live_server.records("a")}
    served = {rid for rid, status in OUTCOMES.items() if status < 400}
    failed = {rid for rid, status in OUTCOMES.items() if status >= 400}
    assert failed, "the catalogue should have produced failures"
    assert not (billed & failed), f"failed requests were billed: {sorted(billed & failed)}"
    assert served <= billed, f"served but not billed: {sorted(served - billed)}"
    assert live_server.process.poll() is None
