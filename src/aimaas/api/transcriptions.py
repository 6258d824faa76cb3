"""Speech to text as OpenAI serves it: ``/v1/audio/transcriptions`` and ``/v1/audio/translations``.

The multipart form is read here (a FastAPI dependency); :func:`transcribe` is the task (plain
function: form and file in, rendered response out), billed per audio second through the same
meter as every other task, exactly once, and only after the model answered.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from aimaas import errors
from aimaas.api import schemas as api
from aimaas.api.bodies import media_type
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.api.handlers import summarize_validation
from aimaas.api.service import billable, invoke, meter
from aimaas.inference import wire
from aimaas.manifest import ModelManifest, SpeechPreprocessing
from aimaas.speech import formats
from aimaas.speech.languages import name_of

TASK = "automatic-speech-recognition"
#: OpenAI's model names that stand for the stage's default speech model.
ALIASES = frozenset({"whisper-1"})
#: The ``default_models`` key of the stage's translation model.
TRANSLATION_DEFAULT = "speech-translation"
#: Form fields a client may repeat (the ``openai`` client sends lists as ``name[]``).
LISTS = {"timestamp_granularities[]": "timestamp_granularities"}


@dataclass(frozen=True)
class TranscriptionInputs:
    """The uploaded file and the form's other fields."""

    audio: bytes
    form: api.TranscriptionIn


async def transcription_inputs(request: Request) -> TranscriptionInputs:
    """Read OpenAI's multipart form: exactly one ``file`` and the fields of
    :class:`~aimaas.api.schemas.TranscriptionIn` (a FastAPI dependency).

    Raises
    ------
    aimaas.errors.UnsupportedMediaType
        The body is not ``multipart/form-data`` (415).
    aimaas.errors.InvalidInput
        No file, several files, or a field out of range (422).
    """
    if media_type(request) != "multipart/form-data":
        raise errors.UnsupportedMediaType(
            "Send the recording as multipart/form-data with a 'file' field (as OpenAI's API)."
        )
    try:
        form = await request.form(max_files=2, max_fields=16)
    except Exception as exc:  # python-multipart and Starlette raise several unexported types
        raise errors.MalformedRequest("The multipart body could not be parsed.") from exc
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if len(files) != 1 or files[0][0] != "file":
            raise errors.InvalidInput("Upload exactly one recording, in the 'file' field.")
        fields: dict[str, object] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                continue
            if key in LISTS:
                fields.setdefault(LISTS[key], []).append(value)  # type: ignore[union-attr]
            elif key in fields:
                raise errors.InvalidInput(f"Field {key!r} is given more than once.")
            else:
                fields[key] = value
        try:
            parsed = api.TranscriptionIn.model_validate(fields)
        except ValidationError as exc:
            raise errors.InvalidInput(summarize_validation(exc.errors())) from None
        return TranscriptionInputs(await files[0][1].read(), parsed)
    finally:
        await form.close()


def resolve(container: Container, name: str, translate: bool = False) -> ModelManifest:
    """The speech model ``name``; ``whisper-1`` is the stage's default for transcription, or
    for translation (``default_models["speech-translation"]``, a multilingual model).

    Raises
    ------
    aimaas.errors.NotFound
        Unknown model, or no default configured.
    aimaas.errors.InvalidInput
        Not a speech model, or asked to translate and unable to.
    """
    registry = container.registry
    if name in ALIASES and translate:
        default = registry.default_models.get(TRANSLATION_DEFAULT)
        if default is None:
            raise errors.NotFound("No translation model is configured for this stage.")
        manifest = registry.resolve_for_task(TASK, default, None)
    elif name in ALIASES:
        manifest = registry.default(TASK)
    else:
        manifest = registry.resolve_for_task(TASK, name, None)
    params = manifest.preprocessing
    if translate and not (isinstance(params, SpeechPreprocessing) and params.translate):
        raise errors.InvalidInput(
            f"{manifest.name} does not translate; use whisper-1 or a multilingual model."
        )
    return manifest


def transcribe(
    container: Container,
    call: Call,
    inputs: TranscriptionInputs,
    manifest: ModelManifest,
    translate: bool = False,
) -> Response:
    """Transcribe (or translate into English) one recording and render it as asked."""
    form = inputs.form
    words = "word" in form.timestamp_granularities
    if form.timestamp_granularities and form.response_format != "verbose_json":
        raise errors.InvalidInput("timestamp_granularities needs response_format=verbose_json.")
    started = time.perf_counter()
    result = invoke(
        container,
        call,
        manifest,
        wire.TranscriptionRequest(
            audio=[inputs.audio],
            language=form.language,
            prompt=form.prompt,
            temperature=form.temperature,
            translate=translate,
            word_timestamps=words,
            traditional_chinese=form.chinese_script == "traditional",
        ),
    )
    usage = meter(container, call, manifest, TASK, billable(manifest, [result]), started)
    return render(result, form, usage, translate)


def render(
    result: wire.TranscriptionResult,
    form: api.TranscriptionIn,
    usage: api.Usage,
    translate: bool,
) -> Response:
    """The response in ``form.response_format``, byte for byte in OpenAI's shapes."""
    duration = sum(result.durations_s)
    billed = api.TranscriptionUsage(
        seconds=math.ceil(duration),
        units=usage.units,
        unit=usage.unit,
        price_usd=usage.price_usd,
    )
    fmt = form.response_format
    if fmt == "text":
        return Response(result.text + "\n", media_type="text/plain; charset=utf-8")
    if fmt == "srt":
        return Response(formats.srt(result.segments), media_type="text/plain; charset=utf-8")
    if fmt == "vtt":
        return Response(formats.vtt(result.segments), media_type="text/vtt; charset=utf-8")
    if fmt == "json":
        body: api.TranscriptionOut | api.VerboseTranscriptionOut = api.TranscriptionOut(
            text=result.text, usage=billed
        )
    else:
        granularities = form.timestamp_granularities or ["segment"]
        body = api.VerboseTranscriptionOut(
            task="translate" if translate else "transcribe",
            language=name_of(result.language),
            duration=round(duration, 3),
            text=result.text,
            segments=result.segments if "segment" in granularities else None,
            words=result.words if "word" in granularities else None,
            usage=billed,
        )
    payload = body.model_dump(exclude_none=True)
    return Response(json.dumps(payload, ensure_ascii=False), media_type="application/json")
