"""What one call costs in AWS at list prices, next to what it is billed (``make cost``).

Every figure is either read from the synthesized templates or measured here; only the list
prices are constants (:data:`LIST_PRICES`, us-east-1, on-demand, no free tier):

- **Configuration**, from a pure-Python synthesis of the stage (like ``cdk synth``): each
  function's memory, architecture and tracing, and whether API Gateway traces.
- **Per call, measured**: a typical request of each task goes through the real REQUEST
  authorizer and the real inference handler (API Gateway event shapes, real ONNX models) on moto's
  DynamoDB, then the real stream aggregator runs on its record (one record per aggregator
  invocation: the low-traffic worst case; under load a batch of up to ~95 shares one). Measured:
  each function's duration (billed rounded up to the millisecond), the bytes each writes to its
  log, and every DynamoDB call, priced in read and write units by AWS's rules from the items'
  sizes (writes 1 KB a unit, transactional twice; reads 4 KB a unit, half for eventually
  consistent reads).

Durations are this machine's (x86, shared), a proxy for arm64 Lambda at those memory sizes, and
moto answers in process, where DynamoDB would add a few milliseconds a call. X-Ray is charged
at its default sampling rule (5% of calls past the first each second). Not charged: the
CloudWatch metrics themselves (billed per metric a month, not per call), KMS (DynamoDB caches
its data keys), SSM (the pepper is cached), data transfer.

    python -m benchmarks.cost [--stage dev] [--calls 10] [--check]

Prints a table (cost and price per million calls), writes ``benchmarks/results/cost.json``;
with ``--check`` exits 1 when any plan is billed below cost for any task.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cost.json"

#: AWS list prices, us-east-1, USD (checked 2026-12; DynamoDB on-demand after the Nov 2024 cut).
LIST_PRICES: dict[str, float] = {
    "api_gateway_rest_request": 3.50e-6,
    "lambda_request": 0.20e-6,
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_gb_second_x86_64": 0.0000166667,
    "dynamodb_write_unit": 0.625e-6,
    "dynamodb_read_unit": 0.125e-6,
    "logs_ingested_gb": 0.50,
    "xray_trace_recorded": 5.0e-6,
}
#: X-Ray's default sampling rule: one request a second, then 5% of the rest.
XRAY_SAMPLED = 0.05


@dataclass(frozen=True)
class TypicalCall:
    """One representative request of a task."""

    task: str
    path: str
    build: Callable[[], dict[str, Any]]  # -> kwargs of ``rest_event``


@dataclass
class DynamoUsage:
    """DynamoDB calls and the capacity units they consume."""

    calls: dict[str, int] = field(default_factory=dict)
    write_units: float = 0.0
    read_units: float = 0.0

    def add(self, operation: str, write: float = 0.0, read: float = 0.0) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        self.write_units += write
        self.read_units += read


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value in wire form (``{"S": ...}`` etc.)."""
    ((kind, body),) = value.items()
    if kind == "S":
        return len(body.encode())
    if kind == "N":
        digits = len(body.strip("-").replace(".", "").lstrip("0")) or 1
        return 1 + math.ceil(digits / 2)
    if kind == "B":
        return len(body) if isinstance(body, bytes) else len(str(body))
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind in {"SS", "NS", "BS"}:
        return sum(attribute_size({kind[0]: item}) for item in body)
    if kind == "L":
        return 3 + sum(1 + attribute_size(item) for item in body)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_size(v) for k, v in body.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    """Bytes of an item in wire form: attribute names plus values."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


def write_units(size: int, transactional: bool = False) -> float:
    """Write units of one item write of ``size`` bytes (1 KB a unit, doubled in a transaction)."""
    return max(1, math.ceil(size / 1024)) * (2 if transactional else 1)


def read_units(size: int, consistent: bool) -> float:
    """Read units of reading ``size`` bytes (4 KB a unit, half for eventually consistent)."""
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


class DynamoMeter:
    """Counts DynamoDB capacity of every boto3 call made while installed (a botocore patch).

    Writes are sized from the item as stored after the call (what AWS charges: the larger of
    before and after, and items only grow here), read back outside the count.
    """

    def __init__(self) -> None:
        self.usage = DynamoUsage()
        self._reader: Any = None

    def reset(self) -> DynamoUsage:
        """The usage so far, and start counting afresh."""
        usage, self.usage = self.usage, DynamoUsage()
        return usage

    @contextlib.contextmanager
    def installed(self) -> Iterator[DynamoMeter]:
        import boto3
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        meter = self
        self._reader = boto3.client("dynamodb")

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            response = original(client, operation, params)
            if client.meta.service_model.service_name == "dynamodb" and client is not meter._reader:
                meter._count(operation, params, response, original)
            return response

        with mock.patch.object(BaseClient, "_make_api_call", counted):
            yield self

    def _stored_size(self, table: str, key: dict[str, Any], original: Callable[..., Any]) -> int:
        got = original(self._reader, "GetItem", {"TableName": table, "Key": key})
        return item_size(got.get("Item"))

    def _count(
        self, operation: str, params: dict[str, Any], response: dict[str, Any], original: Any
    ) -> None:
        consistent = bool(params.get("ConsistentRead"))
        if operation == "PutItem":
            self.usage.add(operation, write=write_units(item_size(params["Item"])))
        elif operation in {"UpdateItem", "DeleteItem"}:
            size = self._stored_size(params["TableName"], params["Key"], original)
            self.usage.add(operation, write=write_units(size))
        elif operation == "TransactWriteItems":
            total = 0.0
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                size = (
                    item_size(body["Item"])
                    if kind == "Put"
                    else (self._stored_size(body["TableName"], body["Key"], original))
                )
                total += write_units(size, transactional=True)
            self.usage.add(operation, write=total)
        elif operation == "BatchWriteItem":
            total = sum(
                write_units(item_size(request.get("PutRequest", {}).get("Item")))
                for requests in params["RequestItems"].values()
                for request in requests
            )
            self.usage.add(operation, write=total)
        elif operation == "GetItem":
            self.usage.add(operation, read=read_units(item_size(response.get("Item")), consistent))
        elif operation in {"Query", "Scan"}:
            size = sum(item_size(item) for item in response.get("Items", []))
            self.usage.add(operation, read=read_units(size, consistent))
        elif operation == "BatchGetItem":
            total = sum(
                read_units(item_size(item), False)
                for items in response.get("Responses", {}).values()
                for item in items
            )
            self.usage.add(operation, read=total)
        else:
            self.usage.add(operation)


@dataclass(frozen=True)
class FunctionConfig:
    """A Lambda function as synthesized."""

    memory_mb: int
    architecture: str
    traced: bool


@dataclass(frozen=True)
class Configuration:
    """What the cost depends on in the synthesized stage."""

    functions: dict[str, FunctionConfig]  # authorizer, aggregator, and one per model group
    groups: dict[str, str]  # task -> model group
    api_traced: bool


def synthesized_configuration(stage: str, registry: Path) -> Configuration:
    """Synthesize ``stage`` in process (no assets staged) and read what costs depend on."""
    import aws_cdk as cdk

    from infra import FEATURE_FLAGS, build_app
    from infra.stacks.serving import MODEL_GROUPS

    with tempfile.TemporaryDirectory() as outdir:
        app = cdk.App(
            outdir=outdir,
            context={
                **FEATURE_FLAGS,
                "aws:cdk:disable-asset-staging": True,
                "stage": stage,
                "registry": str(registry),
            },
        )
        build_app(app, nag=False)
        assembly = app.synth()
        functions: dict[str, FunctionConfig] = {}
        api_traced = False
        for stack in assembly.stacks:
            for resource in stack.template.get("Resources", {}).values():
                props = resource.get("Properties", {})
                if resource["Type"] == "AWS::ApiGateway::Stage":
                    api_traced = api_traced or bool(props.get("TracingEnabled"))
                if resource["Type"] != "AWS::Lambda::Function":
                    continue
                name = _function_role(props)
                if name:
                    functions[name] = FunctionConfig(
                        memory_mb=int(props.get("MemorySize", 128)),
                        architecture=(props.get("Architectures") or ["x86_64"])[0],
                        traced=props.get("TracingConfig", {}).get("Mode") == "Active",
                    )
    groups = {task: group.name for group in MODEL_GROUPS for task in group.tasks}
    return Configuration(functions, groups, api_traced)


def _function_role(props: dict[str, Any]) -> str | None:
    env = props.get("Environment", {}).get("Variables", {})
    if env.get("AIMAAS_MODEL_GROUP"):
        return f"inference:{env['AIMAAS_MODEL_GROUP']}"
    if str(env.get("POWERTOOLS_SERVICE_NAME", "")).endswith("authorizer"):
        return "authorizer"
    if str(props.get("Handler", "")).startswith("aggregator_handler."):
        return "aggregator"
    return None


def _typical_calls() -> list[TypicalCall]:
    from skimage import data

    from aimaas_testing.audio import beckett_path
    from aimaas_testing.media import wav

    def photo() -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    sentence = "How do I reset the password of my account after the email changed?"  # ~20 tokens
    return [
        TypicalCall("embeddings", "/v1/embeddings", lambda: _json({"input": sentence})),
        TypicalCall(
            "text-classification", "/v1/text-classification", lambda: _json({"text": sentence})
        ),
        TypicalCall(
            "image-classification",
            "/v1/image-classification",
            lambda: {
                "body": photo(),
                "headers": {"Content-Type": "image/jpeg"},
                "binary": True,
            },
        ),
        TypicalCall(
            "object-detection",
            "/v1/object-detection",
            lambda: {"body": photo(), "headers": {"Content-Type": "image/jpeg"}, "binary": True},
        ),
        TypicalCall(
            "automatic-speech-recognition",
            "/v1/audio/transcriptions",
            lambda: _multipart(
                {"model": "whisper-tiny-en"}, ("file", "beckett.wav", beckett_path().read_bytes())
            ),
        ),
        TypicalCall(
            "audio-classification",
            "/v1/audio-classification",
            lambda: {
                "body": wav(1.0),
                "headers": {"Content-Type": "audio/wav"},
                "binary": True,
            },
        ),
    ]


def _multipart(fields: dict[str, str], upload: tuple[str, str, bytes]) -> dict[str, Any]:
    """A ``multipart/form-data`` body as OpenAI's clients send a transcription."""
    boundary = "aimaas-cost-report-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    name, filename, data = upload
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return {"body": body, "headers": headers, "binary": True}


