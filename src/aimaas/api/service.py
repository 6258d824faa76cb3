"""The prediction pipeline shared by every route: check, run, meter, price.

Order matters for billing: the model runs first, then the usage record is made durable, then
the answer is sent. A failed prediction raises before metering (never billed); a record that
cannot be written raises :class:`aimaas.errors.BackendUnavailable` and the prediction is not
served (nothing billed, nothing answered).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aimaas import deadline, errors
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.api.schemas import Usage
from aimaas.inference.wire import batch_size
from aimaas.manifest import ModelManifest

logger = logging.getLogger("aimaas.api")


@dataclass(frozen=True)
class Billable:
    """What one served call consumed, in its billing unit."""

    units: float
    unit: str


def billable(manifest: ModelManifest, results: list[Any]) -> Billable:
    """Units of a call from its results, in ``manifest.billing_unit``.

    ``1k_tokens`` sums ``token_counts``, ``image`` counts images, ``audio_second`` sums
    ``durations_s`` and ``call`` is one per request.
    """
    unit = manifest.billing_unit
    if unit == "1k_tokens":
        tokens = sum(sum(getattr(r, "token_counts", [])) for r in results)
        return Billable(tokens / 1000.0, unit)
    if unit == "audio_second":
        return Billable(float(sum(sum(getattr(r, "durations_s", [])) for r in results)), unit)
    if unit == "image":
        return Billable(float(sum(len(getattr(r, "predictions", [])) for r in results)), unit)
    return Billable(1.0, unit)


def check_batch(manifest: ModelManifest, wire_request: Any) -> None:
    """Refuse a batch over the model's ``max_batch_size`` (422) before it reaches the model."""
    size = batch_size(wire_request)
    if size > manifest.max_batch_size:
        raise errors.InvalidInput(
            f"{size} inputs is over the batch limit of {manifest.model_id} "
            f"({manifest.max_batch_size}); split the request."
        )


def invoke(container: Container, call: Call, manifest: ModelManifest, wire_request: Any) -> Any:
    """Run one batch on the backend chosen for ``manifest`` (in process or GPU)."""
    check_batch(manifest, wire_request)
    call.mark_model(manifest.model_id)
    call.bind_input(manifest.model_id, wire_request)
    return container.backends.invoke(manifest, wire_request)


def price_of(task: str, model: str, billed: Billable, plan: str) -> float | None:
    """The charge of ``billed`` on ``plan`` (None when no price is configured)."""
    from aimaas.plans import load_catalog

    try:
        return float(load_catalog().price(task, model, billed.units, plan, billed.unit))
    except (KeyError, ValueError):
        return None


def _refuse_a_reused_key(stored: Any, record: Any, sized: bool = True) -> None:
    """A replayed request id must be the same call: otherwise one billed record would stand for
    any number of different (and larger, or other-model) predictions, past every limit. Records
    carry the digest of what the models were asked (:attr:`Call.request_digest`); records from
    before it existed are compared by model, task and size. ``sized=False``: the same request
    may use other units when run again (a sampled generation stops elsewhere), so only the
    digest tells a retry from another request."""
    same = stored is not None and (
        (stored.model, stored.model_version, stored.task, stored.unit)
        == (record.model, record.model_version, record.task, record.unit)
        and (
            not sized
            or math.isclose(float(stored.units), float(record.units), rel_tol=1e-9, abs_tol=1e-12)
        )
        and (stored.request_digest is None or stored.request_digest == record.request_digest)
        and (sized or stored.request_digest is not None)
    )
    if not same:
        raise errors.Conflict(
            "This Idempotency-Key was already used for a different request; use a new key "
            "for each distinct request.",
            code="idempotency_key_reused",
        )


def meter(
    container: Container,
    call: Call,
    manifest: ModelManifest,
    task: str,
    billed: Billable,
    started: float,
    *,
    delivered: bool = False,
    sized: bool = True,
) -> Usage:
    """Record the call durably (exactly once per request id) and return its usage object.

    Parameters
    ----------
    delivered
        The answer has already reached the client (a streamed generation, billed when it ends
        or is abandoned): it is billed whatever time is left, and a replayed request id that
        does not match is logged, since an error could no longer reach anyone.
    sized
        Whether a replay of the same request must have the same units (see
        :func:`_refuse_a_reused_key`).

    Raises
    ------
    aimaas.errors.BackendUnavailable
        The record cannot be made durable: the caller must not serve the prediction.
    """
    from aimaas.metering import UsageRecord
    from aimaas.plans import batch_task

    if call.batch:  # its own billed task, so usage, invoices and prices all show the discount
        task = batch_task(task)
    latency_ms = (time.perf_counter() - started) * 1000.0
    principal = call.principal
    record = UsageRecord(
        request_id=call.request_id,
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        model=manifest.name,
        model_version=manifest.version,
        task=task,
        units=billed.units,
        unit=billed.unit,
        latency_ms=latency_ms,
        status=200,
        timestamp=datetime.now(UTC),
        request_digest=call.request_digest,
    )
    if not delivered:
        deadline.ensure_deliverable()  # never bill an answer the client can no longer receive
    meter = container.meter
    new = meter.record(record)
    if new:
        call.mark_billed()
    else:
        try:
            stored = meter.ledger.get(record.tenant_id, record.request_id)
        except Exception as error:  # the duplicate was seen, but cannot be compared now
            raise errors.BackendUnavailable(
                "The usage ledger could not confirm this retried request; retry it."
            ) from error
        try:
            _refuse_a_reused_key(stored, record, sized)
        except errors.Conflict:
            if not delivered:
                raise
            logger.warning("a streamed answer reused the request id of another request")
    logger.debug(  # the handler / access log already says it at INFO; this adds billing detail
        "prediction served",
        extra={
            "model": manifest.model_id,
            "task": task,
            "units": billed.units,
            "unit": billed.unit,
            "latency_ms": round(latency_ms, 3),
            "replay": not new,
        },
    )
    return Usage(
        units=billed.units,
        unit=billed.unit,
        price_usd=price_of(task, manifest.name, billed, principal.plan),
    )
