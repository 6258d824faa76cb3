"""DynamoDB usage ledger.

Table (``AIMAAS_USAGE_TABLE``, created by the CDK app with exactly this key schema)::

    partition key  pk          S
    sort key       sk          S
    TTL attribute  expires_at  N (epoch seconds; set on raw records only, never on counters)
    no GSI; on-demand billing

Items (``pk`` / ``sk``: what):

- ``REQ#<tenant>#<request id>`` / ``REQ``: the record by request id, the idempotency guard
  (put with ``attribute_not_exists(pk)``); has ``expires_at`` (TTL).
- ``REC#<tenant>#<YYYY-MM>`` / ``<iso timestamp>#<request id>``: the same record, ordered by
  time for range queries (one partition per tenant-month); has ``expires_at`` (TTL).
- ``CTR#<tenant>`` / ``DAY#<YYYY-MM-DD>#<shard>``: a shard (``00``, ``01``, ...) of the daily
  counter: ``calls`` (N), ``units#<unit>`` (N) and, per task, model and unit, the cell
  attributes ``cell#<task>#<model>#<unit>#calls`` and ``cell#<task>#<model>#<unit>#units`` (N),
  all grown with ``UpdateItem ADD``; no TTL.
- ``CTR#<tenant>`` / ``MONTH#<YYYY-MM>#<shard>``: a shard of the monthly counter, same
  attributes; no TTL.

Record attributes: ``tenant_id, request_id, key_id, model, model_version, task, units (N),
unit, latency_ms (N), status (N), ts`` (ISO 8601 UTC) and ``expires_at`` (N).

A ``put`` is ONE ``TransactWriteItems`` of those four writes, so the record and the counters
cannot diverge: either all four happen or none. A duplicate request id fails the condition on
the ``REQ`` item, the whole transaction is cancelled, and ``put`` returns False.

Counters are sharded (``counter_shards``, 8 by default; the shard is a hash of the request id)
because DynamoDB cancels a transaction that overlaps another one on the same item
(``TransactionConflict``): with one counter item per tenant-day, a busy tenant's concurrent calls
would conflict constantly. A total is one strongly consistent ``Query`` on
``pk = CTR#<tenant>`` and ``begins_with(sk, "MONTH#<YYYY-MM>#")`` that sums the shards. A
conflict that still happens surfaces as an error and the :class:`~aimaas.metering.Meter`
retries it with back-off.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import (
    Period,
    UsageCell,
    UsageRecord,
    UsageTotals,
    day_bucket,
    iso,
    month_bucket,
    utc,
)

#: The key schema the CDK app must create (AttributeDefinitions + KeySchema).
KEY_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "TimeToLiveAttribute": "expires_at",
    }
)

# Short timeouts and botocore's standard retries: the Meter adds its own retries on top.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5
)
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items()}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _months(start: datetime, end: datetime) -> Iterator[str]:
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        yield f"{year:04d}-{month:02d}"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class DynamoDbLedger(UsageLedger):
    """The ledger in one DynamoDB table (see the module docstring for the item layout).

    Parameters
    ----------
    table_name
        The usage table.
    retention_days
        Raw records expire (DynamoDB TTL) this many days after their timestamp; counters stay.
    client
        A DynamoDB client (made from the default session when omitted).
    """

    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int = 400,
        counter_shards: int = 8,
        client: Any = None,
    ) -> None:
        if not 1 <= counter_shards <= 100:
            raise ValueError("counter_shards must be between 1 and 100")
        self.table = table_name
        self.retention_s = retention_days * 86400
        self.counter_shards = counter_shards
        self.client = client or boto3.client("dynamodb", config=_CLIENT_CONFIG)

    def _attributes(self, record: UsageRecord) -> dict[str, Any]:
        return {
            "tenant_id": record.tenant_id,
            "request_id": record.request_id,
            "key_id": record.key_id,
            "model": record.model,
            "model_version": record.model_version,
            "task": record.task,
            "units": Decimal(str(record.units)),
            "unit": record.unit,
            "latency_ms": Decimal(str(record.latency_ms)),
            "status": int(record.status),
            "ts": iso(record.timestamp),
            "expires_at": int(record.timestamp.timestamp()) + self.retention_s,
        }

    def put(self, record: UsageRecord) -> bool:
        attrs = self._attributes(record)
        units = attrs["units"]
        cell = f"cell#{record.task}#{record.model}#{record.unit}"
        counter_update = {
            "TableName": self.table,
            "UpdateExpression": (
                "ADD calls :one, #units :units, #cell_calls :one, #cell_units :units"
            ),
            "ExpressionAttributeNames": {
                "#units": f"units#{record.unit}",
                "#cell_calls": f"{cell}#calls",
                "#cell_units": f"{cell}#units",
            },
            "ExpressionAttributeValues": _item({":one": 1, ":units": units}),
        }
        tenant = record.tenant_id
        shard = f"{zlib.crc32(record.request_id.encode()) % self.counter_shards:02d}"
        items = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _item(
                        {"pk": f"REQ#{tenant}#{record.request_id}", "sk": "REQ", **attrs}
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _item(
                        {
                            "pk": f"REC#{tenant}#{month_bucket(record.timestamp)}",
                            "sk": f"{attrs['ts']}#{record.request_id}",
                            **attrs,
                        }
                    ),
                }
            },
            {
                "Update": {
                    **counter_update,
                    "Key": _item(
                        {"pk": f"CTR#{tenant}", "sk": f"DAY#{day_bucket(record.timestamp)}#{shard}"}
                    ),
                }
            },
            {
                "Update": {
                    **counter_update,
                    "Key": _item(
                        {
                            "pk": f"CTR#{tenant}",
                            "sk": f"MONTH#{month_bucket(record.timestamp)}#{shard}",
                        }
                    ),
                }
            },
        ]
        try:
            # No ClientRequestToken: with one, a repeat within 10 minutes would "succeed" again
            # and a duplicate would be reported as new; the REQ condition already dedupes.
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if _is_duplicate(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        response = self.client.get_item(
            TableName=self.table,
            Key=_item({"pk": f"REQ#{tenant_id}#{request_id}", "sk": "REQ"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _record(_plain(item)) if item else None

    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        start, end = utc(start), utc(end)
        low, high = iso(start), iso(end)
        paginator = self.client.get_paginator("query")
        for month in _months(start, end):
            pages = paginator.paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues=_item(
                    {":pk": f"REC#{tenant_id}#{month}", ":low": low, ":high": high}
                ),
                ConsistentRead=True,
            )
            for page in pages:
                for item in page.get("Items", []):
                    record = _record(_plain(item))
                    if start <= record.timestamp < end:
                        yield record

    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        prefix = "DAY" if period == "day" else "MONTH"
        calls = 0
        units: dict[str, Decimal] = {}
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=_item(
                {":pk": f"CTR#{tenant_id}", ":prefix": f"{prefix}#{bucket}#"}
            ),
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                item = _plain(raw)
                calls += int(item.get("calls", 0))
                for name, value in item.items():
                    if name.startswith("units#"):
                        unit = name.split("#", 1)[1]
                        units[unit] = units.get(unit, Decimal(0)) + Decimal(value)
        return UsageTotals(calls=calls, units=MappingProxyType(units))

    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        cells: dict[tuple[str, str, str, str], list[Any]] = {}
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=_item(
                {
                    ":pk": f"CTR#{tenant_id}",
                    ":low": f"DAY#{first_day}#",
                    ":high": f"DAY#{last_day}#~",
                }
            ),
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                item = _plain(raw)
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


def _is_duplicate(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    if reasons:
        return reasons[0].get("Code") == "ConditionalCheckFailed"
    # Some clients put the reasons only in the message: "[ConditionalCheckFailed, None, ...]".
    return "[ConditionalCheckFailed" in str(error)


def _record(item: Mapping[str, Any]) -> UsageRecord:
    return UsageRecord(
        request_id=item["request_id"],
        tenant_id=item["tenant_id"],
        key_id=item["key_id"],
        model=item["model"],
        model_version=item["model_version"],
        task=item["task"],
        units=float(item["units"]),
        unit=item["unit"],
        latency_ms=float(item["latency_ms"]),
        status=int(item["status"]),
        timestamp=datetime.fromisoformat(item["ts"]),
    )


def create_table(client: Any, table_name: str) -> None:
    """Create the usage table with :data:`KEY_SCHEMA` (tests and local tooling; CDK in AWS)."""
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=KEY_SCHEMA["AttributeDefinitions"],
        KeySchema=KEY_SCHEMA["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name)
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={
            "Enabled": True,
            "AttributeName": KEY_SCHEMA["TimeToLiveAttribute"],
        },
    )
