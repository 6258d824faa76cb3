"""Custom classifiers: ``/v1/classifiers`` (create, list, get, delete) and their predictions.

A tenant trains a logistic-regression head on a base embeddings model's embeddings of its own
labelled examples; the head serves ``POST /v1/text-classification`` with ``model=<id>`` and
``/v1/models/{id}/predict``. Everything goes through the tenant-scoped
:class:`~aimaas.classifiers.ClassifierStore` with the caller's tenant, so another tenant's
classifier is simply not found (404, never 403). Training is billed per 1k example tokens
(``classifier-training`` in plans.toml), predictions per 1k tokens as text classification; both
exactly once per request id through :func:`aimaas.api.service.meter`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from aimaas import deadline, errors
from aimaas.api import bodies
from aimaas.api import schemas as api
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.api.dependencies import CallDep, ContainerDep, IdentifiedCallDep
from aimaas.api.service import Billable, billable, invoke, meter
from aimaas.audit import AuditEvent
from aimaas.classifiers import (
    ClassifierRecord,
    ClassifierStore,
    Example,
    StoredClassifier,
    classifier_id_for,
    is_classifier_id,
)
from aimaas.classifiers.records import VERSION
from aimaas.classifiers.training import LIMITS, check_examples, cross_validate, fit_head, softmax
from aimaas.inference import wire
from aimaas.manifest import ModelManifest

logger = logging.getLogger("aimaas.api")

#: The billed task of training (plans.toml prices it per 1k example tokens).
TRAINING_TASK = "classifier-training"
#: Predictions are text classification, in the base model's unit.
PREDICTION_TASK = "text-classification"


# ---- request and response models --------------------------------------------------------------


class ExampleIn(BaseModel):
    """One labelled example."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=LIMITS.max_text_chars)]
    label: Annotated[str, Field(min_length=1, max_length=LIMITS.max_label_chars)]


class ClassifierIn(BaseModel):
    """A classifier to train from labelled examples."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ticket-router",
                    "examples": [
                        {"text": "I was charged twice this month.", "label": "billing"},
                        {"text": "The app crashes when I open settings.", "label": "bug"},
                    ],
                }
            ]
        },
    )

    name: Annotated[str, Field(min_length=1, max_length=100)]
    examples: Annotated[list[ExampleIn], Field(min_length=1)] = Field(
        description=(
            f"{LIMITS.min_labels} to {LIMITS.max_labels} labels, at least "
            f"{LIMITS.min_examples_per_label} examples each, {LIMITS.max_examples} at most."
        )
    )
    base_model: str | None = Field(
        default=None, description="Embeddings model to train on (default: the stage's)."
    )


class CrossValidationOut(BaseModel):
    """Stratified k-fold accuracy of the head on the examples."""

    accuracy: float
    std: float = Field(description="Standard deviation of the accuracy over the folds.")
    folds: int


class ClassifierOut(BaseModel):
    """A custom classifier."""

    id: str
    object: Literal["classifier"] = "classifier"
    name: str
    model: str = Field(description="The id to pass as `model` (name@version).")
    base_model: str
    labels: list[str]
    examples: int
    created_at: datetime
    cross_validation: CrossValidationOut
    usage: api.Usage | None = Field(default=None, description="The training's charge (create).")


class ClassifierList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ClassifierOut]


class ClassifierDeleted(BaseModel):
    id: str
    object: Literal["classifier"] = "classifier"
    deleted: bool = True


# ---- tasks ------------------------------------------------------------------------------------


def _store(container: Container) -> ClassifierStore:
    if container.classifiers is None:
        raise errors.NotFound("Custom classifiers are not enabled on this stage.")
    return container.classifiers


def _not_found(classifier_id: str) -> errors.NotFound:
    # The same answer whether the id is unknown or another tenant's: nothing leaks.
    return errors.NotFound(f"Unknown classifier {classifier_id[:64]!r}.")


def _out(record: ClassifierRecord, usage: api.Usage | None = None) -> ClassifierOut:
    return ClassifierOut(
        id=record.id,
        name=record.name,
        model=f"{record.id}@{VERSION}",
        base_model=record.base_model,
        labels=record.labels,
        examples=record.examples,
        created_at=record.created_at,
        cross_validation=CrossValidationOut(
            accuracy=record.cv_accuracy, std=record.cv_accuracy_std, folds=record.cv_folds
        ),
        usage=usage,
    )


def audit(container: Container, call: Call, action: str, target: str, **details: object) -> None:
    """Append one audit event for a change the caller made. The change has happened (and a
    create was billed) by then, so a failed write is logged as an error, not turned into a
    failed request that a client would retry into a second classifier."""
    if container.audit is None:
        return
    principal = call.principal
    event = AuditEvent(
        action=action,
        target=target,
        actor=f"tenant:{principal.tenant_id}/key:{principal.key_id}",
        host="api",
        at=datetime.now(UTC),
        details={"tenant_id": principal.tenant_id, "request_id": call.request_id, **details},
    )
    try:
        container.audit.append(event)
    except Exception:
        logger.exception("audit event not written", extra={"action": action, "target": target})


def served_manifest(base: ModelManifest, record: ClassifierRecord) -> ModelManifest:
    """The manifest a classifier is served and billed under: its base model's files (the
    embeddings it runs), its own id, version and labels."""
    return base.model_copy(
        update={
            "name": record.id,
            "version": VERSION,
            "task": PREDICTION_TASK,
            "labels": record.labels,
            "description": f"Custom classifier {record.name!r} on {record.base_model}",
        }
    )


def embed(
    container: Container, call: Call, manifest: ModelManifest, texts: list[str]
) -> tuple[np.ndarray, list[wire.EmbeddingsResult]]:
    """Embeddings of ``texts`` in batches of the model's limit, stopping (504, unbilled) once
    the request's deadline leaves no time to answer."""
    step = manifest.max_batch_size
    results = []
    for start in range(0, len(texts), step):
        deadline.ensure_deliverable()
        batch = wire.EmbeddingsRequest(texts=texts[start : start + step])
        results.append(invoke(container, call, manifest, batch))
    vectors = np.asarray([v for r in results for v in r.embeddings], dtype=np.float64)
    return vectors, results


