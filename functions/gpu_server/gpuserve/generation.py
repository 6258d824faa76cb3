"""Language models on the GPU server: whole and streamed generations, a bounded number at once.

A ``text-generation`` model is a :class:`aimaas.generation.runner.GenerationRunner` (ONNX
Runtime GenAI) built with the CUDA provider when the server's target offers it, on the CPU
otherwise. Its requests are not merged into batches: each generation has its own generator and
KV cache and runs token by token in a thread of the worker's own pool, so up to
``max_generations`` run at once and the next one is refused with 503 ``overloaded`` rather than
queued (a queued stream would only time out at the caller).

Why not the library's continuous-batching ``og.Engine`` (present in onnxruntime-genai 0.18.0,
``configured_max_batch_size`` 4 on this model): adopting it means a scheduler loop that owns
the model and hands tokens to requests, plus its own stop/cancel semantics; that is a separate
change, measured on a GPU first. Independent generators keep the runner's deadline, stop
sequence and close-at-once behaviour unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aimaas import errors
from aimaas.generation.runner import GenerationRunner, load_generation_runner
from aimaas.inference import wire
from aimaas.manifest import ModelManifest

from .engine import CUDA, ExecutionTarget, LoadedSession

#: Media type of a streamed answer: one JSON object per line (a ``GenerationChunk``, or a final
#: ``{"error": ...}``). SageMaker's InvokeEndpointWithResponseStream passes the container's bytes
#: on as PayloadPart events cut at arbitrary points, so the reader must re-split on newlines;
#: JSON Lines needs nothing more than that (SSE would add a second framing to strip).
STREAM_MEDIA_TYPE = "application/jsonlines"
STREAM_MEDIA_TYPES = (STREAM_MEDIA_TYPE, "application/x-ndjson", "application/jsonl")

_DONE = object()


def wants_stream(accept: str, body_flag: object) -> bool:
    """Whether a request asks for a streamed answer: ``"stream": true`` in the body, or an
    ``Accept`` naming JSON Lines (what ``invoke_endpoint_with_response_stream(Accept=...)``
    forwards)."""
    if body_flag is True:
        return True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(types & set(STREAM_MEDIA_TYPES))


def load_generation(
    manifest: ModelManifest, folder: Path, target: ExecutionTarget
) -> tuple[GenerationRunner, LoadedSession]:
    """The runner of a language model on ``target``'s device: CUDA when the target offers it
    and the model loads there, else the CPU (refused when the server requires a GPU).

    Raises
    ------
    aimaas.errors.BackendUnavailable
        The model loads nowhere, or CUDA failed and ``AIMAAS_GPU_REQUIRE`` is set.
    """
    offered = [p if isinstance(p, str) else p[0] for p in target.providers(manifest)]
    threads = target.options.threads
    notes: list[str] = ["onnxruntime-genai runtime"]
    if CUDA in offered:
        try:
            runner = load_generation_runner(manifest, folder, threads=threads, providers=[CUDA])
            return runner, LoadedSession(session=None, providers=["genai:cuda"], notes=notes)
        except errors.BackendUnavailable:
            if target.options.require_gpu:
                raise errors.BackendUnavailable(
                    f"{manifest.model_id} did not load on CUDA (onnxruntime-genai-cuda, driver).",
                    code="gpu_unavailable",
                ) from None
            notes.append("CUDA load failed; running on CPU")
    runner = load_generation_runner(manifest, folder, threads=threads, providers=[])
    return runner, LoadedSession(session=None, providers=["genai:cpu"], notes=notes)


class GenerationWorker:
    """One loaded language model: whole answers and streams, at most ``max_generations`` at once.

    Parameters
    ----------
    manifest
        The model version.
    runner
        Its loaded runner.
    loaded
        Where it runs (reported by ``/metrics``).
    max_generations
        Generations in flight; one more is refused with 503 ``overloaded``.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        runner: GenerationRunner,
        loaded: LoadedSession,
        max_generations: int,
    ) -> None:
        from .models import RequestStats

        self.manifest = manifest
        self.runner = runner
        self.loaded = loaded
        self.max_generations = max(1, max_generations)
        self.stats = RequestStats()
        self.tokens_out = 0
        self.peak = 0
        self._active = 0
        self._lock = threading.Lock()
        self._closed = False
        # One thread per slot: a generation's token steps never wait for another's thread.
        self._pool = ThreadPoolExecutor(self.max_generations, thread_name_prefix="genai")

    # ---- slots ------------------------------------------------------------------------------

    def _acquire(self) -> None:
        with self._lock:
            if self._closed:
                raise errors.BackendUnavailable("The server is shutting down.")
            if self._active >= self.max_generations:
                raise errors.Overloaded(
                    f"{self.manifest.model_id} is running {self.max_generations} generations; "
                    "try again shortly."
                )
            self._active += 1
            self.peak = max(self.peak, self._active)

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    @property
    def active(self) -> int:
        """Generations in flight now."""
        return self._active

    # ---- requests ---------------------------------------------------------------------------

    async def infer(self, request: wire.GenerationRequest) -> wire.GenerationResult:
        """The whole generation (503 when every slot is taken)."""
        self._acquire()
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            result: wire.GenerationResult = await loop.run_in_executor(
                self._pool, self.runner.run, request
            )
        except Exception:
            self.stats.errors += 1
            raise
        finally:
            self._release()
        self._done(started, result.completion_tokens)
        return result

    async def stream(self, request: wire.GenerationRequest) -> AsyncIterator[wire.GenerationChunk]:
        """The generation piece by piece. The slot is taken before the first piece and the
        first piece is computed before this returns, so a refused prompt (422) or a full
        server (503) is still an ordinary error answer, not a broken stream.

        Returns
        -------
        AsyncIterator[GenerationChunk]
            Closing it (the client went away) stops the generation and frees the slot.
        """
        self._acquire()
        started = time.perf_counter()
        pieces: Iterator[wire.GenerationChunk] = self.runner.stream(request)
        step = self._pool.submit(next, pieces, _DONE)
        try:
            first = await asyncio.wrap_future(step)
        except BaseException:
            self.stats.errors += 1
            self._finish(pieces, step)
            raise
        return self._rest(pieces, first, started)

    async def _rest(
        self, pieces: Iterator[wire.GenerationChunk], first: Any, started: float
    ) -> AsyncIterator[wire.GenerationChunk]:
        last: Any = first
        step: Future[Any] | None = None
        try:
            piece = first
            while piece is not _DONE:
                last = piece
                yield piece
                step = self._pool.submit(next, pieces, _DONE)
                piece = await asyncio.wrap_future(step)
        except Exception:
            self.stats.errors += 1
            raise
        finally:
            self._finish(pieces, step)
        if isinstance(last, wire.GenerationChunk):
            self._done(started, last.completion_tokens)

    def _finish(self, pieces: Iterator[wire.GenerationChunk], step: Future[Any] | None) -> None:
        """Close the runner's stream (its finally frees the KV cache) and then the slot, without
        awaiting: a stream the client abandoned is being cancelled, and an await here would be
        cancelled too. The close waits for a token step still running in its thread (a
        generator cannot be closed while it runs)."""

        def close() -> None:
            if step is not None:
                with contextlib.suppress(BaseException):
                    step.result()
            try:
                pieces.close()  # type: ignore[attr-defined]
            finally:
                self._release()

        try:
            self._pool.submit(close)
        except RuntimeError:  # the pool is shut down: nothing more runs on it
            self._release()

    def _done(self, started: float, tokens: int) -> None:
        self.stats.requests += 1
        self.tokens_out += tokens
        self.stats.latency_ms.append((time.perf_counter() - started) * 1000.0)

    # ---- reporting and shutdown -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where the model runs and its generation statistics."""
        return {
            "model": self.manifest.model_id,
            "providers": self.loaded.providers,
            "precision": self.loaded.precision,
            "notes": self.loaded.notes,
            "generation": {
                "max_generations": self.max_generations,
                "active": self._active,
                "peak": self.peak,
                "completion_tokens": self.tokens_out,
            },
            **self.stats.snapshot(),
        }

    async def aclose(self) -> None:
        """Refuse new generations; running ones finish in their threads."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def chunk_line(chunk: wire.GenerationChunk) -> bytes:
    """One streamed piece as a JSON Lines record."""
    return chunk.model_dump_json().encode() + b"\n"


def error_line(error: errors.ApiError, request_id: str) -> bytes:
    """A failure after the stream began, as its last record (the status is already 200)."""
    import json

    return json.dumps(errors.error_body(error, request_id)).encode() + b"\n"


def max_generations(environ: dict[str, str] | Any, default: int) -> int:
    """``AIMAAS_GPU_MAX_GENERATIONS``, else ``default``."""
    value = environ.get("AIMAAS_GPU_MAX_GENERATIONS") if environ else None
    return int(value) if value not in (None, "") else default


__all__: Sequence[str] = (
    "STREAM_MEDIA_TYPE",
    "GenerationWorker",
    "chunk_line",
    "error_line",
    "load_generation",
    "wants_stream",
)