def _json(payload: dict[str, Any]) -> dict[str, Any]:
    return {"body": json.dumps(payload), "headers": {"Content-Type": "application/json"}}


@contextlib.contextmanager
def _captured_fds() -> Iterator[Callable[[], int]]:
    """Count the bytes written meanwhile to stdout and stderr, at the file descriptors and as
    Python streams (loggers made meanwhile bind to the streams; a test runner may have swapped
    them for its own). Yields a function: the bytes since it was last called."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved_fds = os.dup(1), os.dup(2)
        saved_streams = sys.stdout, sys.stderr
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        stream = os.fdopen(os.dup(sink.fileno()), "w", buffering=1)
        sys.stdout = sys.stderr = stream
        counted = [0]

        def since_last() -> int:
            stream.flush()
            size = os.fstat(sink.fileno()).st_size
            count, counted[0] = size - counted[0], size
            return count

        try:
            yield since_last
        finally:
            stream.flush()
            sys.stdout, sys.stderr = saved_streams
            _repoint_log_handlers(stream, saved_streams[0])
            stream.close()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])


def _repoint_log_handlers(old: Any, new: Any) -> None:
    """Loggers made while the streams were swapped (Powertools' service loggers outlive the
    measurement) write to ``new`` from now on instead of the closed ``old``."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


