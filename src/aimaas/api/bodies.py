"""Reading request bodies that may be raw bytes, multipart uploads or JSON with base64.

JSON bodies are accepted without a ``Content-Type`` header (simple clients often send none):
a body with no content type is parsed as JSON when it looks like JSON, and taken as raw bytes
otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from aimaas import errors
from aimaas.api import schemas as api
from aimaas.api.handlers import summarize_validation

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_TYPES = frozenset({"application/json"})
IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "application/octet-stream",
    }
)
AUDIO_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream"}
)


def media_type(request: Request) -> str | None:
    """The request's media type, lower case, without parameters (None when absent)."""
    raw = request.headers.get("content-type")
    if not raw:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


def is_json_type(media: str | None) -> bool:
    return media is not None and (media in JSON_TYPES or media.endswith("+json"))


def check_json(request: Request) -> None:
    """Refuse a non-JSON content type with 415 (no Content-Type at all is accepted)."""
    media = media_type(request)
    if media is not None and not is_json_type(media):
        raise errors.UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted here; send application/json."
        )


async def require_json(request: Request) -> None:
    """Dependency of JSON-only routes (async: no thread-pool hop for a header check)."""
    check_json(request)


def parse_json(body: bytes, model: type[ModelT]) -> ModelT:
    """Parse ``body`` into ``model``: 400 for bad JSON or UTF-8, 422 for a wrong shape."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: not a server fault
        raise errors.MalformedRequest("The body is not valid UTF-8 JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.InvalidInput(summarize_validation(exc.errors())) from None


def decode_base64(value: str, what: str) -> bytes:
    """Standard base64 (a ``data:...;base64,`` prefix is allowed) to bytes; 422 if invalid."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidInput(f"{what} is not valid base64.") from None


async def read_files(request: Request, accepted: Collection[str], what: str) -> list[bytes] | None:
    """Files of a raw or multipart body; None when the body is JSON (the caller parses it).

    Raises
    ------
    aimaas.errors.UnsupportedMediaType
        A content type that is neither JSON, multipart nor one of ``accepted``.
    """
    media = media_type(request)
    if media == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # python-multipart raises several unexported types
            raise errors.MalformedRequest("The multipart body could not be parsed.") from exc
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise errors.InvalidInput(f"The multipart body has no file; upload the {what}.")
            return [await f.read() for f in files]
        finally:
            await form.close()
    if is_json_type(media):
        return None
    body = await request.body()
    if media is None:
        return None if body.lstrip()[:1] in (b"{", b"[") else [body]
    if media in accepted:
        return [body]
    raise errors.UnsupportedMediaType(
        f"Content-Type {media!r} is not accepted for {what}; send one of "
        f"{sorted(accepted)}, multipart/form-data or application/json."
    )


async def json_body(request: Request, model: type[ModelT]) -> ModelT:
    """The body of ``request`` parsed into ``model`` (415 for a non-JSON content type)."""
    check_json(request)
    return parse_json(await request.body(), model)


def base64_files(
    one: str | None, many: list[str] | None, field: str, kind: str = ""
) -> list[bytes]:
    """The files of a JSON body that holds exactly one of ``field`` (one base64 file) or
    ``field + "s"`` (a list of them).

    Raises
    ------
    aimaas.errors.InvalidInput
        Both or neither are given, or an item is not valid base64.
    """
    if (one is None) == (many is None):
        raise errors.InvalidInput(
            f"Send exactly one of '{field}' (base64{' ' + kind if kind else ''}) or "
            f"'{field}s' (a list)."
        )
    if one is not None:
        return [decode_base64(one, field)]
    return [decode_base64(item, f"{field}s[{i}]") for i, item in enumerate(many or [])]


@dataclass(frozen=True)
class ImageInputs:
    """The images of an image request, and the ``top_k`` its JSON body asked for, if any."""

    images: list[bytes]
    top_k: int | None = None


ImageBodyT = TypeVar("ImageBodyT", bound=api.ImageFilesIn)


async def image_files(
    request: Request, json_model: type[ImageBodyT]
) -> tuple[list[bytes], ImageBodyT | None]:
    """Images from raw bytes, a multipart upload or JSON base64, with the JSON body (parsed
    into ``json_model``) when there was one: its options go with the images."""
    files = await read_files(request, IMAGE_TYPES, "image")
    if files is not None:
        return files, None
    body = parse_json(await request.body(), json_model)
    return base64_files(body.image, body.images, "image"), body


async def image_inputs(request: Request) -> ImageInputs:
    """Images from raw bytes, a multipart upload or JSON base64 (a FastAPI dependency)."""
    files, body = await image_files(request, api.ImageJsonIn)
    return ImageInputs(files, body.top_k if body else None)


@dataclass(frozen=True)
class DetectionInputs:
    """The images of a detection request, and the options its JSON body asked for, if any."""

    images: list[bytes]
    threshold: float | None = None
    max_detections: int | None = None


async def detection_inputs(request: Request) -> DetectionInputs:
    """Images for object detection, as :func:`image_inputs` reads them (a FastAPI dependency)."""
    files, body = await image_files(request, api.DetectionJsonIn)
    if body is None:
        return DetectionInputs(files)
    return DetectionInputs(files, body.threshold, body.max_detections)


async def audio_inputs(request: Request) -> list[bytes]:
    """Clips from raw bytes, a multipart upload or JSON base64 (a FastAPI dependency)."""
    files = await read_files(request, AUDIO_TYPES, "audio")
    if files is not None:
        return files
    body = parse_json(await request.body(), api.AudioJsonIn)
    return base64_files(body.audio, body.audios, "audio", "WAV")


def binary_body_openapi(accepted: Collection[str], json_model: type[BaseModel]) -> dict:
    """The ``requestBody`` OpenAPI fragment of a route that reads bytes, multipart or JSON."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    content: dict[str, dict] = {media: binary for media in sorted(accepted)}
    content["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    }
    content["application/json"] = {"schema": json_model.model_json_schema()}
    return {"requestBody": {"required": True, "content": content}}
