"""The GPU server's generation worker with a scripted runner: slots, streams and refusals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aimaas import errors
from aimaas.inference import wire
from functions.gpu_server.gpuserve.engine import LoadedSession
from functions.gpu_server.gpuserve.generation import GenerationWorker, wants_stream

REQUEST = wire.GenerationRequest(prompt="hi", max_tokens=3, temperature=0)


class Scripted:
    """Yields ``pieces`` pieces, one every ``step_s``; records whether its stream was closed."""

    def __init__(self, pieces: int = 3, step_s: float = 0.0, refuse: bool = False) -> None:
        self.pieces, self.step_s, self.refuse = pieces, step_s, refuse
        self.closed = threading.Event()

    def stream(self, request: Any) -> Iterator[wire.GenerationChunk]:
        if self.refuse:
            raise errors.InvalidInput("no")
        try:
            for i in range(1, self.pieces + 1):
                time.sleep(self.step_s)
                last = i == self.pieces
                yield wire.GenerationChunk(
                    text=f"t{i}",
                    finish_reason="stop" if last else None,
                    prompt_tokens=1,
                    completion_tokens=i,
                )
        finally:
            self.closed.set()

    def run(self, request: Any) -> wire.GenerationResult:
        chunks = list(self.stream(request))
        return wire.GenerationResult(
            text="".join(c.text for c in chunks),
            finish_reason="stop",
            prompt_tokens=1,
            completion_tokens=len(chunks),
        )


def worker(runner: Scripted, bound: int = 1) -> GenerationWorker:
    manifest: Any = type("M", (), {"model_id": "m@1"})()
    return GenerationWorker(manifest, runner, LoadedSession(None, ["genai:cpu"]), bound)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("accept", "flag", "want"),
    [
        ("application/jsonlines", None, True),
        ("application/json, application/x-ndjson;q=0.9", None, True),
        ("application/json", True, True),
        ("application/json", None, False),
        ("", "yes", False),  # only a JSON true asks for a stream
    ],
)
def test_wants_stream(accept: str, flag: object, want: bool) -> None:
    assert wants_stream(accept, flag) is want


def test_a_stream_yields_every_piece_and_frees_its_slot() -> None:
    async def go() -> list[str]:
        w = worker(Scripted())
        pieces = await w.stream(REQUEST)
        texts = [p.text async for p in pieces]
        for _ in range(100):
            if w.active == 0:
                break
            await asyncio.sleep(0.01)
        assert w.active == 0 and w.stats.requests == 1 and w.tokens_out == 3
        return texts

    assert asyncio.run(go()) == ["t1", "t2", "t3"]


def test_beyond_the_bound_is_503_and_an_abandoned_stream_gives_its_slot_back() -> None:
    async def go() -> None:
        runner = Scripted(pieces=100, step_s=0.01)
        w = worker(runner, bound=1)
        pieces = await w.stream(REQUEST)
        await pieces.__anext__()
        with pytest.raises(errors.Overloaded):
            await w.infer(REQUEST)
        await pieces.aclose()  # the client went away
        for _ in range(200):
            if w.active == 0:
                break
            await asyncio.sleep(0.01)
        assert w.active == 0
        assert runner.closed.is_set()  # the runner's finally ran: its KV cache is freed
        runner.pieces = 2
        assert (await w.infer(REQUEST)).text == "t1t2"

    asyncio.run(go())


def test_a_refused_prompt_raises_before_the_stream_and_frees_the_slot() -> None:
    async def go() -> None:
        w = worker(Scripted(refuse=True))
        with pytest.raises(errors.InvalidInput):
            await w.stream(REQUEST)
        for _ in range(100):
            if w.active == 0:
                break
            await asyncio.sleep(0.01)
        assert w.active == 0 and w.stats.errors == 1

    asyncio.run(go())