def create_classifier(container: Container, call: Call, body: ClassifierIn) -> ClassifierOut:
    """Train, store and bill a classifier (the store is undone if billing fails)."""
    store = _store(container)
    started = time.perf_counter()
    examples = [Example(text=e.text, label=e.label) for e in body.examples]
    labels = check_examples(examples)
    base = container.registry.resolve_for_task("embeddings", body.base_model, None)
    vectors, results = embed(container, call, base, [e.text for e in examples])
    index = {label: i for i, label in enumerate(labels)}
    targets = np.asarray([index[e.label] for e in examples])
    cv = cross_validate(vectors, targets, len(labels), between=deadline.ensure_deliverable)
    head = fit_head(vectors, targets, len(labels))
    tokens = int(sum(sum(r.token_counts) for r in results))
    tenant = call.principal.tenant_id
    record = ClassifierRecord(
        id=classifier_id_for(tenant, call.request_id),
        tenant_id=tenant,
        name=body.name,
        base_model=base.model_id,
        labels=labels,
        examples=len(examples),
        tokens=tokens,
        cv_accuracy=cv.accuracy,
        cv_accuracy_std=cv.std,
        cv_folds=cv.folds,
        created_at=datetime.now(UTC),
    )
    existing = store.record(tenant, record.id)  # a retried request: keep what was made first
    if existing is not None:
        record = existing
    else:
        store.put(StoredClassifier(record, head, examples))
    manifest = served_manifest(base, record)
    try:
        usage = meter(
            container,
            call,
            manifest,
            TRAINING_TASK,
            Billable(tokens / 1000.0, "1k_tokens"),
            started,
        )
    except Exception:
        if existing is None:  # not billed, so not kept
            store.delete(tenant, record.id)
        raise
    call.mark_model(manifest.model_id)
    if existing is None:
        audit(
            container,
            call,
            "classifier.create",
            record.id,
            name=record.name,
            base_model=record.base_model,
            labels=len(record.labels),
            examples=record.examples,
        )
    return _out(record, usage)


