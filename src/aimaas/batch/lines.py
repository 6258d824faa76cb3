"""One batch line through the same task functions the synchronous routes use.

A line is ``{custom_id, method, url, body}``; ``url`` is a task route of this API (with its
query string, as the route would read it) and ``body`` its JSON body. The route's parsing is
reused too (:mod:`aimaas.api.bodies` for base64 media), so a line answers what the same HTTP
call would, and is billed the same way, at the batch price (:attr:`Call.batch`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from aimaas import errors
from aimaas.api import bodies, tasks
from aimaas.api import schemas as api
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.api.handlers import summarize_validation

Query = Mapping[str, str]
Runner = Callable[[Container, Call, Any, Query], BaseModel]


def _query_int(query: Query, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise errors.InvalidInput(f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise errors.InvalidInput(f"{name} must be between {low} and {high}.")
    return value


def _flag(query: Query, name: str) -> bool:
    return query.get(name, "false").lower() in {"1", "true", "yes", "on"}


def _text(container: Container, call: Call, body: Any, _: Query) -> BaseModel:
    return tasks.text_classification(container, call, api.TextClassificationIn.model_validate(body))


def _embeddings(container: Container, call: Call, body: Any, _: Query) -> BaseModel:
    return tasks.embeddings(container, call, api.EmbeddingsIn.model_validate(body))


def _images(container: Container, call: Call, body: Any, query: Query) -> BaseModel:
    parsed = api.ImageJsonIn.model_validate(body)
    images = bodies.base64_files(parsed.image, parsed.images, "image")
    top_k = parsed.top_k or _query_int(query, "top_k", 5, 1, 20)
    manifest = tasks.resolve(
        container, "image-classification", query.get("model"), query.get("version")
    )
    return tasks.image_classification(container, call, images, top_k, manifest)


def _audio(container: Container, call: Call, body: Any, query: Query) -> BaseModel:
    parsed = api.AudioJsonIn.model_validate(body)
    clips = bodies.base64_files(parsed.audio, parsed.audios, "audio", "WAV")
    manifest = tasks.resolve(
        container, "audio-classification", query.get("model"), query.get("version")
    )
    return tasks.audio_classification(container, call, clips, _flag(query, "vad"), manifest)


#: The task routes a batch may call, by path: the same task functions as the routes.
RUNNERS: Mapping[str, Runner] = {
    "/v1/text-classification": _text,
    "/v1/embeddings": _embeddings,
    "/v1/image-classification": _images,
    "/v1/audio-classification": _audio,
}


@dataclass(frozen=True)
class Line:
    """A parsed input line."""

    custom_id: str
    path: str
    query: Mapping[str, str]
    body: Any


def line_spans(data: bytes) -> list[tuple[int, int]]:
    """The ``(start, stop)`` byte offsets of the request lines of a JSONL file (lines end with
    ``\n``; blank lines are not requests). Chunks carry these offsets, so a worker reads only
    its own bytes of the file (a ranged S3 GET), never the whole file per chunk."""
    spans = []
    position = 0
    for raw in data.split(b"\n"):
        end = position + len(raw)
        if raw.strip():
            spans.append((position, end))
        position = end + 1
    return spans


def input_lines(data: bytes) -> list[bytes]:
    """The request lines of a JSONL file (blank lines are not requests)."""
    return [data[start:stop] for start, stop in line_spans(data)]


def parse_line(raw: bytes) -> Line:
    """Read one JSONL line of a batch.

    Unlike OpenAI's, a line may call any task route of :data:`RUNNERS`, not only the batch's
    ``endpoint``: one file can mix tasks (the issue's proof runs four in one batch).

    Raises
    ------
    aimaas.errors.MalformedRequest
        The line is not JSON.
    aimaas.errors.InvalidInput
        A field is missing or wrong, or the url is not a task route a batch can call.
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise errors.MalformedRequest("The line is not valid UTF-8 JSON.") from None
    if not isinstance(data, dict):
        raise errors.InvalidInput("A line must be a JSON object.")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise errors.InvalidInput("custom_id must be a non-empty string.")
    if str(data.get("method", "")).upper() != "POST":
        raise errors.InvalidInput("method must be POST.")
    url = data.get("url")
    if not isinstance(url, str):
        raise errors.InvalidInput("url must be a string.")
    parts = urlsplit(url)
    if parts.path not in RUNNERS:
        raise errors.InvalidInput(f"url must be one of {sorted(RUNNERS)}, not {parts.path!r}.")
    if not isinstance(data.get("body"), dict):
        raise errors.InvalidInput("body must be a JSON object.")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Line(custom_id, parts.path, query, data["body"])


def custom_id_of(raw: bytes) -> str | None:
    """The custom_id of a line that could not be parsed, if one can be read at all."""
    try:
        value = json.loads(raw).get("custom_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def run_line(container: Container, call: Call, line: Line) -> BaseModel:
    """Answer one line as its route would.

    Raises
    ------
    aimaas.errors.ApiError
        What the route would have answered as an error (4xx, 503).
    """
    try:
        return RUNNERS[line.path](container, call, line.body, line.query)
    except ValidationError as exc:
        raise errors.InvalidInput(summarize_validation(exc.errors())) from None
