"""Test helpers for the metering port, reusable by other test suites (standard library only).

- :class:`FlakyLedger` wraps a ledger and fails a share of writes, before or after the write
  lands, to exercise :class:`aimaas.metering.Meter`'s retries and its not-served policy.
- :func:`hammer` sends many records from many threads (with duplicate request ids) and returns
  what each call answered, so a test can compare the ledger with what was acknowledged.
- :func:`moto_tables` starts moto with the tables of the storage kit and, through
  :class:`StreamPump`, runs the ledger's stream aggregator as AWS Lambda would.
- :func:`bump_sqlite_month_counter` puts a tenant near its hard limit without serving calls.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aimaas.metering.ledger import UsageLedger
from aimaas.metering.records import Period, UsageCell, UsageRecord, UsageTotals, month_bucket


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

    def reserve(self, tenant_id: str, month: str, limit: int, allowance: int) -> bool:
        return self.inner.reserve(tenant_id, month, limit, allowance)

    def release(self, tenant_id: str, month: str, limit: int) -> None:
        self.inner.release(tenant_id, month, limit)


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


#: Held by every patched moto DynamoDB operation (see :func:`serialize_moto_dynamodb_transactions`).
_MOTO_LOCK = threading.RLock()

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
    lock = _MOTO_LOCK

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


class StreamPump:
    """The aggregator's event source mapping, emulated on moto's DynamoDB stream (tests only).

    In AWS, Lambda reads the usage table's stream and invokes the aggregator with batches of
    new records (:data:`aimaas.metering.aggregator.STREAM_FILTER`). moto keeps the stream but
    runs no Lambda, and its ``dynamodbstreams`` endpoint is shadowed by the DynamoDB one, so
    this reads moto's stream shard directly and hands the same event shape to the real
    :class:`~aimaas.metering.aggregator.StreamAggregator`, in batches of ``batch_size``.

    Parameters
    ----------
    table_name, region
        The moto table and its region.
    batch_size
        Records per invocation (the event source mapping's ``BatchSize``).
    redeliver_every
        Deliver every n-th batch twice (0: never): at-least-once delivery, for tests.
    """

    def __init__(
        self, table_name: str, region: str, *, batch_size: int = 100, redeliver_every: int = 0
    ) -> None:
        from aimaas.metering.aggregator import StreamAggregator

        self.table_name = table_name
        self.region = region
        self.batch_size = batch_size
        self.redeliver_every = redeliver_every
        self.aggregator = StreamAggregator(table_name, sleep=lambda _: None)
        self.position = 0
        self.batches = 0
        self.counted = 0
        self._lock = threading.Lock()

    def _shard(self) -> object:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region].get_table(self.table_name)
        return table.stream_shard

    def drain(self) -> int:
        """Deliver every stream record not yet delivered; returns how many were counted."""
        from aimaas.metering.aggregator import is_ledger_insert

        with self._lock:
            shard = self._shard()
            with _MOTO_LOCK:
                fresh = [r.to_json() for r in shard.items[self.position :]]  # type: ignore[attr-defined]
                self.position += len(fresh)
            wanted = [r for r in fresh if is_ledger_insert(r)]
            counted = 0
            for start in range(0, len(wanted), self.batch_size):
                event = {"Records": wanted[start : start + self.batch_size]}
                counted += self.aggregator.handle(event)["counted"]
                self.batches += 1
                if self.redeliver_every and self.batches % self.redeliver_every == 0:
                    counted += self.aggregator.handle(event)["counted"]  # must count nothing
            self.counted += counted
            return counted


def drain_before_reads(pump: StreamPump) -> Callable[[], None]:
    """Run ``pump`` before every read of the usage table through boto3's default session, so a
    test reads what an aggregator with no delay would have written; returns an undo.

    Only reads that the aggregator feeds (``Query`` of copies and counters) wait for it;
    ``GetItem`` of a record never does, in AWS or here.
    """
    import boto3

    def before_query(params: dict[str, object], **_: object) -> None:
        if params.get("TableName") == pump.table_name:
            pump.drain()

    session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("provide-client-params.dynamodb.Query", before_query)

    def undo() -> None:
        session.events.unregister("provide-client-params.dynamodb.Query", before_query)

    return undo


@contextmanager
def moto_tables(region: str = "us-east-1", *, aggregate: bool = True) -> Iterator[dict[str, str]]:
    """Start moto's in-process AWS with the three aimaas tables created (tests only).

    Sets dummy credentials and the region for the duration, makes moto's transactions
    thread-safe (:func:`serialize_moto_dynamodb_transactions`), creates the tables from the
    storage kit's one definition (:func:`aimaas.storage.dynamodb.create_tables`) and, with
    ``aggregate``, runs the ledger's stream aggregator before every counter or listing read
    (:class:`StreamPump`, :func:`drain_before_reads`). Yields the settings environment
    (``AIMAAS_*`` variables) that points the DynamoDB adapters at the tables.
    """
    import os
    from unittest import mock

    import boto3
    from moto import mock_aws

    from aimaas.storage.dynamodb import create_tables

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
        saved_session = boto3.DEFAULT_SESSION
        boto3.setup_default_session()  # clients made inside see the drain hook, none outside
        undo_drain: Callable[[], None] = lambda: None  # noqa: E731
        try:
            settings = create_tables(boto3.client("dynamodb", region_name=region), MOTO_TABLES)
            if aggregate:
                undo_drain = drain_before_reads(StreamPump(MOTO_TABLES["usage"], region))
            yield {
                "AIMAAS_KEY_STORE": "dynamodb",
                "AIMAAS_LEDGER": "dynamodb",
                **settings,
                # A shared (DynamoDB) key store refuses the local default pepper.
                "AIMAAS_KEY_PEPPER": "moto-test-pepper",
            }
        finally:
            undo_drain()
            boto3.DEFAULT_SESSION = saved_session
            undo()


def bump_sqlite_month_counter(db_path: Path, tenant_id: str, calls: int, at: datetime) -> None:
    """Add ``calls`` to a tenant's month counter in a SQLite ledger, without records.

    A tenant "at 9,995 of 10,000" in one statement instead of 9,995 served calls; the hard
    limit reads only this counter.
    """
    connection = sqlite3.connect(db_path)
    try:
        with connection:
            connection.execute(
                "INSERT INTO usage_counter_cells (tenant_id, period, bucket, task, model, unit,"
                " calls, units_micro) VALUES (?, 'month', ?, 'embeddings', 'earlier-usage',"
                " '1k_tokens', ?, 0)",
                (tenant_id, month_bucket(at), calls),
            )
    finally:
        connection.close()
