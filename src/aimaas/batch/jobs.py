"""Creating and cancelling batches: the job store, the queue and the worker's finalisation.

Plain functions of the container, so the HTTP routes and any other entry point (tests, an
operator CLI) create and cancel batches the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

from aimaas import errors
from aimaas.api.container import BatchServices, Container
from aimaas.auth import Principal
from aimaas.batch.lines import RUNNERS, line_spans
from aimaas.batch.records import (
    CANCELLING,
    FAILED,
    IN_PROGRESS,
    RUNNING,
    VALIDATING,
    BatchJob,
    Chunk,
    new_batch_id,
)
from aimaas.storage import now_utc

#: Most lines in one batch (OpenAI's limit).
MAX_LINES = 50_000
#: How long a batch and its files are kept (the S3 lifecycle rule and the table's TTL agree).
RETENTION = timedelta(days=30)


def services(container: Container) -> BatchServices:
    """The container's batch services (404 when batches are switched off)."""
    if container.batch is None:
        raise errors.NotFound("Batch jobs are not enabled on this deployment.")
    return container.batch


def chunks_of(job: BatchJob, spans: list[tuple[int, int]], chunk_lines: int) -> list[Chunk]:
    """The chunk messages of ``job``: consecutive runs of ``chunk_lines`` lines, each with the
    byte range its lines occupy in the input file (``spans``, from :func:`line_spans`)."""
    chunks = []
    for n, start in enumerate(range(0, len(spans), chunk_lines)):
        stop = min(start + chunk_lines, len(spans))
        offset, end = spans[start][0], spans[stop - 1][1]
        chunks.append(Chunk(job.tenant_id, job.batch_id, n, start, stop, offset, end - offset))
    return chunks


def create_batch(
    container: Container,
    principal: Principal,
    input_file_id: str,
    endpoint: str,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
) -> BatchJob:
    """Validate the input file, store the job and queue its chunks.

    Raises
    ------
    aimaas.errors.NotFound
        The tenant has no such file.
    aimaas.errors.InvalidInput
        The file is not a batch input, the endpoint is not a task route, or the file has no
        lines or too many. (Individual bad lines do not fail the batch: they go to its error
        file.)
    aimaas.errors.BackendUnavailable
        A store or the queue failed (the batch, if stored, is marked failed).
    """
    batch = services(container)
    if endpoint not in RUNNERS:
        raise errors.InvalidInput(f"endpoint must be one of {sorted(RUNNERS)}.")
    record = batch.files.get(principal.tenant_id, input_file_id)
    if record is None:
        raise errors.NotFound("No file with that id.")
    if record.purpose != "batch":
        raise errors.InvalidInput("The input file must be uploaded with purpose 'batch'.")
    spans = line_spans(batch.files.content(principal.tenant_id, input_file_id) or b"")
    lines = len(spans)
    if not 0 < lines <= MAX_LINES:
        raise errors.InvalidInput(f"A batch has 1 to {MAX_LINES} lines; this file has {lines}.")
    now = now_utc()
    job = BatchJob(
        batch_id=new_batch_id(),
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        plan=principal.plan,
        input_file_id=input_file_id,
        endpoint=endpoint,
        completion_window=completion_window,
        status=VALIDATING,
        created_at=now,
        expires_at=now + RETENTION,
        chunks=math.ceil(lines / batch.chunk_lines),
        total=lines,
        metadata=dict(metadata) if metadata else None,
    )
    batch.jobs.create(job)
    try:
        batch.queue.send(chunks_of(job, spans, batch.chunk_lines))
    except errors.BackendUnavailable:
        batch.jobs.transition(
            job.tenant_id,
            job.batch_id,
            RUNNING,
            status=FAILED,
            failed_at=now_utc(),
            errors={
                "object": "list",
                "data": [
                    {"code": "queue_unavailable", "message": "The batch could not be queued."}
                ],
            },
        )
        raise
    started = batch.jobs.transition(
        job.tenant_id, job.batch_id, frozenset({VALIDATING}), status=IN_PROGRESS, in_progress_at=now
    )
    # None: a local worker already moved it on (even finished it) while the chunks were queued.
    return started or batch.jobs.get(job.tenant_id, job.batch_id) or job


def cancel_batch(container: Container, tenant_id: str, batch_id: str) -> BatchJob:
    """Ask a running batch to stop: its chunks run no new lines; what ran is kept and billed.

    The batch is ``cancelling`` until its last chunk is counted, then ``cancelled`` with the
    output of the lines that ran. Cancelling a batch that has ended changes nothing.

    Raises
    ------
    aimaas.errors.NotFound
        The tenant has no such batch.
    """
    from aimaas.batch.worker import BatchWorker

    batch = services(container)
    job = batch.jobs.transition(
        tenant_id, batch_id, RUNNING, status=CANCELLING, cancelling_at=now_utc()
    )
    if job is None:
        job = batch.jobs.get(tenant_id, batch_id)
        if job is None:
            raise errors.NotFound("No batch with that id.")
        return job
    # Every chunk may already be counted (no worker will come back to end it): end it here.
    return BatchWorker(container).finalize(job) or job
