"""HTTP backend: the GPU server process (``functions/gpu_server``) over its /invocations route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import urllib3
from urllib3.util import Retry, Timeout

from aimaas import deadline, errors
from aimaas.backends.base import (
    STREAM_ACCEPT,
    InferenceBackend,
    parse_result,
    read_stream,
    remote_error_message,
    target_model,
)
from aimaas.inference import wire
from aimaas.manifest import ModelManifest


class HttpGpuBackend(InferenceBackend):
    """POST the task payload as JSON to ``<base_url>/invocations``.

    Connection errors and 502/503/504 answers are retried with exponential backoff (urllib3's
    ``Retry``); a server still down after that is :class:`aimaas.errors.BackendUnavailable`.

    Parameters
    ----------
    base_url
        The GPU server, e.g. ``http://127.0.0.1:8080``.
    timeout_s
        Read timeout of one attempt (connect timeout is capped at 2 s).
    retries
        Attempts after the first.
    backoff_factor
        Seconds; the n-th retry waits ``backoff_factor * 2**(n-1)``.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_factor: float = 0.1,
    ) -> None:
        self.url = base_url.rstrip("/") + "/invocations"
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,  # a read timeout may mean the model ran: do not run it twice
            status=retries,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            backoff_factor=backoff_factor,
            raise_on_status=False,
        )
        self.timeout_s = timeout_s
        self.retry = retry
        self.pool = urllib3.PoolManager(retries=retry)

    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        response = self._post(manifest, request, {"Accept": "application/json"}, stream=False)
        return parse_result(manifest, response.data)

    def stream(
        self, manifest: ModelManifest, request: wire.GenerationRequest
    ) -> Iterator[wire.GenerationChunk]:
        """The GPU server's JSON Lines stream, piece by piece as its HTTP chunks arrive.

        Closing the iterator closes the connection, which the GPU server notices and stops the
        generation (its slot is freed). Retries happen only before the answer starts.
        """
        response = self._post(manifest, request, {"Accept": STREAM_ACCEPT}, stream=True)
        try:
            yield from read_stream(response.stream(4096))
        except urllib3.exceptions.HTTPError as exc:  # broken or timed out mid-stream
            raise errors.BackendUnavailable("The GPU backend's stream broke off.") from exc
        finally:
            response.close()  # not drained: the rest of an abandoned stream is not wanted
            response.release_conn()

    def _post(
        self, manifest: ModelManifest, request: Any, accept: dict[str, str], *, stream: bool
    ) -> Any:
        body = request.model_dump_json().encode()
        # Each attempt is bounded by the request's deadline, and retries happen only while a
        # whole attempt still fits in it.
        read = deadline.bounded(self.timeout_s)
        try:
            response = self.pool.request(
                "POST",
                self.url,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    wire.TARGET_MODEL_HEADER: target_model(manifest),
                    **accept,
                },
                timeout=Timeout(connect=min(2.0, read), read=read),
                retries=self.retry if read >= self.timeout_s else False,
                preload_content=not stream,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise errors.BackendUnavailable("The GPU backend cannot be reached.") from exc
        if response.status != 200:
            status, data = response.status, response.data  # read whole: an error body is small
            response.release_conn()
            if 400 <= status < 500:
                raise errors.InvalidInput(remote_error_message(data))
            raise errors.BackendUnavailable(f"The GPU backend answered {status}; try again later.")
        return response

    def close(self) -> None:
        self.pool.clear()