@dataclass
class Measured:
    """Per call, medians over the measured calls of one task."""

    task: str
    model: str
    units: float
    unit: str
    duration_ms: dict[str, float]  # authorizer, inference, aggregator
    log_bytes: float
    dynamodb: dict[str, dict[str, float]]  # function -> {write_units, read_units, calls}


def measure(calls: int = 10, registry: Path | None = None) -> list[Measured]:
    """Send ``calls`` typical requests of each task through the real functions on moto."""
    from aimaas_testing.imports import load_module
    from aimaas_testing.metering import moto_tables
    from aimaas_testing.paths import REGISTRY

    events = load_module(
        "aimaas_cost_lambda_events", REPO / "tests/functional/inference/lambda_events.py"
    )
    core = logging.getLogger("aimaas")  # the handler routes it to Powertools at import
    saved = (list(core.handlers), core.level, core.propagate)
    existing = set(logging.Logger.manager.loggerDict)
    try:
        with moto_tables(aggregate=False) as tables, _captured_fds() as logged:
            results = _measure_all(events, tables, logged, calls, registry or REGISTRY)
    finally:
        core.handlers, core.propagate = saved[0], saved[2]
        core.setLevel(saved[1])
        for name in set(logging.Logger.manager.loggerDict) - existing:
            _forget_logger(logging.getLogger(name))
        for name in ("aimaas_cost_authorizer", "aimaas_cost_inference"):
            sys.modules.pop(name, None)
    return results


