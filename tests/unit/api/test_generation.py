"""The language-model routes over a scripted model: event shapes, billing once, the Lambda path.

The model is a fake backend (the real one is in ``tests/functional/api/test_chat_completions``):
it answers the same pieces every time, so the events, the records and Mangum's buffering can be
checked exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aimaas.api import schemas as api
from aimaas.backends import InferenceBackend
from aimaas.inference import wire
from aimaas.plans import load_catalog
from tests.functional.inference.lambda_events import LambdaContext, json_event

AUTH = {"Authorization": "Bearer good-key"}
PIECES = [("The capital", 1), (" is Paris", 3), (".", 4)]
PROMPT_TOKENS = 9


class ScriptedModel(InferenceBackend):
    """Answers every generation with :data:`PIECES`; records how its streams ended."""

    def __init__(self) -> None:
        self.closed_early = 0

    def invoke(self, manifest: Any, request: Any) -> Any:
        text = "".join(t for t, _ in PIECES)
        return wire.GenerationResult(
            text=text, finish_reason="stop", prompt_tokens=PROMPT_TOKENS, completion_tokens=4
        )

    def stream(self, manifest: Any, request: Any) -> Iterator[wire.GenerationChunk]:
        finished = False
        try:
            for text, produced in PIECES:
                yield wire.GenerationChunk(
                    text=text, prompt_tokens=PROMPT_TOKENS, completion_tokens=produced
                )
            finished = True
            yield wire.GenerationChunk(
                finish_reason="stop", prompt_tokens=PROMPT_TOKENS, completion_tokens=4
            )
        finally:
            self.closed_early += not finished


@pytest.fixture
def scripted(make_harness: Any) -> Any:
    model = ScriptedModel()
    harness = make_harness(cpu_=model)
    harness.model = model
    return harness


def _events(raw: str) -> list[Any]:
    assert raw.endswith("data: [DONE]\n\n")
    items = [chunk.removeprefix("data: ") for chunk in raw.split("\n\n") if chunk]
    return [item if item == "[DONE]" else json.loads(item) for item in items]


CHAT = {"messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 8}


def test_chat_events_are_openai_chunks_and_the_call_is_billed_once(scripted: Any) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = scripted.client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    chunks = [api.ChatCompletionChunk.model_validate(e) for e in events[:-1]]  # as documented
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital is Paris."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 4)
    (record,) = scripted.records()
    assert record.units == load_catalog().token_charge("text-generation", 9, 4)
    assert scripted.model.closed_early == 0


def test_completion_events_are_text_completions(scripted: Any) -> None:
    body = {"prompt": "The capital of France", "max_tokens": 8, "stream": True}
    response = scripted.client.post("/v1/completions", headers=AUTH, json=body)
    events = _events(response.text)
    pieces = [api.CompletionOut.model_validate(e) for e in events[:-1]]
    assert "".join(p.choices[0].text for p in pieces) == "The capital is Paris."
    assert all(p.usage is None for p in pieces)  # no include_usage: no usage event
    assert len(scripted.records()) == 1


def test_a_whole_answer_has_the_same_text_and_bill(scripted: Any) -> None:
    response = scripted.client.post("/v1/chat/completions", headers=AUTH, json=CHAT)
    answer = api.ChatCompletionOut.model_validate(response.json())
    assert answer.choices[0].message.content == "The capital is Paris."
    assert answer.usage.total_tokens == 13
    (record,) = scripted.records()
    assert float(record.units) == answer.usage.units


def test_under_lambda_a_stream_is_buffered_into_one_body(scripted: Any) -> None:
    from mangum import Mangum

    handler = Mangum(scripted.client.app, lifespan="off")
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    result = handler(json_event("/v1/chat/completions", body, headers=AUTH), LambdaContext())
    assert result["statusCode"] == 200
    assert result["headers"]["content-type"].startswith("text/event-stream")
    events = _events(result["body"])  # every event, in one response body, at the end
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 4
    assert len(scripted.records()) == 1
