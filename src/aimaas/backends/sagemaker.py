"""SageMaker backend: a multi-model real-time endpoint through ``sagemaker-runtime``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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


class SageMakerBackend(InferenceBackend):
    """``invoke_endpoint`` naming the model in ``CustomAttributes`` and the JSON wire format.

    The endpoint the CDK app creates is a single-model endpoint serving the whole registry, and
    SageMaker rejects ``TargetModel`` on those ("not a multi-model endpoint"); the GPU server
    reads ``model=<name>/<version>`` from the custom attributes header instead.

    botocore's standard retry mode retries throttling and transient errors with backoff; the
    timeouts bound one attempt so a stuck endpoint cannot eat the Lambda's whole budget.

    Parameters
    ----------
    endpoint_name
        The endpoint to call.
    timeout_s
        Read timeout of one attempt.
    client
        A ``sagemaker-runtime`` client (tests pass one wrapped in botocore's Stubber).
    """

    name = "sagemaker"

    def __init__(self, endpoint_name: str, timeout_s: float = 10.0, client: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self.timeout_s = timeout_s
        if client is None:
            import boto3  # deferred: only stages with a GPU endpoint pay for it
            from botocore.config import Config

            client = boto3.client(
                "sagemaker-runtime",
                config=Config(
                    connect_timeout=2,
                    read_timeout=timeout_s,
                    # Two attempts of at most timeout_s each (plus connects) fit in the request
                    # deadline: 2 x 10 s + 2 x 2 s < 25 s with the defaults.
                    retries={"mode": "standard", "max_attempts": 2},
                ),
            )
        self.client = client

    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        response = self._call(self.client.invoke_endpoint, manifest, request, "application/json")
        return parse_result(manifest, response["Body"].read())

    def stream(
        self, manifest: ModelManifest, request: wire.GenerationRequest
    ) -> Iterator[wire.GenerationChunk]:
        """``invoke_endpoint_with_response_stream``: the GPU server's JSON Lines arrive as
        PayloadPart events cut at arbitrary byte boundaries and are re-joined into chunks.

        An error event (``ModelStreamError``, ``InternalStreamFailure``; botocore raises them
        as ``EventStreamError`` while iterating) ends the stream with
        :class:`aimaas.errors.BackendUnavailable`; the API layer bills the pieces already out.
        Closing the iterator closes the event stream (and its connection).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        response = self._call(
            self.client.invoke_endpoint_with_response_stream, manifest, request, STREAM_ACCEPT
        )
        events = response["Body"]
        try:
            yield from read_stream(payload_parts(events))
        except (ClientError, BotoCoreError) as exc:
            raise errors.BackendUnavailable("The GPU endpoint's stream broke off.") from exc
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _call(self, method: Any, manifest: ModelManifest, request: Any, accept: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline.bounded(self.timeout_s)  # a request already out of time is not sent
        try:
            return method(
                EndpointName=self.endpoint_name,
                CustomAttributes=f"model={target_model(manifest)}",
                ContentType="application/json",
                Accept=accept,
                Body=request.model_dump_json().encode(),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("OriginalStatusCode", 0) or 0)
            if error.get("Code") == "ModelError" and 400 <= status < 500:
                raw = exc.response.get("OriginalMessage", "") or ""
                raise errors.InvalidInput(remote_error_message(raw.encode())) from exc
            raise errors.BackendUnavailable("The GPU endpoint cannot serve right now.") from exc
        except BotoCoreError as exc:
            raise errors.BackendUnavailable("The GPU endpoint cannot be reached.") from exc


def payload_parts(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The bytes of the ``PayloadPart`` events of a response stream, in order.

    Raises
    ------
    aimaas.errors.BackendUnavailable
        An error event arrives as a plain dict (botocore normally raises it itself).
    """
    for event in events:
        if "PayloadPart" in event:
            yield event["PayloadPart"].get("Bytes", b"")
        elif "ModelStreamError" in event or "InternalStreamFailure" in event:
            detail = event.get("ModelStreamError") or event.get("InternalStreamFailure") or {}
            raise errors.BackendUnavailable(
                f"The GPU endpoint's stream failed: {str(detail.get('Message', ''))[:200]}"
            )