def _forget_logger(logger: logging.Logger) -> None:
    """Return a logger made during the measurement to its unconfigured state: Powertools reuses
    a logger it configured once (its level and handler, here INFO on a closed stream), so the
    next handler loaded in this process would inherit them."""
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    for attribute in ("init", "powertools_handler", "powertools_buffer_config"):
        if hasattr(logger, attribute):
            delattr(logger, attribute)


def _measure_all(
    events: Any, tables: dict[str, str], logged: Callable[[], int], calls: int, registry: Path
) -> list[Measured]:
    from aimaas_testing.imports import load_module
    from aimaas_testing.metering import MOTO_TABLES, StreamPump

    env = {
        **tables,
        "AIMAAS_STAGE": "dev",
        "AIMAAS_REGISTRY": str(registry),
        "AIMAAS_TRUST_AUTHORIZER": "true",
        "POWERTOOLS_SERVICE_NAME": "aimaas-inference",
        "POWERTOOLS_METRICS_NAMESPACE": "aimaas",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    with mock.patch.dict(os.environ, env):
        key = _tenant_key()
        authorizer = load_module("aimaas_cost_authorizer", REPO / "functions/authorizer/handler.py")
        inference = load_module(
            "aimaas_cost_inference", REPO / "functions/inference/inference_handler.py"
        )
        pump = StreamPump(MOTO_TABLES["usage"], os.environ["AWS_REGION"])
        meter = DynamoMeter()
        results = []
        with meter.installed():
            for typical in _typical_calls():
                samples = [
                    _one_call(events, authorizer, inference, pump, meter, logged, key, typical)
                    for _ in range(calls + 2)  # two warm-up calls, not counted
                ]
                results.append(_median(typical.task, samples[2:]))
        inference.app.state.container.close()
    return results


def _tenant_key() -> str:
    import boto3

    from aimaas.config import Settings
    from aimaas.plans import load_catalog, usage_plan_name
    from aimaas_admin.service import AdminService

    gateway = boto3.client("apigateway")
    for plan in load_catalog().plans:
        gateway.create_usage_plan(name=usage_plan_name("dev", plan))
    admin = AdminService(Settings.from_env(), actor="cost-report")
    tenant = admin.create_tenant("Cost report", plan="enterprise")
    return admin.create_key(tenant.tenant_id)[1]


def _authorizer_event(key: str, path: str) -> dict[str, Any]:
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:abc123/dev/POST{path}",
        "resource": "/v1/{proxy+}",
        "path": path,
        "httpMethod": "POST",
        "headers": {"x-api-key": key},
        "multiValueHeaders": {"x-api-key": [key]},
        "requestContext": {"stage": "dev", "apiId": "abc123", "accountId": "123456789012"},
    }