def list_classifiers(container: Container, call: Call) -> ClassifierList:
    """The caller's classifiers."""
    records = _store(container).list(call.principal.tenant_id)
    return ClassifierList(data=[_out(r) for r in records])


def get_classifier(container: Container, call: Call, classifier_id: str) -> ClassifierOut:
    """One of the caller's classifiers (404 for any other id)."""
    record = _store(container).record(call.principal.tenant_id, classifier_id)
    if record is None:
        raise _not_found(classifier_id)
    return _out(record)


def delete_classifier(container: Container, call: Call, classifier_id: str) -> ClassifierDeleted:
    """Remove one of the caller's classifiers: head, examples and metadata."""
    if not _store(container).delete(call.principal.tenant_id, classifier_id):
        raise _not_found(classifier_id)
    audit(container, call, "classifier.delete", classifier_id)
    return ClassifierDeleted(id=classifier_id)


def classify(
    container: Container, call: Call, body: api.TextClassificationIn
) -> api.TextClassificationOut:
    """``POST /v1/text-classification`` (and the generic predict) with a classifier's id."""
    model = body.model or ""
    classifier_id, _, version = model.partition("@")
    version = version or body.version or VERSION
    stored = _store(container).get(call.principal.tenant_id, classifier_id)
    if stored is None or version != VERSION:
        raise _not_found(model)
    if body.labels:
        raise errors.InvalidInput("A custom classifier answers over its own labels; omit `labels`.")
    started = time.perf_counter()
    try:
        base = container.registry.resolve(stored.record.base_model)
    except errors.NotFound as error:  # the base model was withdrawn from the registry
        raise errors.BackendUnavailable(
            f"The base model {stored.record.base_model} of this classifier is not available."
        ) from error
    texts = [body.text] if isinstance(body.text, str) else list(body.text)
    manifest = served_manifest(base, stored.record)
    if len(texts) > manifest.max_batch_size:
        raise errors.InvalidInput(
            f"{len(texts)} inputs is over the batch limit of {manifest.model_id} "
            f"({manifest.max_batch_size}); split the request."
        )
    vectors, results = embed(container, call, base, texts)
    probs = softmax(stored.head.logits(vectors))
    labels = stored.record.labels
    predictions = [
        api.TextPrediction(
            label=labels[int(np.argmax(row))],
            score=float(row.max()),
            scores={label: float(p) for label, p in zip(labels, row, strict=True)},
        )
        for row in probs
    ]
    usage = meter(container, call, manifest, PREDICTION_TASK, billable(base, results), started)
    call.mark_model(manifest.model_id)
    single = isinstance(body.text, str)
    return api.TextClassificationOut.of(predictions, single, manifest.model_id, usage)


# ---- routes -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/classifiers", tags=["classifiers"])
ClassifierId = Annotated[str, Path(description="The classifier's id (`clf-...`).")]


def _respond(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


@router.post(
    "",
    response_model=ClassifierOut,
    status_code=201,
    dependencies=[Depends(bodies.require_json)],
    summary="Train a custom classifier from labelled examples",
)
async def create(body: ClassifierIn, container: ContainerDep, call: CallDep) -> Response:
    return _respond(await call.run(create_classifier, container, call, body), 201)


@router.get("", response_model=ClassifierList, summary="Your custom classifiers")
async def list_(container: ContainerDep, call: IdentifiedCallDep) -> Response:
    return _respond(await call.run(list_classifiers, container, call))


@router.get("/{classifier_id}", response_model=ClassifierOut, summary="One custom classifier")
async def get(
    classifier_id: ClassifierId, container: ContainerDep, call: IdentifiedCallDep
) -> Response:
    return _respond(await call.run(get_classifier, container, call, classifier_id))


@router.delete(
    "/{classifier_id}",
    response_model=ClassifierDeleted,
    summary="Delete a custom classifier (its head and examples)",
)
async def delete(
    classifier_id: ClassifierId, container: ContainerDep, call: IdentifiedCallDep
) -> Response:
    return _respond(await call.run(delete_classifier, container, call, classifier_id))


__all__ = [
    "ClassifierIn",
    "ClassifierOut",
    "classify",
    "create_classifier",
    "delete_classifier",
    "get_classifier",
    "is_classifier_id",
    "list_classifiers",
    "router",
]
