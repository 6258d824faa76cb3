"""DynamoDB key store.

Table (``AIMAAS_TENANTS_TABLE``, created by the CDK app with exactly this key schema)::

    partition key  pk      S
    sort key       sk      S
    GSI "gsi1":    gsi1pk  S (partition), gsi1sk S (sort), projection ALL
    no TTL; on-demand billing; point-in-time recovery recommended

Items:

=====================  ========  ==================  ===============================  =========
pk                     sk        gsi1pk              gsi1sk                           what
=====================  ========  ==================  ===============================  =========
``TENANT#<tenant>``    ``META``  ``TENANTS``         ``TENANT#<tenant>``              a tenant
``KEY#<key id>``       ``META``  ``TENANT#<tenant>`` ``KEY#<created iso>#<key id>``   a key
=====================  ========  ==================  ===============================  =========

Key lookup ("key-hash lookup"): the key id is part of the presented key, so authentication is
one strongly consistent ``GetItem`` on ``KEY#<key id>`` followed by a constant-time comparison
of the stored ``key_hash`` (never a query on the hash, and never an eventually consistent GSI
read on the hot path). The GSI lists tenants (``gsi1pk = TENANTS``) and a tenant's keys
(``gsi1pk = TENANT#<tenant>``) for the admin tooling.

Attributes: tenants ``tenant_id, name, plan, status, created_at``; keys ``key_id, tenant_id,
key_hash, status, created_at, last_used_at, expires_at, label, apigw_key_id`` and, on keys
written before usage identifiers were derived (``aimaas.auth.keys.usage_identifier``),
``usage_identifier`` (times as ISO 8601 UTC strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from aimaas.auth.keys import KeyRecord, KeyStore, Tenant
from aimaas.metering.records import iso

#: The key schema the CDK app must create.
KEY_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
)

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5
)
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _tenant_item(tenant: Tenant) -> dict[str, Any]:
    return _item(
        {
            "pk": f"TENANT#{tenant.tenant_id}",
            "sk": "META",
            "gsi1pk": "TENANTS",
            "gsi1sk": f"TENANT#{tenant.tenant_id}",
            "tenant_id": tenant.tenant_id,
            "name": tenant.name,
            "plan": tenant.plan,
            "status": tenant.status,
            "created_at": iso(tenant.created_at),
        }
    )


def _tenant(item: Mapping[str, Any]) -> Tenant:
    return Tenant(
        tenant_id=item["tenant_id"],
        name=item["name"],
        plan=item["plan"],
        status=item["status"],
        created_at=datetime.fromisoformat(item["created_at"]),
    )


def _key_item(record: KeyRecord) -> dict[str, Any]:
    return _item(
        {
            "pk": f"KEY#{record.key_id}",
            "sk": "META",
            "gsi1pk": f"TENANT#{record.tenant_id}",
            "gsi1sk": f"KEY#{iso(record.created_at)}#{record.key_id}",
            "key_id": record.key_id,
            "tenant_id": record.tenant_id,
            "key_hash": record.key_hash,
            "status": record.status,
            "created_at": iso(record.created_at),
            "last_used_at": iso(record.last_used_at) if record.last_used_at else None,
            "expires_at": iso(record.expires_at) if record.expires_at else None,
            "label": record.label,
            "apigw_key_id": record.apigw_key_id,
            "usage_identifier": record.usage_identifier,
        }
    )


def _key(item: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=item["key_id"],
        tenant_id=item["tenant_id"],
        key_hash=item["key_hash"],
        status=item["status"],
        created_at=datetime.fromisoformat(item["created_at"]),
        last_used_at=_time(item.get("last_used_at")),
        expires_at=_time(item.get("expires_at")),
        label=item.get("label", ""),
        apigw_key_id=item.get("apigw_key_id"),
        usage_identifier=item.get("usage_identifier"),
    )


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoDbKeyStore(KeyStore):
    """Tenants and keys in one DynamoDB table (see the module docstring for the layout)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.client = client or boto3.client("dynamodb", config=_CLIENT_CONFIG)

    def _put(self, item: dict[str, Any], condition: str) -> bool:
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition)
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def _get(self, pk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=_item({"pk": pk, "sk": "META"}), ConsistentRead=True
        )
        item = response.get("Item")
        return _plain(item) if item else None

    def _query_gsi(self, gsi1pk: str, prefix: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            ExpressionAttributeValues=_item({":pk": gsi1pk, ":prefix": prefix}),
        ):
            items.extend(_plain(item) for item in page.get("Items", []))
        return items

    def create_tenant(self, tenant: Tenant) -> None:
        if not self._put(_tenant_item(tenant), "attribute_not_exists(pk)"):
            raise ValueError(f"tenant {tenant.tenant_id!r} already exists")

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        item = self._get(f"TENANT#{tenant_id}")
        return _tenant(item) if item else None

    def list_tenants(self) -> list[Tenant]:
        return [_tenant(item) for item in self._query_gsi("TENANTS", "TENANT#")]

    def save_tenant(self, tenant: Tenant) -> None:
        if not self._put(_tenant_item(tenant), "attribute_exists(pk)"):
            raise KeyError(f"unknown tenant {tenant.tenant_id!r}")

    def create_key(self, record: KeyRecord) -> None:
        if not self._put(_key_item(record), "attribute_not_exists(pk)"):
            raise ValueError(f"key {record.key_id!r} already exists")

    def get_key(self, key_id: str) -> KeyRecord | None:
        item = self._get(f"KEY#{key_id}")
        return _key(item) if item else None

    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        return [_key(item) for item in self._query_gsi(f"TENANT#{tenant_id}", "KEY#")]

    def save_key(self, record: KeyRecord) -> None:
        if not self._put(_key_item(record), "attribute_exists(pk)"):
            raise KeyError(f"unknown key {record.key_id!r}")

    def touch_key(self, key_id: str, at: datetime, min_interval_s: int = 300) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_item({"pk": f"KEY#{key_id}", "sk": "META"}),
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression=(
                    "attribute_exists(pk) AND "
                    "(attribute_not_exists(last_used_at) OR last_used_at < :stale)"
                ),
                ExpressionAttributeValues=_item(
                    {":now": iso(at), ":stale": iso(at - timedelta(seconds=min_interval_s))}
                ),
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise


def create_table(client: Any, table_name: str) -> None:
    """Create the tenants table with :data:`KEY_SCHEMA` (tests and local tooling; CDK in AWS)."""
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=KEY_SCHEMA["AttributeDefinitions"],
        KeySchema=KEY_SCHEMA["KeySchema"],
        GlobalSecondaryIndexes=KEY_SCHEMA["GlobalSecondaryIndexes"],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name)
