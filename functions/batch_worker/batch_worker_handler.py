"""The batch worker Lambda: chunk messages from SQS -> the batch worker -> S3 and DynamoDB.

Deployment contract: the inference image (the same models, already in it), with this module as
the command; an SQS event source mapping with ``ReportBatchItemFailures`` (a failed chunk goes
back alone) and a maximum concurrency, which bounds how many model slots batches take from the
synchronous functions' account concurrency. Environment: the inference functions' (keys,
ledger) plus ``AIMAAS_BATCH_FILE_STORE=s3``, ``AIMAAS_BATCH_JOB_STORE=dynamodb``,
``AIMAAS_BATCH_QUEUE=sqs``, ``AIMAAS_BATCH_BUCKET``, ``AIMAAS_BATCHES_TABLE``,
``AIMAAS_BATCH_QUEUE_URL``, ``AIMAAS_KMS_KEY_ID``.

Idempotent: a redelivered chunk bills and counts nothing twice (see :mod:`aimaas.batch.worker`).
"""

from __future__ import annotations

from typing import Any

from aimaas.api.container import build_container
from aimaas.batch.worker import BatchWorker, handle_sqs_event
from aimaas.config import Settings

# Built in the init phase: models load on first use and stay loaded for the next chunks.
worker = BatchWorker(build_container(Settings.from_env()))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one SQS batch of chunk messages; answer which ones failed."""
    return handle_sqs_event(worker, event)
