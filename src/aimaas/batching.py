"""Dynamic batching: run concurrent requests for one model together, then split the answers back.

A :class:`DynamicBatcher` sits in front of a function that runs a whole batch at once (an ONNX
session on a GPU, typically). Callers ``await batcher.submit(item)``; items queue per *bucket*
(a key the caller chooses, e.g. the padded token length of a text) and a batch is cut from one
bucket when either

- it holds ``max_batch_size`` rows (an item may carry several rows: a request with 8 texts), or
- its oldest item has waited ``max_wait_ms`` (not at all when it is alone: nothing else queued
  and nothing running, so a lone caller never pays for a wait that cannot bring company).

While a batch runs, new items keep queueing, so a busy model gets fuller batches for free. When
several buckets are ready the fullest runs first, but a bucket passed over a few times runs
next, so no length starves. The batch function runs in a thread pool so the event loop keeps
accepting requests meanwhile.

Errors reach only the callers they belong to: the batch function may return an exception in an
item's slot, and when it raises for a whole batch the items are run again one by one, so one bad
input does not fail the requests that happened to share its batch.

Bucketing is what makes batching cheap for text: a batch of texts is padded to its longest
member, so mixing a 5-token and a 250-token text wastes 98% of the first row's compute.
:func:`length_bucket` maps a length to the smallest of a few fixed edges; items are only ever
batched with items of the same bucket.

Only the standard library and numpy are used (no torch), so the module is cheap to import and
easy to unit-test without a model.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from aimaas.errors import BackendUnavailable, Overloaded

__all__ = [
    "DEFAULT_LENGTH_EDGES",
    "BatchStats",
    "BatcherClosed",
    "BatcherOverloaded",
    "BatchingOptions",
    "DynamicBatcher",
    "ThreadBatcher",
    "length_bucket",
]

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound="_Done")

logger = logging.getLogger(__name__)

# A ready bucket passed over this many times in favour of fuller ones runs next.
_MAX_SKIPS = 3

# Padded lengths for text: powers of two up to the longest sequence the text models accept.
DEFAULT_LENGTH_EDGES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)


def length_bucket(length: int, edges: Sequence[int] = DEFAULT_LENGTH_EDGES) -> int:
    """Map a sequence length to the smallest bucket edge that holds it.

    Parameters
    ----------
    length
        The (token) length of one item; for an item with several rows, its longest row.
    edges
        Increasing bucket edges. A length above the last edge gets a bucket of its own (the
        length itself), so an overlong item never shares a batch with short ones.

    Returns
    -------
    int
        The bucket edge, usable as a batcher bucket key.
    """
    if length < 0:
        raise ValueError("length must be >= 0")
    index = bisect.bisect_left(edges, length)
    return edges[index] if index < len(edges) else length


class BatcherOverloaded(Overloaded):
    """The queue is full: the caller should retry later (503 with ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class BatcherClosed(BackendUnavailable):
    """The batcher was closed (the server is shutting down) before the item ran."""

    code = "shutting_down"


@dataclass(frozen=True)
class BatchingOptions:
    """The limits of one batcher.

    Parameters
    ----------
    max_batch_size
        Most rows run together; 1 turns batching off (every item runs on its own).
    max_wait_ms
        Longest an item waits for company before its bucket runs anyway; 0 runs at once whatever
        has queued (batches still form while the model is busy).
    max_queue
        Most rows waiting at once; more are refused with :class:`BatcherOverloaded`.
    max_concurrent_batches
        Batches run at the same time (threads).
    adaptive_wait
        Skip the wait when an item is alone: nothing else queued and no batch running. A lone
        caller (one client that waits for each answer before asking again) then never pays
        ``max_wait_ms``; as soon as requests overlap, they wait for each other as configured.
    """

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    max_concurrent_batches: int = 1
    adaptive_wait: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.max_queue < 1 or self.max_concurrent_batches < 1:
            raise ValueError("max_queue and max_concurrent_batches must be >= 1")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_concurrent_batches: int = 1,
        prefix: str = "AIMAAS_BATCH_",
    ) -> BatchingOptions:
        """Options from a model's own policy, overridden by ``<prefix>*`` variables.

        Parameters
        ----------
        environ
            Usually ``os.environ``; reads ``MAX_SIZE``, ``MAX_WAIT_MS``, ``MAX_QUEUE`` and
            ``CONCURRENCY`` after ``prefix``.
        max_batch_size, max_wait_ms
            The defaults when no variable is set (a manifest's ``batching`` policy).
        max_concurrent_batches
            The default when ``CONCURRENCY`` is not set (the device's preference).
        prefix
            Variable name prefix.

        Returns
        -------
        BatchingOptions
        """

        def get(name: str) -> str | None:
            value = environ.get(prefix + name)
            return value if value not in (None, "") else None

        size = get("MAX_SIZE")
        wait = get("MAX_WAIT_MS")
        queue = get("MAX_QUEUE")
        workers = get("CONCURRENCY")
        return cls(
            max_batch_size=int(size) if size else max_batch_size,
            max_wait_ms=float(wait) if wait else max_wait_ms,
            max_queue=int(queue) if queue else cls.max_queue,
            max_concurrent_batches=int(workers) if workers else max_concurrent_batches,
        )


