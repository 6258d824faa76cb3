"""The stream aggregator: turns new ledger records into time-ordered copies and counters.

It runs as a Lambda on the usage table's DynamoDB stream (``functions/aggregator``; the event
source mapping passes only ``INSERT`` events of ``REQ`` items). It must be idempotent, because
a stream delivers each record at least once (a failed or timed-out batch is delivered again,
possibly cut differently), and it must never count a record twice or lose one:

- Each chunk of records (up to 100 items: one copy per record plus one counter update per
  tenant-day and tenant-month) is ONE ``TransactWriteItems``. A record's time-ordered copy is
  put with ``attribute_not_exists(pk)``: the marker that it has been counted, written
  atomically with the counter increments.
- A copy that already exists cancels the transaction with ``ConditionalCheckFailed`` at its
  index: those records were counted by an earlier delivery, so they are dropped and the rest
  of the chunk is sent again. Nothing is counted twice.
- Other cancellations (a transaction conflict on a counter, throttling) are retried with
  back-off; if they persist the batch fails and the stream delivers it again, which is safe.

Counter updates of a chunk go to one of ``counter_shards`` shards (by the chunk's first
request id), so aggregators running on different stream shards seldom touch the same counter
item at the same time.
"""

from __future__ import annotations

import logging
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from aimaas.metering.layout import (
    COUNTER_SHARDS,
    RECORD_SHARDS,
    copy_key,
    record_attributes,
)
from aimaas.metering.records import UsageRecord, day_bucket, month_bucket
from aimaas.storage import dynamodb as ddb

logger = logging.getLogger("aimaas.metering")

#: DynamoDB's limit of items per transaction.
MAX_TRANSACTION_ITEMS = 100

#: The event source mapping's filter: only new ledger records reach the aggregator (its own
#: copies and counter updates are on the stream too).
STREAM_FILTER: Mapping[str, Any] = {
    "eventName": ["INSERT"],
    "dynamodb": {"Keys": {"sk": {"S": ["REQ"]}}},
}


def is_ledger_insert(event_record: Mapping[str, Any]) -> bool:
    """True for a stream record that :data:`STREAM_FILTER` lets through."""
    keys = event_record.get("dynamodb", {}).get("Keys", {})
    return event_record.get("eventName") == "INSERT" and keys.get("sk") == {"S": "REQ"}


def records_of(event: Mapping[str, Any]) -> list[tuple[UsageRecord, int | None]]:
    """The usage records in a Lambda DynamoDB-stream event (``NEW_IMAGE`` view), each with the
    TTL (``expires_at``) its item was written with, so its copy expires with it."""
    found = []
    for event_record in event.get("Records", []):
        if not is_ledger_insert(event_record):
            continue
        image = event_record["dynamodb"].get("NewImage")
        if image:
            item = ddb.from_wire(image)
            expires = item.get("expires_at")
            found.append((UsageRecord.from_item(item), None if expires is None else int(expires)))
    return found


@dataclass
class _Chunk:
    records: list[UsageRecord] = field(default_factory=list)
    counters: dict[tuple[str, str, str], dict[str, Decimal]] = field(default_factory=dict)

    @staticmethod
    def counter_keys(record: UsageRecord) -> list[tuple[str, str, str]]:
        return [
            (record.tenant_id, "DAY", day_bucket(record.timestamp)),
            (record.tenant_id, "MONTH", month_bucket(record.timestamp)),
        ]

    def fits(self, record: UsageRecord) -> bool:
        new = sum(1 for key in self.counter_keys(record) if key not in self.counters)
        return len(self.records) + len(self.counters) + 1 + new <= MAX_TRANSACTION_ITEMS

    def add(self, record: UsageRecord) -> None:
        self.records.append(record)
        cell = f"cell#{record.task}#{record.model}#{record.unit}"
        for key in self.counter_keys(record):
            deltas = self.counters.setdefault(key, {})
            for name, value in (
                ("calls", Decimal(1)),
                (f"units#{record.unit}", record.units),
                (f"{cell}#calls", Decimal(1)),
                (f"{cell}#units", record.units),
            ):
                deltas[name] = deltas.get(name, Decimal(0)) + value


