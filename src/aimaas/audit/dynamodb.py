"""Audit events in the DynamoDB audit table (layout in :mod:`aimaas.audit`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from aimaas.audit import AuditEvent, AuditLog
from aimaas.storage import dynamodb as ddb
from aimaas.storage import iso, utc


class DynamoDbAuditLog(AuditLog):
    """Audit events in the DynamoDB audit table (see :mod:`aimaas.audit`)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.client = ddb.client(client)

    def append(self, event: AuditEvent) -> None:
        item = {
            "pk": f"AUDIT#{utc(event.at).strftime('%Y-%m')}",
            "sk": f"{iso(event.at)}#{event.event_id}",
            **event.to_item(),
        }
        self.client.put_item(
            TableName=self.table,
            Item=ddb.to_wire(item),
            ConditionExpression="attribute_not_exists(pk)",
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
                    event = AuditEvent.from_item(ddb.from_wire(item))
                    if start <= event.at < end:
                        yield event
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
