"""Audit events in the DynamoDB audit table (layout in :mod:`aimaas.audit`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from aimaas.audit import AuditEvent, AuditLog, event_from
from aimaas.metering.records import iso, utc


class DynamoDbAuditLog(AuditLog):
    """Audit events in the DynamoDB audit table (see the module docstring)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        import boto3

        self.table = table_name
        self.client = client or boto3.client("dynamodb")

    def append(self, event: AuditEvent) -> None:
        data = event.as_dict()
        item = {
            "pk": {"S": f"AUDIT#{utc(event.at).strftime('%Y-%m')}"},
            "sk": {"S": f"{data['at']}#{event.event_id}"},
            **{
                k: {"S": str(data[k])}
                for k in ("event_id", "at", "actor", "host", "action", "target", "outcome")
            },
            "details": {"S": json.dumps(data["details"], sort_keys=True)},
        }
        self.client.put_item(
            TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )

    def list(self, start: datetime, end: datetime) -> Iterator[AuditEvent]:
        start, end = utc(start), utc(end)
        year, month = start.year, start.month
        paginator = self.client.get_paginator("query")
        while (year, month) <= (end.year, end.month):
            for page in paginator.paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":pk": {"S": f"AUDIT#{year:04d}-{month:02d}"},
                    ":low": {"S": iso(start)},
                    ":high": {"S": iso(end)},
                },
            ):
                for item in page.get("Items", []):
                    event = event_from({k: v["S"] for k, v in item.items()})
                    if start <= event.at < end:
                        yield event
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