class StreamAggregator:
    """Counts new ledger records exactly once (see the module docstring).

    Parameters
    ----------
    table_name
        The usage table.
    retention_days, record_shards, counter_shards
        As the ledger's (:class:`~aimaas.metering.dynamodb.DynamoDbLedger`).
    client
        A DynamoDB client (the default session's when omitted).
    attempts
        Tries of one chunk on conflicts and throttling before the batch fails.
    sleep
        The back-off sleep (tests pass a no-op).
    """

    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int = 400,
        record_shards: int = RECORD_SHARDS,
        counter_shards: int = COUNTER_SHARDS,
        client: Any = None,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table_name
        self.retention_s = retention_days * 86400
        self.record_shards = record_shards
        self.counter_shards = counter_shards
        self.client = ddb.client(client)
        self.attempts = attempts
        self.sleep = sleep

    def handle(self, event: Mapping[str, Any]) -> dict[str, int]:
        """The Lambda entry point: aggregate the records of one stream batch.

        Returns
        -------
        dict
            ``{"records": n, "counted": m}``: records in the batch, and how many were new
            (the rest had been counted by an earlier delivery).
        """
        found = records_of(event)
        expires = {
            (record.tenant_id, record.request_id): ttl for record, ttl in found if ttl is not None
        }
        counted = self.aggregate((record for record, _ in found), expires)
        return {"records": len(found), "counted": counted}

    def aggregate(
        self,
        records: Iterable[UsageRecord],
        expires: Mapping[tuple[str, str], int] | None = None,
    ) -> int:
        """Count ``records`` that were not counted before; returns how many were new.

        ``expires`` gives the TTL of records by ``(tenant_id, request_id)`` (their items'
        own); others expire ``retention_days`` after their timestamp.
        """
        expires = expires or {}
        unique: dict[tuple[str, str], UsageRecord] = {}
        for record in records:
            unique.setdefault((record.tenant_id, record.request_id), record)
        counted = 0
        chunk = _Chunk()
        for record in unique.values():
            if not chunk.fits(record):
                counted += self._write(chunk.records, expires)
                chunk = _Chunk()
            chunk.add(record)
        if chunk.records:
            counted += self._write(chunk.records, expires)
        return counted

    def _write(self, records: Sequence[UsageRecord], expires: Mapping[tuple[str, str], int]) -> int:
        pending = list(records)
        failures = 0
        while pending:
            chunk = _Chunk()
            for record in pending:
                chunk.add(record)
            try:
                self.client.transact_write_items(TransactItems=self._items(chunk, expires))
                return len(pending)
            except ClientError as error:
                reasons = _cancellation_codes(error)
                counted_before = {
                    i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"
                }
                if counted_before:
                    # Copies come first in the transaction: index i is pending[i].
                    pending = [r for i, r in enumerate(pending) if i not in counted_before]
                    continue
                failures += 1
                if failures >= self.attempts:
                    raise
                delay = min(1.0, 0.02 * 2**failures) * (0.5 + random.random())  # noqa: S311
                logger.warning(
                    "aggregation retried",
                    extra={"error_type": ddb.error_code(error), "reasons": reasons[:5]},
                )
                self.sleep(delay)
        return 0

    def _items(self, chunk: _Chunk, expires: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": ddb.to_wire(
                        {
                            **copy_key(record, self.record_shards),
                            **record_attributes(record, self.retention_s),
                            **(
                                {"expires_at": expires[key]}
                                if (key := (record.tenant_id, record.request_id)) in expires
                                else {}
                            ),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for record in chunk.records
        ]
        first = chunk.records[0].request_id
        shard = f"{zlib.crc32(first.encode()) % self.counter_shards:02d}"
        for (tenant, period, bucket), deltas in chunk.counters.items():
            names = {f"#a{i}": name for i, name in enumerate(deltas)}
            values = {f":a{i}": value for i, value in enumerate(deltas.values())}
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": ddb.to_wire(
                            {"pk": f"CTR#{tenant}", "sk": f"{period}#{bucket}#{shard}"}
                        ),
                        "UpdateExpression": "ADD "
                        + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": ddb.to_wire(values),
                    }
                }
            )
        return items


_REASONS_IN_MESSAGE = re.compile(r"\[([A-Za-z, ]+)\]")


def _cancellation_codes(error: ClientError) -> list[str | None]:
    """Per-item cancellation codes of a ``TransactionCanceledException`` (empty otherwise)."""
    if ddb.error_code(error) != "TransactionCanceledException":
        return []
    reasons = error.response.get("CancellationReasons")
    if reasons:
        return [reason.get("Code") for reason in reasons]
    # Some implementations put them only in the message: "... [ConditionalCheckFailed, None]".
    match = _REASONS_IN_MESSAGE.search(str(error))
    if not match:
        return []
    return [None if part.strip() == "None" else part.strip() for part in match.group(1).split(",")]
