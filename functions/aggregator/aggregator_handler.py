"""The usage ledger's stream aggregator: a Lambda on the usage table's DynamoDB stream.

Deployment contract (``infra/stacks/storage.py`` builds it): Python 3.12 zip with the aimaas
core layer (standard library and boto3 only: no Powertools, no tracing), an event source
mapping on the usage table's stream with ``StartingPosition=TRIM_HORIZON``,
``ParallelizationFactor=1``, a one-second batching window, retries until the records expire,
and the filter :data:`aimaas.metering.aggregator.STREAM_FILTER` (new ledger records only).
Environment: ``AIMAAS_USAGE_TABLE`` (and optionally ``AIMAAS_USAGE_RETENTION_DAYS``,
``AIMAAS_USAGE_RECORD_SHARDS``, ``AIMAAS_USAGE_COUNTER_SHARDS``, which must match the
inference functions'). IAM: ``dynamodb:PutItem``, ``dynamodb:UpdateItem`` on the usage table
and read on its stream.

Idempotent: a batch delivered again counts nothing twice (see :mod:`aimaas.metering.aggregator`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aimaas.config import Settings
from aimaas.wiring import build_aggregator

logger = logging.getLogger("aimaas.aggregator")
logger.setLevel(logging.INFO)

aggregator = build_aggregator(Settings.from_env())


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Aggregate one batch of stream records; an exception makes Lambda deliver it again."""
    result = aggregator.handle(event)
    logger.info(json.dumps({"message": "aggregated", **result}))
    return result