def _one_call(
    events: Any,
    authorizer: Any,
    inference: Any,
    pump: Any,
    meter: DynamoMeter,
    logged: Callable[[], int],
    key: str,
    typical: TypicalCall,
) -> dict[str, Any]:
    meter.reset()
    logged()
    started = time.perf_counter()
    policy = authorizer.handler(_authorizer_event(key, typical.path), events.LambdaContext())
    authorized = time.perf_counter()
    ddb = {"authorizer": meter.reset()}
    event = events.rest_event("POST", typical.path, authorizer=policy["context"], **typical.build())
    response = inference.handler(event, events.LambdaContext())
    answered = time.perf_counter()
    ddb["inference"] = meter.reset()
    if response["statusCode"] != 200:
        raise RuntimeError(f"{typical.path}: {response['statusCode']} {response['body'][:300]}")
    aggregated = pump.drain()
    drained = time.perf_counter()
    ddb["aggregator"] = meter.reset()
    if aggregated != 1:
        raise RuntimeError(f"the aggregator saw {aggregated} records, expected 1")
    usage = json.loads(response["body"])["usage"]
    return {
        "model": response["headers"].get("x-aimaas-model", ""),
        "units": usage["units"],
        "unit": usage["unit"],
        "duration_ms": {
            "authorizer": (authorized - started) * 1000,
            "inference": (answered - authorized) * 1000,
            "aggregator": (drained - answered) * 1000,
        },
        "log_bytes": logged(),
        "dynamodb": ddb,
    }


def _median(task: str, samples: list[dict[str, Any]]) -> Measured:
    import statistics

    def mid(values: list[float]) -> float:
        return float(statistics.median(values))

    functions = ("authorizer", "inference", "aggregator")
    return Measured(
        task=task,
        model=samples[0]["model"],
        units=mid([s["units"] for s in samples]),
        unit=samples[0]["unit"],
        duration_ms={f: mid([s["duration_ms"][f] for s in samples]) for f in functions},
        log_bytes=mid([s["log_bytes"] for s in samples]),
        dynamodb={
            f: {
                "write_units": mid([s["dynamodb"][f].write_units for s in samples]),
                "read_units": mid([s["dynamodb"][f].read_units for s in samples]),
                "calls": mid([sum(s["dynamodb"][f].calls.values()) for s in samples]),
            }
            for f in functions
        },
    )


def cost_per_call(measured: Measured, config: Configuration) -> dict[str, float]:
    """The AWS cost of one call of ``measured``, by part, in USD."""
    group = config.groups.get(measured.task, "media")
    functions = {
        "authorizer": config.functions["authorizer"],
        "inference": config.functions[f"inference:{group}"],
        "aggregator": config.functions["aggregator"],
    }
    compute = sum(
        math.ceil(measured.duration_ms[name])
        / 1000
        * (function.memory_mb / 1024)
        * LIST_PRICES[f"lambda_gb_second_{function.architecture}"]
        for name, function in functions.items()
    )
    writes = sum(part["write_units"] for part in measured.dynamodb.values())
    reads = sum(part["read_units"] for part in measured.dynamodb.values())
    traced = config.api_traced or any(f.traced for f in functions.values())
    parts = {
        "api_gateway": LIST_PRICES["api_gateway_rest_request"],
        "lambda_requests": len(functions) * LIST_PRICES["lambda_request"],
        "lambda_compute": compute,
        "dynamodb": writes * LIST_PRICES["dynamodb_write_unit"]
        + reads * LIST_PRICES["dynamodb_read_unit"],
        "logs": measured.log_bytes / 2**30 * LIST_PRICES["logs_ingested_gb"],
        "xray": XRAY_SAMPLED * LIST_PRICES["xray_trace_recorded"] if traced else 0.0,
    }
    parts["total"] = sum(parts.values())
    return parts


