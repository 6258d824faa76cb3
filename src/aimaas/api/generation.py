"""Language models as OpenAI serves them: ``/v1/chat/completions`` and ``/v1/completions``.

The request is checked and turned into a :class:`~aimaas.inference.wire.GenerationRequest`
here (plan and model limits, ``n``, content parts), then answered whole or as server-sent
events. Billing is the ledger's, exactly once per request id, after the model has answered:

- a whole answer is recorded before it is sent (as every other task);
- a streamed answer is recorded when the runner's last piece has come, before the closing
  events (the usage chunk and ``[DONE]``); a stream the client abandons is closed at once
  (the generation stops and frees its run slot) and recorded for the tokens of the last piece
  it produced. Either way one record, and the ``caller`` dependency, which ends after the
  response, sees that it was billed.

Errors found before the first piece exists (a refused prompt, a full model queue, the
deadline) are ordinary error responses: the first piece is generated before the response
starts. Behind API Gateway and Lambda (Mangum), a streamed response is buffered and arrives
as one body of events.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aimaas import errors
from aimaas.api import schemas as api
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.api.service import Billable, invoke, meter
from aimaas.inference import wire
from aimaas.manifest import GenerationPreprocessing, ModelManifest

logger = logging.getLogger("aimaas.api")

TASK = "text-generation"
#: How ``developer`` (OpenAI's newer name of the system role) reaches the template.
ROLES = {"developer": "system"}


def resolve(container: Container, name: str | None) -> ModelManifest:
    """The language model ``name`` (or the stage's default)."""
    return container.registry.resolve_for_task(TASK, name, None)


def completion_cap(manifest: ModelManifest, plan: str) -> int:
    """The most completion tokens a caller on ``plan`` may ask ``manifest`` for: the plan's
    cap (``max_completion_tokens`` in plans.toml) within the model's own limit."""
    from aimaas.plans import load_catalog

    params = manifest.preprocessing
    assert isinstance(params, GenerationPreprocessing)
    cap = load_catalog().plan(plan).max_completion_tokens
    return min(params.max_new_tokens, cap or params.max_new_tokens)


def _sampling(
    body: api._SamplingIn, manifest: ModelManifest, plan: str, asked: int | None
) -> dict[str, Any]:
    """The wire fields shared by chat and completions, after the plan and model limits.

    Raises
    ------
    aimaas.errors.InvalidInput
        ``n`` other than 1, or ``max_tokens`` over the cap.
    """
    if body.n not in (None, 1):
        raise errors.InvalidInput(
            "n: only one choice per request is served; send n=1 (or omit it) and repeat the "
            "request for more.",
            code="unsupported_parameter",
        )
    cap = completion_cap(manifest, plan)
    if asked is not None and asked > cap:
        raise errors.InvalidInput(
            f"max_tokens is {asked}; the most a call on the {plan} plan may ask "
            f"{manifest.name} for is {cap}.",
            code="max_tokens_too_large",
        )
    stop = body.stop if isinstance(body.stop, list) else [body.stop] if body.stop else []
    return {
        "max_tokens": asked or cap,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "seed": body.seed,
        "stop": stop,
    }


def _text(content: str | list[api.TextPart]) -> str:
    # OpenAI's content parts of one message are one text; a newline keeps the parts apart.
    return content if isinstance(content, str) else "\n".join(p.text for p in content)


def chat_request(
    body: api.ChatCompletionIn, manifest: ModelManifest, plan: str
) -> wire.GenerationRequest:
    """The wire request of a chat completion (``max_completion_tokens`` wins over
    ``max_tokens``, as OpenAI reads them)."""
    asked = body.max_completion_tokens or body.max_tokens
    messages = [
        wire.ChatMessage(role=ROLES.get(m.role, m.role), content=_text(m.content))
        for m in body.messages
    ]
    return wire.GenerationRequest(messages=messages, **_sampling(body, manifest, plan, asked))


def completion_request(
    body: api.CompletionIn, manifest: ModelManifest, plan: str
) -> wire.GenerationRequest:
    """The wire request of a (legacy) completion: the prompt is continued as written."""
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    return wire.GenerationRequest(prompt=prompt, **_sampling(body, manifest, plan, body.max_tokens))


# ---- billing ----------------------------------------------------------------------------------


def billable_tokens(prompt_tokens: int, completion_tokens: int) -> Billable:
    """The billed quantity of a generation: its tokens' list-price charge in ``micro_usd``
    (input and output priced apart, plans.toml ``[prices.tokens]``), or plain 1k tokens where
    the task has no token prices."""
    from aimaas.plans import MICRO_USD, load_catalog

    catalog = load_catalog()
    if TASK not in catalog.token_prices:
        return Billable((prompt_tokens + completion_tokens) / 1000.0, "1k_tokens")
    charge = catalog.token_charge(TASK, prompt_tokens, completion_tokens)
    return Billable(float(charge), MICRO_USD)  # a few decimals: exact through str()


def bill(
    container: Container,
    call: Call,
    manifest: ModelManifest,
    counts: wire.GenerationChunk | wire.GenerationResult,
    started: float,
    delivered: bool = False,
) -> api.GenerationUsage:
    """Record the generation once (see :func:`aimaas.api.service.meter`) and return its usage
    in OpenAI's shape with the platform's billing fields."""
    billed = billable_tokens(counts.prompt_tokens, counts.completion_tokens)
    usage = meter(
        container, call, manifest, TASK, billed, started, delivered=delivered, sized=False
    )
    return api.GenerationUsage(
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        total_tokens=counts.prompt_tokens + counts.completion_tokens,
        units=usage.units,
        unit=usage.unit,
        price_usd=usage.price_usd,
    )


# ---- answers ----------------------------------------------------------------------------------


class Shape:
    """How one endpoint renders answers: whole, and as stream events."""

    prefix = "cmpl"

    def __init__(self, call: Call, manifest: ModelManifest) -> None:
        self.id = f"{self.prefix}-{call.request_id}"
        self.created = int(time.time())
        self.model = manifest.model_id

    def whole(self, result: wire.GenerationResult, usage: api.GenerationUsage) -> Any:
        return api.CompletionOut(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[api.CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
            usage=usage,
        )

    def opening(self) -> list[dict[str, Any]]:
        """Events sent before the first piece of text."""
        return []

    def piece(self, text: str) -> dict[str, Any]:
        return self._text_event(text, None)

    def ending(self, text: str, finish: wire.FinishReason) -> list[dict[str, Any]]:
        """The last piece's events (its text and the finish reason)."""
        return [self._text_event(text, finish)]

    def usage(self, usage: api.GenerationUsage) -> dict[str, Any]:
        """The closing event of ``stream_options.include_usage``: no choices, the usage."""
        return {**self._base(choices=[]), "usage": usage.model_dump(mode="json")}

    def _text_event(self, text: str, finish: wire.FinishReason | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return self._base(choices=[choice])

    #: The ``object`` of a streamed event.
    chunk_object = "text_completion"

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.chunk_object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }


class ChatShape(Shape):
    """``chat.completion`` and ``chat.completion.chunk``, as OpenAI streams them: the role
    first, then content deltas, then an empty delta with the finish reason."""

    prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"

    def whole(self, result: wire.GenerationResult, usage: api.GenerationUsage) -> Any:
        return api.ChatCompletionOut(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[
                api.ChatChoice(
                    message=api.AssistantMessage(content=result.text),
                    finish_reason=result.finish_reason,
                )
            ],
            usage=usage,
        )

    def opening(self) -> list[dict[str, Any]]:
        return [self._delta({"role": "assistant", "content": ""}, None)]

    def piece(self, text: str) -> dict[str, Any]:
        return self._delta({"content": text}, None)

    def ending(self, text: str, finish: wire.FinishReason) -> list[dict[str, Any]]:
        events = [self.piece(text)] if text else []
        return [*events, self._delta({}, finish)]

    def _delta(self, delta: dict[str, str], finish: wire.FinishReason | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return self._base([choice])


def generate(
    container: Container, call: Call, manifest: ModelManifest, request: wire.GenerationRequest
) -> tuple[wire.GenerationResult, api.GenerationUsage]:
    """The whole generation, billed (blocking: run it through :meth:`Call.run`)."""
    started = time.perf_counter()
    result = invoke(container, call, manifest, request)
    return result, bill(container, call, manifest, result, started)


def event(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _next(stream: Iterator[wire.GenerationChunk]) -> wire.GenerationChunk | None:
    return next(stream, None)  # StopIteration cannot cross a thread hop


def _body(chunk: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


class EventStream(Response):
    """A ``text/event-stream`` response that notices a client going away.

    Starlette's ``StreamingResponse`` under ASGI 2.4 servers learns of a disconnect only when
    a write fails, and uvicorn drops writes to a closed connection silently: an abandoned
    generation would run to its end. Here the events are sent while ``receive`` is watched for
    ``http.disconnect``; whichever ends first stops the other, and the stream is finished
    either way (:meth:`GenerationStream.finish`: the model stops, the call is billed once).
    """

    media_type = "text/event-stream"

    def __init__(self, stream: GenerationStream) -> None:
        self.stream = stream
        self.status_code = 200
        self.background = None
        # No caching or proxy buffering of a live stream.
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        events = self.stream.events()
        try:
            async with anyio.create_task_group() as group:

                async def respond() -> None:
                    start = {"type": "http.response.start", "status": self.status_code}
                    try:
                        await send({**start, "headers": self.raw_headers})
                        async for chunk in events:
                            await send(_body(chunk, more=True))
                        await send(_body(b"", more=False))
                    except OSError:  # the connection broke under a write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(respond)
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await events.aclose()
                await self.stream.finish()


class GenerationStream:
    """One streamed generation: its events, and how it ends (billed exactly once).

    Parameters
    ----------
    pieces
        The backend's stream, already started: ``first`` is its first piece.
    started
        When the generation started (``time.perf_counter``), for the record's latency.
    """

    def __init__(
        self,
        container: Container,
        call: Call,
        manifest: ModelManifest,
        pieces: Iterator[wire.GenerationChunk],
        first: wire.GenerationChunk,
        shape: Shape,
        started: float,
        include_usage: bool,
    ) -> None:
        self.container, self.call, self.manifest = container, call, manifest
        self.pieces, self.last, self.shape = pieces, first, shape
        self.started, self.include_usage = started, include_usage
        self.billed = False

    async def events(self) -> AsyncIterator[bytes]:
        """The server-sent events, ending with ``[DONE]`` (billed before the closing events)."""
        call = self.call
        for opening in self.shape.opening():
            yield event(opening)
        chunk: wire.GenerationChunk | None = self.last
        while chunk is not None and chunk.finish_reason is None:
            self.last = chunk
            if chunk.text:
                yield event(self.shape.piece(chunk.text))
            chunk = await call.run(_next, self.pieces)
        if chunk is None:  # pragma: no cover - a runner always ends with a last piece
            return
        self.last = chunk
        self.billed = True  # one try: whatever it answers, the stream bills no more
        try:
            usage = await call.run(self._bill)
        except errors.ApiError as error:  # the text is out; the client is told it failed
            yield event({"error": errors.error_body(error, call.request_id)["error"]})
            return
        assert chunk.finish_reason is not None
        for ending in self.shape.ending(chunk.text, chunk.finish_reason):
            yield event(ending)
        if self.include_usage:
            yield event(self.shape.usage(usage))
        yield event("[DONE]")

    def _bill(self) -> api.GenerationUsage:
        return bill(
            self.container, self.call, self.manifest, self.last, self.started, delivered=True
        )

    async def finish(self) -> None:
        """End the stream however it went: close the model's stream (a generation still running
        stops, and its run slot is freed) and, unless done already, bill the tokens of the last
        piece produced. Idempotent."""
        await self.call.run(self._close_and_bill)

    def _close_and_bill(self) -> None:
        self.pieces.close()  # GeneratorExit in the runner; nothing if it has ended
        if self.billed:
            return
        self.billed = True
        try:
            self._bill()
        except errors.ApiError as error:  # nothing can reach the client any more
            logger.error(
                "an abandoned stream could not be billed",
                extra={"request_id": self.call.request_id, "error_type": type(error).__name__},
            )


async def answer(
    container: Container,
    call: Call,
    manifest: ModelManifest,
    request: wire.GenerationRequest,
    shape: Shape,
    stream: bool,
    include_usage: bool,
) -> Response:
    """Answer ``request`` whole (JSON) or as server-sent events."""
    if not stream:
        result, usage = await call.run(generate, container, call, manifest, request)
        body = shape.whole(result, usage)
        return Response(body.model_dump_json(), media_type="application/json")
    call.mark_model(manifest.model_id)
    call.bind_input(manifest.model_id, request)
    started = time.perf_counter()
    pieces = container.backends.stream(manifest, request)
    first = await call.run(_next, pieces)  # a refusal raises here: a plain error response
    if first is None:  # pragma: no cover - a runner always ends with a last piece
        raise errors.BackendUnavailable("The model ended without an answer.")
    return EventStream(
        GenerationStream(container, call, manifest, pieces, first, shape, started, include_usage)
    )
