"""The inference Lambda: API Gateway (REST, proxy) -> Mangum -> the aimaas FastAPI app.

Observability (AWS Lambda Powertools):

- Logger: structured JSON; every line written while a request is served carries its
  ``request_id`` and ``model`` (a filter reads them from context variables). Events and headers
  are never logged, so API keys never reach the logs.
- Metrics (CloudWatch EMF, namespace ``aimaas``): ``Latency`` (ms), ``Requests`` and ``Errors``
  by ``model`` and ``status_class``, plus Powertools' ``ColdStart``.
- Tracer: an X-Ray segment per invocation, inside Lambda unless ``POWERTOOLS_TRACE_DISABLED``
  is true. Outside Lambda no Tracer is built at all: constructing one imports the X-Ray SDK
  and botocore even when disabled (about a second of cold start on a loaded 2-core machine).

Configuration comes from ``AIMAAS_*`` environment variables (see ``aimaas.config.Settings``);
behind API Gateway set ``AIMAAS_TRUST_AUTHORIZER=true`` so the key checked by the Lambda
authorizer is not checked again. The container is built at import (init phase); models load
on first use, so a cold start pays only for the model it is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from aimaas.api import create_app
from aimaas.api.context import MODEL_HEADER, REQUEST_ID_HEADER, RequestContextFilter
from aimaas.metering import USAGE_NOT_RECORDED

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "aimaas-inference")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "aimaas"))


def _build_tracer() -> Any:
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in {"1", "true"}
    if disabled or not os.environ.get("LAMBDA_TASK_ROOT"):
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


tracer = _build_tracer()


def _traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    return tracer.capture_lambda_handler(fn, capture_response=False) if tracer else fn


def _route_core_logs_through_powertools() -> None:
    # The core logs to the "aimaas" logger tree; give it Powertools' JSON handler, tagged with
    # the request id and model of the request being served.
    handler = logger.registered_handler
    if not any(isinstance(f, RequestContextFilter) for f in handler.filters):
        handler.addFilter(RequestContextFilter())
    core = logging.getLogger("aimaas")
    core.handlers = [handler]
    core.setLevel(logger.log_level)
    core.propagate = False


_route_core_logs_through_powertools()
app = create_app()
asgi = Mangum(app, lifespan="off")


def _headers(response: dict[str, Any]) -> dict[str, str]:
    found = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if values:
            found.setdefault(key.lower(), values[0])
    return found


def _error_code(response: dict[str, Any]) -> str | None:
    try:
        return json.loads(response.get("body") or "{}")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _count_ledger_write_failure() -> None:
    # Its own EMF document, dimensioned by service only: the alarm watches exactly that series,
    # which the per-model dimensions of the request metrics would otherwise split.
    with single_metric(
        name="LedgerWriteFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE},
    ):
        pass


@logger.inject_lambda_context(clear_state=True, log_event=False)
@_traced
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one API Gateway proxy event.

    Parameters
    ----------
    event
        An API Gateway REST (v1) or HTTP API (v2) proxy event.
    context
        The Lambda context.

    Returns
    -------
    dict
        The proxy response (statusCode, headers, body, isBase64Encoded).
    """
    started = time.perf_counter()
    response = asgi(event, context)
    latency_ms = (time.perf_counter() - started) * 1000.0
    status = int(response.get("statusCode", 500))
    headers = _headers(response)
    model = headers.get(MODEL_HEADER.lower(), "none")
    metrics.add_dimension("model", model)
    metrics.add_dimension("status_class", f"{status // 100}xx")
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if status >= 500:
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
    if status == 503 and _error_code(response) == USAGE_NOT_RECORDED:
        _count_ledger_write_failure()
    logger.info(
        "request served",
        extra={
            "request_id": headers.get(REQUEST_ID_HEADER.lower()),
            "model": model,
            "status": status,
            "latency_ms": round(latency_ms, 3),
        },
    )
    return response
