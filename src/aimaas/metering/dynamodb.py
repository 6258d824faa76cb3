"""DynamoDB usage ledger: one conditional put per call; counters come from the table's stream.

Table: :data:`aimaas.storage.tables.USAGE` (``pk``/``sk`` strings, TTL ``expires_at``, stream
``NEW_IMAGE``), ``AIMAAS_USAGE_TABLE``.

The hot path
------------
:meth:`DynamoDbLedger.put` is ONE ``PutItem`` of the record with
``attribute_not_exists(pk)``: the item's key is the request id, so a retry of the same call
fails the condition and is reported as a duplicate. A record is about 350 bytes: one write
unit. (It used to be a ``TransactWriteItems`` of four items, the record twice and two
counters: 2 write units per item, 8 a call, and every call of a tenant contending for the same
counter items.)

What the stream aggregator adds (:mod:`aimaas.metering.aggregator`, a Lambda on the stream)
---------------------------------------------------------------------------------------------
For each new record, in one transaction per chunk of records: the time-ordered copy (put with
``attribute_not_exists(pk)``, the aggregator's idempotency marker: a record delivered twice
fails its condition and is not counted again) and ``UpdateItem ADD`` on the day and month
counters, summed over the chunk. Counters therefore trail the records by the aggregator's
delay (its batching window, one second, plus a run); :meth:`get` never does.

Items (``pk`` / ``sk``: what)
----------------------------
- ``REQ#<tenant>#<request id>`` / ``REQ``: the record, written by :meth:`put`; TTL.
- ``REC#<tenant>#<YYYY-MM>#<nn>`` / ``<iso ts>#<request id>``: its time-ordered copy, in one of
  ``record_shards`` partitions per tenant-month (``nn`` = crc32(request id) mod shards);
  written by the aggregator; TTL.
- ``CTR#<tenant>`` / ``DAY#<YYYY-MM-DD>#<nn>`` and ``MONTH#<YYYY-MM>#<nn>``: a shard of the
  day or month counter: ``calls``, ``units#<unit>`` and per task, model and unit
  ``cell#<task>#<model>#<unit>#calls`` / ``#units`` (N, grown with ``ADD``); no TTL.
- ``LIM#<tenant>#<YYYY-MM>#<limit>`` / ``LIM``: the reservation of a tenant near its hard
  limit (``allowance``, ``admitted``; see :meth:`reserve`); TTL.

Capacity per tenant
-------------------
A partition key takes at most 1,000 write units a second. ``REQ`` items are one key per call,
so the hot path has no per-tenant ceiling (only the table's). The copies are spread over
``record_shards`` (8) keys per tenant-month and written transactionally (2 units each): 8 x 500
= 4,000 calls a second per tenant. Counter items take one update per chunk of up to ~95
records, on one of ``counter_shards`` (8) shards. The enterprise throttle, 500 requests a
second, uses an eighth of that. (An on-demand table serves 4,000 write units a second from the
start and doubles its previous peak on demand; raise ``record_shards`` beyond 8 tenants at
that rate.)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from aimaas.metering.aggregator import StreamAggregator
from aimaas.metering.layout import (
    COUNTER_SHARDS,
    RECORD_SHARDS,
    record_attributes,
    record_key,
)
from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import Period, UsageCell, UsageRecord, UsageTotals
from aimaas.storage import dynamodb as ddb
from aimaas.storage import iso, months, utc

#: A reservation item outlives its month by this long (then TTL removes it).
_RESERVATION_TTL_S = 40 * 86400


class DynamoDbLedger(UsageLedger):
    """The ledger in one DynamoDB table (see the module docstring for the item layout).

    Parameters
    ----------
    table_name
        The usage table.
    retention_days
        Raw records expire (DynamoDB TTL) this many days after their timestamp; counters stay.
    record_shards, counter_shards
        Partitions per tenant-month of the time-ordered copies and of the counters; they must
        match the aggregator's.
    aggregate_inline
        Count each new record right after its put, in this process, instead of leaving it to
        the stream aggregator: for emulated deployments with no Lambda on the stream
        (moto_server behind LocalStack). A process that dies between the two leaves that
        record uncounted, which the stream never would: never in AWS.
    client
        A DynamoDB client (made from the default session when omitted).
    """

    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int = 400,
        record_shards: int = RECORD_SHARDS,
        counter_shards: int = COUNTER_SHARDS,
        aggregate_inline: bool = False,
        client: Any = None,
    ) -> None:
        for name, value in (("record_shards", record_shards), ("counter_shards", counter_shards)):
            if not 1 <= value <= 100:
                raise ValueError(f"{name} must be between 1 and 100")
        self.table = table_name
        self.retention_s = retention_days * 86400
        self.record_shards = record_shards
        self.counter_shards = counter_shards
        self.client = ddb.client(client)
        self.aggregator = None
        if aggregate_inline:
            self.aggregator = StreamAggregator(
                table_name,
                retention_days=retention_days,
                record_shards=record_shards,
                counter_shards=counter_shards,
                client=self.client,
            )

    def put(self, record: UsageRecord) -> bool:
        item = {**record_key(record), **record_attributes(record, self.retention_s)}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=ddb.to_wire(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if ddb.conditional_failed(error):
                return False
            raise
        if self.aggregator is not None:
            self.aggregator.aggregate([record])
        return True

    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        response = self.client.get_item(
            TableName=self.table,
            Key=ddb.to_wire({"pk": f"REQ#{tenant_id}#{request_id}", "sk": "REQ"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return UsageRecord.from_item(ddb.from_wire(item)) if item else None

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("query").paginate(TableName=self.table, **request):
            for item in page.get("Items", []):
                yield ddb.from_wire(item)

    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        start, end = utc(start), utc(end)
        for month in months(start, end):
            shards = [
                self._query(
                    KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                    ExpressionAttributeValues=ddb.to_wire(
                        {
                            ":pk": f"REC#{tenant_id}#{month}#{shard:02d}",
                            ":low": iso(start),
                            ":high": iso(end),
                        }
                    ),
                    ConsistentRead=True,
                )
                for shard in range(self.record_shards)
            ]
            # Each shard comes back in sort-key order: merging them keeps time order.
            for item in heapq.merge(*shards, key=lambda item: item["sk"]):
                record = UsageRecord.from_item(item)
                if start <= record.timestamp < end:
                    yield record

    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        prefix = "DAY" if period == "day" else "MONTH"
        calls = 0
        units: dict[str, Decimal] = {}
        for item in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=ddb.to_wire(
                {":pk": f"CTR#{tenant_id}", ":prefix": f"{prefix}#{bucket}#"}
            ),
            ConsistentRead=True,
        ):
            calls += int(item.get("calls", 0))
            for name, value in item.items():
                if name.startswith("units#"):
                    unit = name.split("#", 1)[1]
                    units[unit] = units.get(unit, Decimal(0)) + Decimal(value)
        return UsageTotals(calls=calls, units=MappingProxyType(units))

    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        cells: dict[tuple[str, str, str, str], list[Any]] = {}
        for item in self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=ddb.to_wire(
                {
                    ":pk": f"CTR#{tenant_id}",
                    ":low": f"DAY#{first_day}#",
                    ":high": f"DAY#{last_day}#~",
                }
            ),
            ConsistentRead=True,
        ):
            day = item["sk"].split("#")[1]
            for name, value in item.items():
                parts = name.split("#")
                if parts[0] != "cell" or len(parts) != 5:
                    continue
                _, task, model, unit, field = parts
                slot = cells.setdefault((day, task, model, unit), [0, Decimal(0)])
                if field == "calls":
                    slot[0] += int(value)
                else:
                    slot[1] += Decimal(value)
        for (day, task, model, unit), (calls, units) in sorted(cells.items()):
            yield UsageCell(day=day, task=task, model=model, unit=unit, calls=calls, units=units)

    def _reservation_key(self, tenant_id: str, month: str, limit: int) -> dict[str, Any]:
        return ddb.to_wire({"pk": f"LIM#{tenant_id}#{month}#{limit}", "sk": "LIM"})

    def reserve(self, tenant_id: str, month: str, limit: int, allowance: int) -> bool:
        # One conditional update: the allowance is fixed by the first call (if_not_exists), and
        # every call, the first included, is admitted only while admitted < allowance.
        if allowance < 1:
            return False
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        expires = int(start.timestamp()) + _RESERVATION_TTL_S
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._reservation_key(tenant_id, month, limit),
                UpdateExpression=(
                    "SET allowance = if_not_exists(allowance, :allowance), expires_at = :ttl "
                    "ADD admitted :one"
                ),
                ConditionExpression="attribute_not_exists(allowance) OR admitted < allowance",
                ExpressionAttributeValues=ddb.to_wire(
                    {":allowance": allowance, ":one": 1, ":ttl": expires}
                ),
            )
        except ClientError as error:
            if ddb.conditional_failed(error):
                return False
            raise
        return True

    def release(self, tenant_id: str, month: str, limit: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._reservation_key(tenant_id, month, limit),
                UpdateExpression="ADD admitted :minus",
                ConditionExpression="admitted > :zero",
                ExpressionAttributeValues=ddb.to_wire({":minus": -1, ":zero": 0}),
            )
        except ClientError as error:
            if not ddb.conditional_failed(error):
                raise
