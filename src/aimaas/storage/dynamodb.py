"""DynamoDB helpers every adapter shares: the client, item (de)serialisation, table creation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from aimaas.storage.tables import TABLES

# Short timeouts and botocore's standard retries: callers (the Meter) add their own on top.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5
)
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def client(existing: Any = None) -> Any:
    """``existing``, or a DynamoDB client with the shared timeouts and retries."""
    return existing or boto3.client("dynamodb", config=CLIENT_CONFIG)


def to_wire(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values -> DynamoDB's typed JSON (None values are left out)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed JSON -> plain values (numbers as ``Decimal``)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def error_code(error: ClientError) -> str | None:
    """The AWS error code of a failed call."""
    return error.response.get("Error", {}).get("Code")


def conditional_failed(error: ClientError) -> bool:
    """True for a failed ``ConditionExpression`` of a single-item write."""
    return error_code(error) == "ConditionalCheckFailedException"


def create_tables(dynamodb: Any, names: Mapping[str, str]) -> dict[str, str]:
    """Create the tables named in ``names`` (``{role: table name}``) from
    :data:`aimaas.storage.tables.TABLES`, wait for them and switch on their TTL.

    Used by the tests (moto) and ``scripts/deploy_localstack.py``; the CDK app builds the same
    schemas in ``infra/stacks/storage.py`` (a test compares the two).

    Returns
    -------
    dict
        ``{env var: table name}``, the settings that point the adapters at the tables.
    """
    for role, name in names.items():
        schema = TABLES[role]
        dynamodb.create_table(**schema.create_table_request(name))
    for role, name in names.items():
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        ttl = TABLES[role].ttl_attribute
        if ttl:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )
    return {TABLES[role].env_var: name for role, name in names.items()}
