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

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from aimaas.auth.keys import KeyRecord, KeyStore, Tenant
from aimaas.storage import dynamodb as ddb
from aimaas.storage import iso


def _tenant_item(tenant: Tenant) -> dict[str, Any]:
    return ddb.to_wire(
        {
            "pk": f"TENANT#{tenant.tenant_id}",
            "sk": "META",
            "gsi1pk": "TENANTS",
            "gsi1sk": f"TENANT#{tenant.tenant_id}",
            **tenant.to_item(),
        }
    )


def _key_item(record: KeyRecord) -> dict[str, Any]:
    return ddb.to_wire(
        {
            "pk": f"KEY#{record.key_id}",
            "sk": "META",
            "gsi1pk": f"TENANT#{record.tenant_id}",
            "gsi1sk": f"KEY#{iso(record.created_at)}#{record.key_id}",
            **record.to_item(),
        }
    )


class DynamoDbKeyStore(KeyStore):
    """Tenants and keys in one DynamoDB table (see the module docstring for the layout)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.client = ddb.client(client)

    def _put(self, item: dict[str, Any], condition: str) -> bool:
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition)
        except ClientError as error:
            if ddb.conditional_failed(error):
                return False
            raise
        return True

    def _get(self, pk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=ddb.to_wire({"pk": pk, "sk": "META"}), ConsistentRead=True
        )
        item = response.get("Item")
        return ddb.from_wire(item) if item else None

    def _query_gsi(self, gsi1pk: str, prefix: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            ExpressionAttributeValues=ddb.to_wire({":pk": gsi1pk, ":prefix": prefix}),
        ):
            items.extend(ddb.from_wire(item) for item in page.get("Items", []))
        return items

    def create_tenant(self, tenant: Tenant) -> None:
        if not self._put(_tenant_item(tenant), "attribute_not_exists(pk)"):
            raise ValueError(f"tenant {tenant.tenant_id!r} already exists")

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        item = self._get(f"TENANT#{tenant_id}")
        return Tenant.from_item(item) if item else None

    def list_tenants(self) -> list[Tenant]:
        return [Tenant.from_item(item) for item in self._query_gsi("TENANTS", "TENANT#")]

    def save_tenant(self, tenant: Tenant) -> None:
        if not self._put(_tenant_item(tenant), "attribute_exists(pk)"):
            raise KeyError(f"unknown tenant {tenant.tenant_id!r}")

    def create_key(self, record: KeyRecord) -> None:
        if not self._put(_key_item(record), "attribute_not_exists(pk)"):
            raise ValueError(f"key {record.key_id!r} already exists")

    def get_key(self, key_id: str) -> KeyRecord | None:
        item = self._get(f"KEY#{key_id}")
        return KeyRecord.from_item(item) if item else None

    def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        return [
            KeyRecord.from_item(item) for item in self._query_gsi(f"TENANT#{tenant_id}", "KEY#")
        ]

    def save_key(self, record: KeyRecord) -> None:
        if not self._put(_key_item(record), "attribute_exists(pk)"):
            raise KeyError(f"unknown key {record.key_id!r}")

    def touch_key(self, key_id: str, at: datetime, min_interval_s: int = 300) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=ddb.to_wire({"pk": f"KEY#{key_id}", "sk": "META"}),
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression=(
                    "attribute_exists(pk) AND "
                    "(attribute_not_exists(last_used_at) OR last_used_at < :stale)"
                ),
                ExpressionAttributeValues=ddb.to_wire(
                    {":now": iso(at), ":stale": iso(at - timedelta(seconds=min_interval_s))}
                ),
            )
        except ClientError as error:
            if not ddb.conditional_failed(error):
                raise
