"""The backend port: where a model runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from aimaas import errors
from aimaas.inference import wire
from aimaas.manifest import ModelManifest


class InferenceBackend(ABC):
    """Runs one inference request (one batch) for one model.

    Implementations raise :class:`aimaas.errors.InvalidInput` for input the model refuses and
    :class:`aimaas.errors.BackendUnavailable` when they cannot serve; never anything else for
    a well-formed request.
    """

    name: str = "backend"

    @abstractmethod
    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        """Run ``request`` (an :data:`aimaas.inference.InferenceRequest`) on ``manifest``.

        Returns
        -------
        object
            The matching :data:`aimaas.inference.InferenceResult`.
        """

    def stream(
        self, manifest: ModelManifest, request: wire.GenerationRequest
    ) -> Iterator[wire.GenerationChunk]:
        """Generate text for ``request`` piece by piece (see
        :meth:`aimaas.generation.runner.GenerationRunner.stream`): the last chunk carries the
        finish reason and the token counts; closing the iterator ends the generation.

        This default runs the whole generation through :meth:`invoke` and yields it as one
        piece, so every backend can answer a streamed request (a remote one buffered).
        """
        result = self.invoke(manifest, request)
        yield wire.GenerationChunk(
            text=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release pooled connections or sessions."""


def target_model(manifest: ModelManifest) -> str:
    """How a request names its model to the GPU server: ``<name>/<version>``."""
    return f"{manifest.name}/{manifest.version}"


def parse_result(manifest: ModelManifest, payload: bytes | str) -> Any:
    """Validate a remote backend's answer against the wire schema of ``manifest.task``."""
    try:
        result = wire.RESULT_ADAPTER.validate_json(payload)
    except ValueError as exc:
        raise errors.BackendUnavailable("The GPU backend answered with an invalid result.") from exc
    if result.task != manifest.task:
        raise errors.BackendUnavailable("The GPU backend answered for the wrong task.")
    return result


#: What a streaming GPU backend asks the GPU server for: one ``GenerationChunk`` per line.
STREAM_ACCEPT = "application/jsonlines"


def read_stream(parts: Iterable[bytes]) -> Iterator[wire.GenerationChunk]:
    """The chunks of a streamed GPU answer (JSON Lines) from its bytes as they arrive.

    A transport cuts the bytes anywhere (SageMaker's PayloadPart events, HTTP chunks), even
    inside a UTF-8 character: lines are re-joined here before they are decoded. The stream
    ends at the piece with a ``finish_reason``.

    Raises
    ------
    aimaas.errors.BackendUnavailable
        An error record from the server, a line that is not a chunk, or bytes that end before
        the last piece (the caller bills the counts of the pieces it already has).
    """
    buffer = b""
    for part in parts:
        buffer += part
        while (cut := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            if not line.strip():
                continue
            chunk = _stream_line(line)
            yield chunk
            if chunk.finish_reason is not None:
                return
    if buffer.strip():
        chunk = _stream_line(buffer)
        yield chunk
        if chunk.finish_reason is not None:
            return
    raise errors.BackendUnavailable("The GPU backend's stream ended before the answer did.")


def _stream_line(line: bytes) -> wire.GenerationChunk:
    import json

    try:
        record = json.loads(line)
    except ValueError as exc:
        raise errors.BackendUnavailable("The GPU backend streamed an invalid line.") from exc
    if isinstance(record, dict) and "error" in record:
        raise errors.BackendUnavailable(
            f"The GPU backend failed mid-stream: {remote_error_message(line)}"
        )
    try:
        return wire.GenerationChunk.model_validate(record)
    except ValueError as exc:
        raise errors.BackendUnavailable("The GPU backend streamed an invalid chunk.") from exc


def remote_error_message(payload: bytes) -> str:
    """The message of a remote error body in the platform's shape, or a generic one."""
    import json

    try:
        message = json.loads(payload)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "The model refused the input."
    return str(message)[:500]
