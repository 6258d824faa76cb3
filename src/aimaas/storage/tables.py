"""The DynamoDB tables: ONE definition that tests (moto), the LocalStack deploy script and the
CDK app all build from (standard library only, so ``infra/`` can import it).

Every table has a string partition key ``pk`` and sort key ``sk``, on-demand billing, and
optionally global secondary indexes ``<name>`` keyed ``<name>pk`` / ``<name>sk`` (strings,
projection ALL), a TTL attribute and a stream. What the items hold is documented by the
adapter that writes them (:mod:`aimaas.auth.dynamodb`, :mod:`aimaas.metering.dynamodb`,
:mod:`aimaas.audit.dynamodb`, :mod:`aimaas.classifiers.aws`, :mod:`aimaas.batch.aws`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

StreamView = Literal["NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY"]


@dataclass(frozen=True)
class TableSchema:
    """One table.

    Attributes
    ----------
    role
        ``tenants``, ``usage``, ``audit``, ``classifiers`` or ``batches``: the table's name suffix
        (``aimaas-<stage>-<role>``).
    env_var
        The variable that names the table for the runtime (``AIMAAS_USAGE_TABLE``, ...).
    gsis
        Global secondary index names.
    ttl_attribute
        The TTL attribute (epoch seconds), if items expire.
    stream
        The stream view type, if the table has a stream (the usage table: the aggregator).
    """

    role: str
    env_var: str
    gsis: tuple[str, ...] = ()
    ttl_attribute: str | None = None
    stream: StreamView | None = None

    @property
    def attribute_definitions(self) -> list[dict[str, str]]:
        names = ["pk", "sk", *(f"{g}{part}" for g in self.gsis for part in ("pk", "sk"))]
        return [{"AttributeName": name, "AttributeType": "S"} for name in names]

    @property
    def key_schema(self) -> list[dict[str, str]]:
        return [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]

    @property
    def global_secondary_indexes(self) -> list[dict[str, Any]]:
        return [
            {
                "IndexName": g,
                "KeySchema": [
                    {"AttributeName": f"{g}pk", "KeyType": "HASH"},
                    {"AttributeName": f"{g}sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for g in self.gsis
        ]

    def create_table_request(self, table_name: str) -> dict[str, Any]:
        """The ``CreateTable`` parameters of this table under ``table_name``."""
        request: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": self.attribute_definitions,
            "KeySchema": self.key_schema,
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.gsis:
            request["GlobalSecondaryIndexes"] = self.global_secondary_indexes
        if self.stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": self.stream}
        return request


TENANTS = TableSchema("tenants", "AIMAAS_TENANTS_TABLE", gsis=("gsi1",))
USAGE = TableSchema("usage", "AIMAAS_USAGE_TABLE", ttl_attribute="expires_at", stream="NEW_IMAGE")
AUDIT = TableSchema("audit", "AIMAAS_AUDIT_TABLE")
CLASSIFIERS = TableSchema("classifiers", "AIMAAS_CLASSIFIERS_TABLE")
#: Batch jobs and their counted chunks (:mod:`aimaas.batch.aws`); both expire with their files.
BATCHES = TableSchema("batches", "AIMAAS_BATCHES_TABLE", ttl_attribute="expires_at_epoch")

#: Every table, by role.
TABLES: Mapping[str, TableSchema] = MappingProxyType(
    {t.role: t for t in (TENANTS, USAGE, AUDIT, CLASSIFIERS, BATCHES)}
)