@dataclass
class BatchStats:
    """Counters of one batcher since it started; :meth:`snapshot` renders them for logs."""

    batches: int = 0
    items: int = 0
    rows: int = 0
    failed_batches: int = 0
    batch_rows: Counter[int] = field(default_factory=Counter)
    # Recent samples only, so percentiles follow the current load and memory stays bounded.
    queue_wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    run_ms: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(
        self,
        batch: Sequence[_Pending[Any, Any]],
        started: float,
        finished: float,
        failed: bool,
        name: str,
    ) -> None:
        """Count one batch that ran from ``started`` to ``finished`` (the clock of its items'
        ``enqueued`` times)."""
        rows = sum(p.rows for p in batch)
        with self._lock:
            self.batches += 1
            self.items += len(batch)
            self.rows += rows
            self.failed_batches += int(failed)
            self.batch_rows[rows] += 1
            self.run_ms.append((finished - started) * 1000.0)
            self.queue_wait_ms.extend((started - p.enqueued) * 1000.0 for p in batch)
        logger.debug(
            "batch model=%s items=%d rows=%d run_ms=%.2f",
            name,
            len(batch),
            rows,
            (finished - started) * 1000.0,
        )

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready summary: counts, mean batch size, queue-wait and run-time percentiles."""

        def pct(samples: deque[float]) -> dict[str, float]:
            if not samples:
                return {}
            values = np.fromiter(samples, dtype=np.float64)
            p50, p99 = np.percentile(values, [50, 99])
            return {
                "p50": round(float(p50), 3),
                "p99": round(float(p99), 3),
                "max": round(float(values.max()), 3),
            }

        return {
            "batches": self.batches,
            "items": self.items,
            "rows": self.rows,
            "failed_batches": self.failed_batches,
            "mean_batch_rows": round(self.rows / self.batches, 3) if self.batches else 0.0,
            "batch_rows": {str(k): v for k, v in sorted(self.batch_rows.items())},
            "queue_wait_ms": pct(self.queue_wait_ms),
            "run_ms": pct(self.run_ms),
        }


class _Done(Protocol):
    def done(self) -> bool: ...


@dataclass(eq=False)
class _Pending(Generic[T, F]):
    item: T
    rows: int
    future: F  # an asyncio or a concurrent.futures future: what the caller waits on
    enqueued: float


class _BucketQueue(Generic[T, F]):
    """The queues of one batcher, one per bucket, and the policy that cuts batches from them.

    Not thread-safe and not async: the async and the thread batcher both hold it under their
    own exclusion (the event loop, or a lock) and share this one policy.
    """

    def __init__(self, options: BatchingOptions) -> None:
        self.options = options
        self.buckets: dict[Hashable, deque[_Pending[T, F]]] = {}
        self.bucket_rows: dict[Hashable, int] = {}
        self.skips: dict[Hashable, int] = {}
        self.queued_rows = 0

    def __bool__(self) -> bool:
        return bool(self.buckets)

    def items(self) -> int:
        return sum(len(q) for q in self.buckets.values())

    def refuse_if_full(self, rows: int, name: str) -> None:
        if self.queued_rows + rows > self.options.max_queue:
            raise BatcherOverloaded(
                f"model {name} has {self.queued_rows} rows queued; retry shortly"
            )

    def add(self, key: Hashable, pending: _Pending[T, F]) -> None:
        self.buckets.setdefault(key, deque()).append(pending)
        self.bucket_rows[key] = self.bucket_rows.get(key, 0) + pending.rows
        self.queued_rows += pending.rows

    def ready(self, now: float, max_wait: float) -> tuple[list[Hashable], float]:
        """Buckets whose head waited ``max_wait`` or that fill a batch; the next head deadline."""
        ready: list[Hashable] = []
        next_deadline = float("inf")
        for key, queue in self.buckets.items():
            head_deadline = queue[0].enqueued + max_wait
            if head_deadline <= now or self.bucket_rows[key] >= self.options.max_batch_size:
                ready.append(key)
            next_deadline = min(next_deadline, head_deadline)
        return ready, next_deadline

    def choose(self, ready: list[Hashable]) -> Hashable:
        """Fullest ready bucket first (big batches are what a busy device needs), but a
        bucket passed over ``_MAX_SKIPS`` times goes next, so a rare length never starves."""
        starving = [k for k in ready if self.skips.get(k, 0) >= _MAX_SKIPS]
        if starving:
            chosen = min(starving, key=lambda k: self.buckets[k][0].enqueued)
        else:
            chosen = max(ready, key=lambda k: (self.bucket_rows[k], -self.buckets[k][0].enqueued))
        for key in ready:
            self.skips[key] = 0 if key == chosen else self.skips.get(key, 0) + 1
        return chosen

    def take(self, key: Hashable) -> list[_Pending[T, F]]:
        """Up to ``max_batch_size`` rows from the head of ``key``'s queue (at least one item);
        items whose caller went away (future done) are dropped, not run."""
        queue = self.buckets[key]
        batch: list[_Pending[T, F]] = []
        rows = 0
        while queue and (not batch or rows + queue[0].rows <= self.options.max_batch_size):
            pending = queue.popleft()
            self.queued_rows -= pending.rows
            self.bucket_rows[key] -= pending.rows
            if pending.future.done():  # the caller went away (cancelled): skip its work
                continue
            batch.append(pending)
            rows += pending.rows
        if not queue:
            del self.buckets[key], self.bucket_rows[key]
            self.skips.pop(key, None)
        return batch

    def drain(self) -> list[_Pending[T, F]]:
        """Everything still queued, removed."""
        pending = [p for queue in self.buckets.values() for p in queue]
        self.buckets.clear()
        self.bucket_rows.clear()
        self.skips.clear()
        self.queued_rows = 0
        return pending


def _run_isolating(
    run_batch: Callable[[Sequence[T]], Sequence[R | BaseException]], items: list[T], name: str
) -> tuple[list[R | BaseException], bool]:
    """Run one batch; on a batch-wide failure run its items one by one, so the error reaches
    only the callers it belongs to. Returns the per-item results and whether it failed."""
    try:
        results = list(run_batch(items))
        if len(results) != len(items):
            raise RuntimeError(
                f"batch function returned {len(results)} results for {len(items)} items"
            )
        return results, False
    except Exception as exc:
        if len(items) == 1:
            return [exc], True
        logger.warning(
            "batch of %d failed for %s (%s); running its items one by one",
            len(items),
            name,
            type(exc).__name__,
        )
        return [_run_isolating(run_batch, [item], name)[0][0] for item in items], True


class DynamicBatcher(Generic[T, R]):
    """Queue items per bucket and run them through ``run_batch`` in batches.

    Parameters
    ----------
    run_batch
        Runs a batch in a worker thread: takes the items, returns one result per item, in
        order. A result that is an exception is raised to that item's caller only.
    options
        Batch size, wait and queue limits.
    bucket_of
        Key of an item's bucket (e.g. ``lambda req: length_bucket(req.max_tokens)``); items
        with different keys never share a batch. One bucket for everything by default.
    rows_of
        Rows an item contributes to a batch (e.g. the number of texts in a request); 1 by
        default. An item with more rows than ``max_batch_size`` runs alone.
    executor
        Where ``run_batch`` runs; a private pool of ``max_concurrent_batches`` threads by
        default.
    name
        Used in log lines and thread names (a model id).

    Notes
    -----
    Create and use it from one running event loop; it starts its scheduler on the first
    :meth:`submit`. Call :meth:`aclose` on shutdown.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        options: BatchingOptions | None = None,
        *,
        bucket_of: Callable[[T], Hashable] | None = None,
        rows_of: Callable[[T], int] | None = None,
        executor: Executor | None = None,
        name: str = "batcher",
    ) -> None:
        self.options = options or BatchingOptions()
        self.name = name
        self.stats = BatchStats()
        self._run_batch = run_batch
        self._bucket_of = bucket_of
        self._rows_of = rows_of
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=self.options.max_concurrent_batches, thread_name_prefix=f"batch-{name}"
        )
        self._queue: _BucketQueue[T, asyncio.Future[R]] = _BucketQueue(self.options)
        self._running_rows = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.options.max_concurrent_batches)
        self._scheduler: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch right now."""
        return self._queue.queued_rows

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result.

        Parameters
        ----------
        item
            One request's input.

        Returns
        -------
        R
            What ``run_batch`` returned for this item.

        Raises
        ------
        BatcherOverloaded
            The queue already holds ``max_queue`` rows.
        BatcherClosed
            The batcher is closed.
        Exception
            Whatever ``run_batch`` raised or returned for this item.
        """
        if self._closed:
            raise BatcherClosed(f"model {self.name} is shutting down")
        rows = max(1, int(self._rows_of(item))) if self._rows_of else 1
        self._queue.refuse_if_full(rows, self.name)
        loop = asyncio.get_running_loop()
        if self._scheduler is None:
            self._scheduler = loop.create_task(self._schedule(), name=f"batcher-{self.name}")
        key = self._bucket_of(item) if self._bucket_of else None
        future: asyncio.Future[R] = loop.create_future()
        pending = _Pending(item, rows, future, loop.time())
        self._queue.add(key, pending)
        self._wakeup.set()
        return await pending.future

    async def aclose(self) -> None:
        """Stop scheduling, fail what is still queued, and wait for running batches."""
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        for pending in self._queue.drain():
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed(f"model {self.name} closed"))
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # -- scheduling -------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            # Take a worker slot first: while every worker is busy, items keep piling into
            # their buckets and the next batch comes out fuller.
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Pending[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            now = loop.time()
            ready, next_deadline = self._queue.ready(now, self._wait_s())
            if ready:
                batch = self._queue.take(self._queue.choose(ready))
                self._running_rows += sum(p.rows for p in batch)
                return batch
            timeout = None if next_deadline == float("inf") else max(0.0, next_deadline - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    def _wait_s(self) -> float:
        """How long a not-full bucket waits for company now."""
        wait = self.options.max_wait_ms / 1000.0
        if not self.options.adaptive_wait:
            return wait
        # Alone (one queued item, nothing running): nobody is coming to share its batch soon.
        alone = self._running_rows == 0 and self._queue.items() == 1
        return 0.0 if alone else wait

    async def _execute(self, batch: list[_Pending[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        running = sum(p.rows for p in batch)
        try:
            if not batch:
                return
            started = loop.time()
            items = [p.item for p in batch]
            try:
                results, failed = await loop.run_in_executor(
                    self._executor, _run_isolating, self._run_batch, items, self.name
                )
            except Exception as exc:  # the executor itself failed (e.g. shut down)
                results, failed = [exc] * len(batch), True
            finished = loop.time()
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
            self.stats.record(batch, started, finished, failed, self.name)
        finally:
            self._running_rows -= running
            self._slots.release()
            self._wakeup.set()


class ThreadBatcher(Generic[T, R]):
    """The same batching for callers on threads: no event loop, no hand-off for a lone caller.

    A server that answers sync code on a pool of worker threads (FastAPI's sync routes) gains
    little from :class:`DynamicBatcher`: every request would hop from its worker to a loop
    thread and on to an executor thread and back, which costs more than one small ONNX run
    saves. Here the callers run the batches themselves: a caller queues its item and, while
    fewer than ``max_concurrent_batches`` batches run, cuts one from the queue (the same
    :class:`_BucketQueue` policy: fullest bucket first, none starved) and runs it on its own
    thread, then hands each result to its caller. Whoever finds every slot busy waits; when a
    batch ends, the next waiter cuts the next batch from what queued meanwhile. A lone caller
    so runs its own item at once, with a lock taken and released, and never waits for company
    (``max_wait_ms`` is not used: on a CPU a batch forms from what arrives while the model
    is busy).

    Parameters
    ----------
    run_batch, options, bucket_of, rows_of, name
        As for :class:`DynamicBatcher`.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        options: BatchingOptions | None = None,
        *,
        bucket_of: Callable[[T], Hashable] | None = None,
        rows_of: Callable[[T], int] | None = None,
        name: str = "batcher",
    ) -> None:
        self.options = options or BatchingOptions()
        self.name = name
        self.stats = BatchStats()
        self._run_batch = run_batch
        self._bucket_of = bucket_of
        self._rows_of = rows_of
        self._queue: _BucketQueue[T, Future[R]] = _BucketQueue(self.options)
        self._running = 0
        self._changed = threading.Condition()
        self._closed = False

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch right now."""
        return self._queue.queued_rows

    def submit(self, item: T, timeout: float | None = None) -> R:
        """Queue ``item``, take part in running the batches, and return its result.

        Parameters
        ----------
        item
            One request's input.
        timeout
            Longest wait for the result, in seconds (None: no limit).

        Raises
        ------
        BatcherOverloaded
            The queue already holds ``max_queue`` rows, or the result did not come within
            ``timeout`` (the item is then dropped from the queue, or its answer discarded).
        BatcherClosed
            The batcher is closed.
        Exception
            Whatever ``run_batch`` raised or returned for this item.
        """
        rows = max(1, int(self._rows_of(item))) if self._rows_of else 1
        future: Future[R] = Future()
        give_up = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            if self._closed:
                raise BatcherClosed(f"model {self.name} is shutting down")
            alone = not self._queue and self._running < self.options.max_concurrent_batches
            if alone:  # nobody to wait for or to merge with: run now, skip the bucket key
                self._running += 1
        if alone:
            self._execute([_Pending(item, rows, future, time.monotonic())])
            return future.result()
        key = self._bucket_of(item) if self._bucket_of else None  # outside the lock: tokenizes
        with self._changed:
            if self._closed:
                raise BatcherClosed(f"model {self.name} is shutting down")
            self._queue.refuse_if_full(rows, self.name)
            self._queue.add(key, _Pending(item, rows, future, time.monotonic()))
        while not future.done():
            batch = self._next_batch(future, give_up)
            if batch is None:  # gave up waiting
                if future.cancel():  # still queued: the batch that takes it skips it
                    raise BatcherOverloaded(
                        f"model {self.name} did not answer in {timeout:.1f} s; retry shortly"
                    )
                break  # it was answered meanwhile
            if batch:
                self._execute(batch)
        return future.result()

    def _next_batch(
        self, own: Future[R], give_up: float | None
    ) -> list[_Pending[T, Future[R]]] | None:
        """A batch for this caller to run ([] when its own item got answered meanwhile), or
        None when ``give_up`` passed first."""
        with self._changed:
            while not own.done():
                if self._running < self.options.max_concurrent_batches and self._queue:
                    ready = list(self._queue.buckets)
                    batch = self._queue.take(self._queue.choose(ready))
                    if batch:
                        self._running += 1
                        return batch
                    continue  # only cancelled items were left in that bucket
                left = None if give_up is None else give_up - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)
            return []

    def _execute(self, batch: list[_Pending[T, Future[R]]]) -> None:
        started = time.monotonic()
        try:
            results, failed = _run_isolating(self._run_batch, [p.item for p in batch], self.name)
            finished = time.monotonic()
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.set_running_or_notify_cancel():
                    continue  # its caller gave up
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
        finally:
            # Answers first, then the slot: a caller answered here returns instead of taking
            # the next batch, which goes to one whose item still waits.
            with self._changed:
                self._running -= 1
                self._changed.notify_all()
        self.stats.record(batch, started, finished, failed, self.name)

    def close(self) -> None:
        """Refuse new items and fail what is still queued; running batches finish."""
        with self._changed:
            self._closed = True
            pending = self._queue.drain()
            self._changed.notify_all()
        for item in pending:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(BatcherClosed(f"model {self.name} closed"))
