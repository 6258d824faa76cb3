"""The storage kit every store builds on: SQLite pooling, records that map themselves to rows and
items, time helpers, and the one definition of the DynamoDB tables.

Public face::

    from aimaas.storage import SqliteDatabase, Stored, TABLES, iso, utc

- :class:`SqliteDatabase` (:mod:`aimaas.storage.sqlite`): pooled connections to one file.
- :class:`Stored` (:mod:`aimaas.storage.records`): a dataclass mixin; ``to_row``/``from_row``
  and ``to_item``/``from_item`` derived from the field types, for every adapter.
- :data:`TABLES` (:mod:`aimaas.storage.tables`): the key schemas, GSIs, TTL and streams;
  :func:`aimaas.storage.dynamodb.create_tables` builds them (tests, LocalStack), the CDK app
  builds the same (``infra/stacks/storage.py``).
- time helpers (:mod:`aimaas.storage.clock`).

Standard library only, except :mod:`aimaas.storage.dynamodb` (boto3), imported on demand.
"""

from aimaas.storage.clock import (
    Period,
    bucket,
    day_bucket,
    iso,
    month_bucket,
    months,
    next_month_start,
    now_utc,
    utc,
)
from aimaas.storage.records import Stored
from aimaas.storage.sqlite import SqliteDatabase
from aimaas.storage.tables import AUDIT, BATCHES, CLASSIFIERS, TABLES, TENANTS, USAGE, TableSchema

__all__ = [
    "AUDIT",
    "BATCHES",
    "CLASSIFIERS",
    "TABLES",
    "TENANTS",
    "USAGE",
    "Period",
    "SqliteDatabase",
    "Stored",
    "TableSchema",
    "bucket",
    "day_bucket",
    "iso",
    "month_bucket",
    "months",
    "next_month_start",
    "now_utc",
    "utc",
]
