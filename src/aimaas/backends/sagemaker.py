"""SageMaker backend: a multi-model real-time endpoint through ``sagemaker-runtime``."""

from __future__ import annotations

from typing import Any

from aimaas import deadline, errors
from aimaas.backends.base import (
    InferenceBackend,
    parse_result,
    remote_error_message,
    target_model,
)
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
        from botocore.exceptions import BotoCoreError, ClientError

        deadline.bounded(self.timeout_s)  # a request already out of time is not sent
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                CustomAttributes=f"model={target_model(manifest)}",
                ContentType="application/json",
                Accept="application/json",
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
        return parse_result(manifest, response["Body"].read())
