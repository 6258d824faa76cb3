"""Real-shaped API Gateway REST (v1 payload) proxy events and a Lambda context, for handler tests.

Shared by ``test_handler.py`` (in process) and ``tests/functional/image_tree`` (a clean
interpreter); standard library only so the clean interpreter can import it too.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

AUTHORIZER = {
    "tenant_id": "t_lambda0000000001",
    "key_id": "lambdakey001",
    "plan": "pro",
    "principalId": "t_lambda0000000001",
    "integrationLatency": 3,
}


def rest_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    binary: bool = False,
    authorizer: dict[str, Any] | None = AUTHORIZER,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy event (``/v1/{proxy+}``, stage ``prod``)."""
    request_id = request_id or str(uuid.uuid4())
    headers = {
        "Accept": "*/*",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "python-requests/2.32.3",
        "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    if isinstance(body, bytes):
        encoded = base64.b64encode(body).decode() if binary else body.decode()
    else:
        encoded = body
    return {
        "resource": "/v1/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.removeprefix("/v1/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": "/v1/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": "Abc123=",
            "requestTime": "29/Nov/2026:17:32:52 +0000",
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795800000000,
            "requestId": request_id,
            "identity": {
                "apiKey": "usage-plan-key-value",
                "apiKeyId": "k7x9apigwid",
                "sourceIp": "203.0.113.7",
                "userAgent": "python-requests/2.32.3",
            },
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
            **({"authorizer": authorizer} if authorizer is not None else {}),
        },
        "body": encoded,
        "isBase64Encoded": binary,
    }


def json_event(path: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
    """A POST with a JSON body (Content-Type as API Gateway forwards it, mixed case)."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return rest_event("POST", path, body=json.dumps(payload), headers=headers, **kwargs)


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name: str = "aimaas-inference"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aimaas-inference"
    aws_request_id: str = "5f2e1c3a-0000-4000-8000-000000000001"
    log_group_name: str = "/aws/lambda/aimaas-inference"
    log_stream_name: str = "2026/11/29/[$LATEST]abc"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
