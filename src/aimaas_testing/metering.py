"""Test helpers for the metering port, reusable by other test suites (standard library only).

- :class:`FlakyLedger` wraps a ledger and fails a share of writes, before or after the write
  lands, to exercise :class:`aimaas.metering.Meter`'s retries and its not-served policy.
- :func:`hammer` sends many records from many threads (with duplicate request ids) and returns
  what each call answered, so a test can compare the ledger with what was acknowledged.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import Period, UsageCell, UsageRecord, UsageTotals


class InjectedFault(ConnectionError):
    """The failure :class:`FlakyLedger` raises (a transient-looking error)."""


class FlakyLedger(UsageLedger):
    """A ledger that fails a share of ``put`` calls.

    Parameters
    ----------
    inner
        The real ledger.
    fail_before
        Probability that a put fails before reaching ``inner`` (nothing written).
    fail_after
        Probability that a put fails after ``inner`` stored it (an ambiguous failure: the
        write landed but the caller sees an error).
    seed
        Seed of the fault pattern, so a failing run can be replayed.
    """

    def __init__(
        self,
        inner: UsageLedger,
        *,
        fail_before: float = 0.0,
        fail_after: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.inner = inner
        self.fail_before = fail_before
        self.fail_after = fail_after
        self._random = random.Random(seed)  # noqa: S311 - a fault pattern, not a secret
        self._lock = threading.Lock()
        self.injected_before = 0
        self.injected_after = 0

    def _roll(self) -> float:
        with self._lock:
            return self._random.random()

    def put(self, record: UsageRecord) -> bool:
        if self._roll() < self.fail_before:
            with self._lock:
                self.injected_before += 1
            raise InjectedFault("injected failure before the write")
        result = self.inner.put(record)
        if self._roll() < self.fail_after:
            with self._lock:
                self.injected_after += 1
            raise InjectedFault("injected failure after the write")
        return result

    def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        return self.inner.get(tenant_id, request_id)

    def records(self, tenant_id: str, start: datetime, end: datetime) -> Iterator[UsageRecord]:
        return self.inner.records(tenant_id, start, end)

    def totals(self, tenant_id: str, period: Period, bucket: str) -> UsageTotals:
        return self.inner.totals(tenant_id, period, bucket)

    def daily_cells(self, tenant_id: str, first_day: str, last_day: str) -> Iterator[UsageCell]:
        return self.inner.daily_cells(tenant_id, first_day, last_day)


def sample_record(
    request_id: str,
    *,
    tenant_id: str = "t-test",
    timestamp: datetime | None = None,
    units: float = 1.5,
    unit: str = "1k_tokens",
    task: str = "embeddings",
    model: str = "all-minilm-l6-v2-int8",
    key_id: str = "k-test",
) -> UsageRecord:
    """A plausible record for tests."""
    return UsageRecord(
        request_id=request_id,
        tenant_id=tenant_id,
        key_id=key_id,
        model=model,
        model_version="1.0.0",
        task=task,
        units=units,
        unit=unit,
        latency_ms=12.5,
        status=200,
        timestamp=timestamp or datetime.now(UTC),
    )


@dataclass
class HammerResult:
    """What :func:`hammer` sent and what the writer answered."""

    sent: int = 0
    new: set[str] = field(default_factory=set)  # request ids acknowledged as new
    duplicates: int = 0
    failed: set[str] = field(default_factory=set)  # request ids whose write raised
    unique_ids: set[str] = field(default_factory=set)
    units_by_id: dict[str, float] = field(default_factory=dict)


def hammer(
    write: Callable[[UsageRecord], bool],
    *,
    threads: int = 32,
    per_thread: int = 2000,
    duplicate_every: int = 10,
    tenants: tuple[str, ...] = ("t-a", "t-b"),
    start: datetime | None = None,
) -> HammerResult:
    """Write ``threads x per_thread`` records concurrently; every ``duplicate_every``-th reuses
    an id another thread also sends, so duplicates race each other.

    Parameters
    ----------
    write
        ``ledger.put`` or ``meter.record`` (anything returning True for new, False for a repeat).

    Returns
    -------
    HammerResult
        The acknowledged ids, duplicates and failures, for comparison with the ledger.
    """
    start = start or datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # crosses a day and a month
    result = HammerResult()
    lock = threading.Lock()

    def worker(thread: int) -> None:
        for i in range(per_thread):
            if duplicate_every and i % duplicate_every == 0:
                request_id = f"shared-{i}"  # every thread sends this one
                seed = i
            else:
                request_id = f"r-{thread}-{i}"
                seed = thread * per_thread + i
            tenant = tenants[seed % len(tenants)]
            units = (seed % 7) * 0.25 + 0.5
            record = sample_record(
                request_id,
                tenant_id=tenant,
                units=units,
                timestamp=start + timedelta(seconds=seed * 5),
            )
            try:
                is_new = write(record)
            except Exception:
                with lock:
                    result.sent += 1
                    result.failed.add(f"{tenant}/{request_id}")
                continue
            with lock:
                result.sent += 1
                result.unique_ids.add(f"{tenant}/{request_id}")
                result.units_by_id[f"{tenant}/{request_id}"] = units
                if is_new:
                    result.new.add(f"{tenant}/{request_id}")
                else:
                    result.duplicates += 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(worker, range(threads)))
    return result


_MOTO_ITEM_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "batch_get_item",
)


def serialize_moto_dynamodb_transactions() -> Callable[[], None]:
    """Make moto's ``TransactWriteItems`` atomic under threads and cheap; returns an undo.

    moto (5.2) runs a transaction without a lock, so two threads can both pass the same
    condition, and it snapshots whole tables with ``copy.deepcopy`` on every call (quadratic
    time, and a rollback that can erase other threads' writes). DynamoDB itself serializes
    conflicting transactions. This patch holds one lock per transaction and snapshots only the
    items the transaction touches, restoring them if it is cancelled: the same semantics at
    the speed a concurrency test needs. Tests only.
    """
    import copy

    import moto.dynamodb.models as models

    backend_class = models.DynamoDBBackend
    original = backend_class.transact_write_items
    lock = threading.RLock()

    table_class = models.Table

    class _NoTableCopy:
        # Skip only the whole-table snapshot; every other deepcopy in moto stays a deepcopy.
        @staticmethod
        def deepcopy(value: object, memo: dict | None = None) -> object:
            return value if isinstance(value, table_class) else copy.deepcopy(value, memo)

    def _key(backend: object, op_type: str, op: dict) -> tuple[str, dict]:
        table_name = op["TableName"]
        if op_type != "Put":
            return table_name, op["Key"]
        table = backend.get_table(table_name)  # type: ignore[attr-defined]
        key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = op["Item"][table.range_key_attr]
        return table_name, key

    def transact_write_items(self: object, transact_items: list[dict]) -> None:
        with lock:
            before = []
            for item in transact_items:
                op_type, op = next(iter(item.items()))
                table_name, key = _key(self, op_type, op)
                current = self.get_item(table_name, key)  # type: ignore[attr-defined]
                saved = copy.deepcopy(current.to_json()["Attributes"]) if current else None
                before.append((table_name, key, saved))
            try:
                original(self, transact_items)
            except Exception:
                for table_name, key, saved in before:
                    if saved is None:
                        if self.get_item(table_name, key) is not None:  # type: ignore[attr-defined]
                            self.delete_item(table_name, key)  # type: ignore[attr-defined]
                    else:
                        self.put_item(table_name, saved)  # type: ignore[attr-defined]
                raise

    # moto's reads iterate the same dicts the writes grow ("dictionary changed size during
    # iteration" when a server thread queries counters while another records usage): every item
    # operation takes the transactions' lock too.
    originals = {name: getattr(backend_class, name) for name in _MOTO_ITEM_OPERATIONS}

    def _locked(method: Callable[..., object]) -> Callable[..., object]:
        def call(self: object, *args: object, **kwargs: object) -> object:
            with lock:
                return method(self, *args, **kwargs)

        return call

    saved_copy = models.copy
    models.copy = _NoTableCopy  # type: ignore[assignment]
    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]
    for name, method in originals.items():
        setattr(backend_class, name, _locked(method))

    def undo() -> None:
        backend_class.transact_write_items = original  # type: ignore[method-assign]
        for name, method in originals.items():
            setattr(backend_class, name, method)
        models.copy = saved_copy

    return undo


#: Table names :func:`moto_tables` creates.
MOTO_TABLES = {
    "tenants": "aimaas-test-tenants",
    "usage": "aimaas-test-usage",
    "audit": "aimaas-test-audit",
}


@contextmanager
def moto_tables(region: str = "us-east-1") -> Iterator[dict[str, str]]:
    """Start moto's in-process AWS with the three aimaas tables created (tests only).

    Sets dummy credentials and the region for the duration, makes moto's transactions
    thread-safe (:func:`serialize_moto_dynamodb_transactions`), and yields the settings
    environment (``AIMAAS_*`` variables) that points the DynamoDB adapters at the tables.
    """
    import os
    from unittest import mock

    import boto3
    from moto import mock_aws

    from aimaas.auth.dynamodb import create_table as create_tenants_table
    from aimaas.metering.dynamodb import KEY_SCHEMA
    from aimaas.metering.dynamodb import create_table as create_usage_table

    fake_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    with mock.patch.dict(os.environ, fake_env), mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
            os.environ.pop(name, None)
        undo = serialize_moto_dynamodb_transactions()
        try:
            client = boto3.client("dynamodb", region_name=region)
            create_tenants_table(client, MOTO_TABLES["tenants"])
            create_usage_table(client, MOTO_TABLES["usage"])
            client.create_table(
                TableName=MOTO_TABLES["audit"],
                AttributeDefinitions=KEY_SCHEMA["AttributeDefinitions"],
                KeySchema=KEY_SCHEMA["KeySchema"],
                BillingMode="PAY_PER_REQUEST",
            )
            yield {
                "AIMAAS_KEY_STORE": "dynamodb",
                "AIMAAS_LEDGER": "dynamodb",
                "AIMAAS_TENANTS_TABLE": MOTO_TABLES["tenants"],
                "AIMAAS_USAGE_TABLE": MOTO_TABLES["usage"],
                "AIMAAS_AUDIT_TABLE": MOTO_TABLES["audit"],
                # A shared (DynamoDB) key store refuses the local default pepper.
                "AIMAAS_KEY_PEPPER": "moto-test-pepper",
            }
        finally:
            undo()
