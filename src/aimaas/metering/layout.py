"""Where the DynamoDB ledger keeps a record: the keys shared by the ledger and its aggregator
(see :mod:`aimaas.metering.dynamodb` for the whole item layout)."""

from __future__ import annotations

import zlib
from typing import Any

from aimaas.metering.records import UsageRecord
from aimaas.storage import iso, month_bucket

#: Default number of partitions of a tenant-month's time-ordered copies and of its counters.
RECORD_SHARDS = 8
COUNTER_SHARDS = 8


def shard_of(request_id: str, shards: int) -> str:
    """The two-digit shard of ``request_id`` among ``shards`` (stable across processes)."""
    return f"{zlib.crc32(request_id.encode()) % shards:02d}"


def record_key(record: UsageRecord) -> dict[str, str]:
    """The key of a record's own item (the idempotency guard)."""
    return {"pk": f"REQ#{record.tenant_id}#{record.request_id}", "sk": "REQ"}


def copy_key(record: UsageRecord, record_shards: int) -> dict[str, str]:
    """The key of a record's time-ordered copy."""
    shard = shard_of(record.request_id, record_shards)
    return {
        "pk": f"REC#{record.tenant_id}#{month_bucket(record.timestamp)}#{shard}",
        "sk": f"{iso(record.timestamp)}#{record.request_id}",
    }


def record_attributes(record: UsageRecord, retention_s: int) -> dict[str, Any]:
    """A record's attributes plus its TTL (plain values for ``to_wire``)."""
    return {**record.to_item(), "expires_at": int(record.timestamp.timestamp()) + retention_s}