def prices_per_plan(measured: Measured) -> dict[str, float]:
    """What each plan is billed for the call (plans.toml, with its request fee)."""
    from aimaas.plans import load_catalog

    catalog = load_catalog()
    model = measured.model.split("@")[0]
    return {
        plan: float(catalog.price(measured.task, model, measured.units, plan, measured.unit))
        for plan in catalog.plans
    }


def report(stage: str = "dev", calls: int = 10, registry: Path | None = None) -> dict[str, Any]:
    """Measure, price and compare; the JSON that ``main`` prints as a table."""
    from aimaas_testing.paths import REGISTRY

    config = synthesized_configuration(stage, registry or REGISTRY)
    rows = []
    for measured in measure(calls, registry):
        cost = cost_per_call(measured, config)
        prices = prices_per_plan(measured)
        rows.append(
            {
                **asdict(measured),
                "cost_usd": cost,
                "price_usd": prices,
                "below_cost": sorted(plan for plan, usd in prices.items() if usd < cost["total"]),
            }
        )
    return {
        "benchmark": "cost",
        "stage": stage,
        "list_prices": LIST_PRICES,
        "xray_sampled": XRAY_SAMPLED,
        "functions": {name: asdict(f) for name, f in config.functions.items()},
        "api_traced": config.api_traced,
        "rows": rows,
    }


def _table(result: dict[str, Any]) -> str:
    plans = list(result["rows"][0]["price_usd"]) if result["rows"] else []
    million = 1_000_000
    head = (
        "| task (model) | units | ms auth / infer / agg | log B | DynamoDB WU / RU | "
        "cost $/M calls | " + " | ".join(f"{p} $/M" for p in plans) + " | below cost |"
    )
    lines = [head, "|" + "---|" * (7 + len(plans))]
    for row in result["rows"]:
        d, ddb = row["duration_ms"], row["dynamodb"]
        writes = sum(p["write_units"] for p in ddb.values())
        reads = sum(p["read_units"] for p in ddb.values())
        lines.append(
            f"| {row['task']} ({row['model']}) | {row['units']:g} {row['unit']} | "
            f"{d['authorizer']:.1f} / {d['inference']:.1f} / {d['aggregator']:.1f} | "
            f"{row['log_bytes']:.0f} | {writes:g} / {reads:g} | "
            f"{row['cost_usd']['total'] * million:.2f} | "
            + " | ".join(f"{row['price_usd'][p] * million:.2f}" for p in plans)
            + f" | {', '.join(row['below_cost']) or '-'} |"
        )
    parts = result["rows"][0]["cost_usd"] if result["rows"] else {}
    if parts:
        lines.append("")
        lines.append(
            "cost of the first row by part, $/M calls: "
            + ", ".join(f"{k} {v * million:.2f}" for k, v in parts.items() if k != "total")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--calls", type=int, default=10, help="measured calls per task")
    parser.add_argument("--check", action="store_true", help="exit 1 if any plan is below cost")
    args = parser.parse_args(argv)
    result = report(args.stage, args.calls)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(_table(result))
    below = [
        f"{r['task']}: {', '.join(r['below_cost'])}" for r in result["rows"] if r["below_cost"]
    ]
    if below:
        print("billed below cost: " + "; ".join(below), file=sys.stderr)
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
