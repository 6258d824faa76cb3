"""Streamed GPU answers: JSON Lines re-joined from bytes cut anywhere, and SageMaker's response
stream read through a fake event stream.

botocore's Stubber validates a stubbed response against the operation's output shape, and
``invoke_endpoint_with_response_stream``'s ``Body`` is an event stream it does not build from a
dict, so these tests pass the backend a client object whose method returns what botocore's
``EventStream`` yields when iterated: ``{"PayloadPart": {"Bytes": ...}}`` dicts.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest

from aimaas import errors
from aimaas.backends.base import STREAM_ACCEPT, read_stream
from aimaas.backends.sagemaker import SageMakerBackend
from aimaas.inference import wire
from aimaas.manifest import ModelManifest
from aimaas_testing.paths import REGISTRY

CHUNKS = [
    wire.GenerationChunk(text="Paris", prompt_tokens=20, completion_tokens=1),
    wire.GenerationChunk(text=" est 巴黎 — ", prompt_tokens=20, completion_tokens=4),
    wire.GenerationChunk(text="🙂", finish_reason="stop", prompt_tokens=20, completion_tokens=5),
]
PAYLOAD = b"".join(c.model_dump_json().encode() + b"\n" for c in CHUNKS)
REQUEST = wire.GenerationRequest(prompt="Capital of France?", max_tokens=5, temperature=0)


def cuts(payload: bytes, seed: int) -> list[bytes]:
    """``payload`` in random pieces, including empty ones and cuts inside UTF-8 characters."""
    rng = random.Random(seed)  # noqa: S311 - repeatable test cuts, not secrets
    points = sorted(rng.sample(range(len(payload) + 1), k=min(12, len(payload))))
    points = [0, *points, len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize("seed", range(30))
def test_lines_rejoin_whatever_the_cuts(seed: int) -> None:
    assert list(read_stream(cuts(PAYLOAD, seed))) == CHUNKS


def test_every_single_byte_apart() -> None:
    assert list(read_stream([bytes([b]) for b in PAYLOAD])) == CHUNKS


def test_last_line_without_newline_and_blank_lines() -> None:
    payload = b"\n\n" + PAYLOAD.rstrip(b"\n")
    assert list(read_stream([payload])) == CHUNKS


def test_a_stream_cut_short_is_backend_unavailable_after_its_pieces() -> None:
    pieces = read_stream([PAYLOAD[: PAYLOAD.index(b"\n") + 1]])
    assert next(pieces) == CHUNKS[0]  # what came is delivered (the API bills it)
    with pytest.raises(errors.BackendUnavailable, match="ended before"):
        next(pieces)


def test_an_error_record_ends_the_stream() -> None:
    error = b'{"error": {"code": "overloaded", "message": "busy"}}\n'
    pieces = read_stream([PAYLOAD.split(b"\n")[0] + b"\n", error])
    assert next(pieces) == CHUNKS[0]
    with pytest.raises(errors.BackendUnavailable, match="busy"):
        next(pieces)


def test_garbage_is_backend_unavailable() -> None:
    with pytest.raises(errors.BackendUnavailable):
        list(read_stream([b"<html>\n"]))


def test_nothing_after_the_last_piece_is_read() -> None:
    def parts() -> Iterator[bytes]:
        yield PAYLOAD
        raise AssertionError("read past the last piece")

    assert list(read_stream(parts())) == CHUNKS


# ---- SageMaker ------------------------------------------------------------------------------


class FakeEventStream:
    """What ``response["Body"]`` of ``invoke_endpoint_with_response_stream`` iterates as."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.events

    def close(self) -> None:
        self.closed = True


class FakeRuntime:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.body = FakeEventStream(events)
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint_with_response_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Body": self.body, "ContentType": STREAM_ACCEPT}


@pytest.fixture(scope="module")
def manifest() -> ModelManifest:
    from aimaas.registry import FolderStore, ModelRegistry

    return ModelRegistry(FolderStore(REGISTRY)).resolve("all-minilm-l6-v2")


@pytest.mark.parametrize("seed", range(10))
def test_sagemaker_stream_reads_payload_parts(manifest: ModelManifest, seed: int) -> None:
    events = [{"PayloadPart": {"Bytes": part}} for part in cuts(PAYLOAD, seed)]
    runtime = FakeRuntime(events)
    backend = SageMakerBackend("ep", client=runtime)
    assert list(backend.stream(manifest, REQUEST)) == CHUNKS
    (call,) = runtime.calls
    assert call["EndpointName"] == "ep"
    assert call["Accept"] == STREAM_ACCEPT
    assert call["CustomAttributes"] == f"model={manifest.name}/{manifest.version}"
    assert wire.REQUEST_ADAPTER.validate_json(call["Body"]) == REQUEST
    assert runtime.body.closed


def test_sagemaker_model_stream_error_event(manifest: ModelManifest) -> None:
    first = PAYLOAD.split(b"\n")[0] + b"\n"
    events = [
        {"PayloadPart": {"Bytes": first}},
        {"ModelStreamError": {"Message": "container died", "ErrorCode": "ModelStreamError"}},
    ]
    runtime = FakeRuntime(events)
    pieces = SageMakerBackend("ep", client=runtime).stream(manifest, REQUEST)
    assert next(pieces) == CHUNKS[0]
    with pytest.raises(errors.BackendUnavailable, match="container died"):
        next(pieces)
    assert runtime.body.closed


def test_sagemaker_abandoned_stream_closes_the_event_stream(manifest: ModelManifest) -> None:
    runtime = FakeRuntime([{"PayloadPart": {"Bytes": PAYLOAD}}])
    pieces = SageMakerBackend("ep", client=runtime).stream(manifest, REQUEST)
    next(pieces)
    pieces.close()
    assert runtime.body.closed
