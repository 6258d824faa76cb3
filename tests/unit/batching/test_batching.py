"""Unit tests of the dynamic batcher: real asyncio, real threads, a toy batch function."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from aimaas.batching import (
    BatcherClosed,
    BatcherOverloaded,
    BatchingOptions,
    DynamicBatcher,
    length_bucket,
)

R = TypeVar("R")


class Recorder:
    """A batch function that doubles numbers and remembers every batch it saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    def __call__(self, items: Sequence[int]) -> list[int]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(list(items))
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [i * 2 for i in items]


def run(coro: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coro)


def test_length_bucket_edges() -> None:
    assert length_bucket(0) == 8
    assert length_bucket(8) == 8
    assert length_bucket(9) == 16
    assert length_bucket(200) == 256
    assert length_bucket(600) == 600  # beyond the last edge: a bucket of its own
    assert length_bucket(5, edges=(4, 10)) == 10
    with pytest.raises(ValueError):
        length_bucket(-1)


def test_full_batches_are_cut_at_max_size_and_answers_split_back() -> None:
    recorder = Recorder()

    async def main() -> list[int]:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=4, max_wait_ms=50))
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        finally:
            await batcher.aclose()

    results = run(main())
    assert results == [i * 2 for i in range(10)]
    assert [len(b) for b in recorder.batches] == [4, 4, 2]
    assert sorted(i for b in recorder.batches for i in b) == list(range(10))


def test_a_lonely_item_waits_max_wait_then_runs() -> None:
    recorder = Recorder()

    async def main() -> float:
        options = BatchingOptions(max_batch_size=8, max_wait_ms=80, adaptive_wait=False)
        batcher = DynamicBatcher(recorder, options)
        try:
            started = time.perf_counter()
            assert await batcher.submit(21) == 42
            return time.perf_counter() - started
        finally:
            await batcher.aclose()

    elapsed = run(main())
    assert 0.075 <= elapsed < 3.0  # generous: CI machines are shared
    assert recorder.batches == [[21]]


def test_adaptive_wait_spares_a_lone_caller_but_still_batches_a_burst() -> None:
    recorder = Recorder()

    async def main() -> float:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=8, max_wait_ms=300))
        try:
            started = time.perf_counter()
            for i in range(5):  # one caller, each asking after its previous answer
                assert await batcher.submit(i) == 2 * i
            lone = time.perf_counter() - started
            await asyncio.gather(*(batcher.submit(i) for i in range(10, 13)))
            return lone
        finally:
            await batcher.aclose()

    lone = run(main())
    assert lone < 1.0  # five waits of 300 ms would take 1.5 s
    assert recorder.batches[:5] == [[0], [1], [2], [3], [4]]
    assert recorder.batches[5:] == [[10, 11, 12]]  # arriving together, they waited for each other


def test_a_full_batch_does_not_wait() -> None:
    recorder = Recorder()

    async def main() -> float:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=3, max_wait_ms=5000))
        try:
            started = time.perf_counter()
            await asyncio.gather(*(batcher.submit(i) for i in range(3)))
            return time.perf_counter() - started
        finally:
            await batcher.aclose()

    assert run(main()) < 2.0  # far below the 5 s max wait
    assert recorder.batches == [[0, 1, 2]]


def test_items_pile_up_while_the_worker_is_busy() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main() -> None:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=16, max_wait_ms=0))
        try:
            first = asyncio.ensure_future(batcher.submit(0))
            await asyncio.sleep(0.05)  # batch [0] is now running and blocked on the gate
            rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
            await asyncio.sleep(0.05)
            gate.set()
            assert await first == 0
            assert await asyncio.gather(*rest) == [2, 4, 6, 8, 10]
        finally:
            await batcher.aclose()

    run(main())
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]


def test_batch_size_one_turns_batching_off() -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=1, max_wait_ms=0))
        try:
            await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        finally:
            await batcher.aclose()

    run(main())
    assert [len(b) for b in recorder.batches] == [1] * 5


def test_an_error_reaches_only_its_own_caller() -> None:
    recorder = Recorder()

    async def main() -> list[object]:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=8, max_wait_ms=20))
        try:
            return await asyncio.gather(
                *(batcher.submit(i) for i in (1, -1, 3, 4)), return_exceptions=True
            )
        finally:
            await batcher.aclose()

    results = run(main())
    assert results[0] == 2 and results[2] == 6 and results[3] == 8
    assert isinstance(results[1], ValueError)
    # The whole batch failed first, then each item was retried alone to isolate the culprit.
    assert recorder.batches[0] == [1, -1, 3, 4]
    assert sorted(recorder.batches[1:]) == [[-1], [1], [3], [4]]


def test_exceptions_returned_per_slot_are_raised_to_that_caller() -> None:
    def per_item(items: Sequence[int]) -> list[int | Exception]:
        return [KeyError(i) if i == 2 else i for i in items]

    async def main() -> list[object]:
        batcher = DynamicBatcher(per_item, BatchingOptions(max_batch_size=4, max_wait_ms=20))
        try:
            return await asyncio.gather(
                *(batcher.submit(i) for i in range(4)), return_exceptions=True
            )
        finally:
            await batcher.aclose()

    results = run(main())
    assert results[0] == 0 and results[1] == 1 and results[3] == 3
    assert isinstance(results[2], KeyError)


def test_a_wrong_number_of_results_fails_every_caller() -> None:
    def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    async def main() -> list[object]:
        batcher = DynamicBatcher(short, BatchingOptions(max_batch_size=4, max_wait_ms=20))
        try:
            return await asyncio.gather(
                *(batcher.submit(i) for i in range(3)), return_exceptions=True
            )
        finally:
            await batcher.aclose()

    assert all(isinstance(r, RuntimeError) for r in run(main()))


def test_buckets_never_mix() -> None:
    seen: list[list[str]] = []

    def lengths(items: Sequence[str]) -> list[int]:
        seen.append(list(items))
        return [len(s) for s in items]

    texts = ["a" * n for n in (3, 100, 5, 120, 7, 2, 90, 8)]

    async def main() -> list[int]:
        batcher = DynamicBatcher(
            lengths,
            BatchingOptions(max_batch_size=16, max_wait_ms=30),
            bucket_of=lambda s: length_bucket(len(s)),
        )
        try:
            return await asyncio.gather(*(batcher.submit(t) for t in texts))
        finally:
            await batcher.aclose()

    assert run(main()) == [len(t) for t in texts]
    assert sorted(sorted(len(t) for t in b) for b in seen) == [[2, 3, 5, 7, 8], [90, 100, 120]]


def test_multi_row_items_respect_the_row_limit() -> None:
    seen: list[list[list[int]]] = []

    def sums(items: Sequence[list[int]]) -> list[int]:
        seen.append([list(i) for i in items])
        return [sum(i) for i in items]

    items = [[1, 1, 1], [2, 2], [3, 3, 3], [4] * 10, [5]]

    async def main() -> list[int]:
        batcher = DynamicBatcher(
            sums, BatchingOptions(max_batch_size=6, max_wait_ms=30), rows_of=len
        )
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in items))
        finally:
            await batcher.aclose()

    assert run(main()) == [3, 4, 9, 40, 5]
    for batch in seen:
        rows = sum(len(i) for i in batch)
        assert rows <= 6 or len(batch) == 1  # an oversized item runs alone
    assert [[4] * 10] in seen


def test_a_full_queue_refuses_with_overloaded() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main() -> None:
        batcher = DynamicBatcher(
            recorder, BatchingOptions(max_batch_size=1, max_wait_ms=0, max_queue=2)
        )
        try:
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)  # taken off the queue, blocked in the worker
            queued = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
            await asyncio.sleep(0.01)
            with pytest.raises(BatcherOverloaded) as info:
                await batcher.submit(4)
            assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
            gate.set()
            assert await running == 2
            assert await asyncio.gather(*queued) == [4, 6]
        finally:
            gate.set()
            await batcher.aclose()

    run(main())


def test_close_fails_what_is_still_queued() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main() -> None:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=1, max_wait_ms=0))
        running = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(batcher.aclose())
        await asyncio.sleep(0.01)
        gate.set()
        await closing
        assert await running == 2  # a running batch finishes
        with pytest.raises(BatcherClosed):
            await queued
        with pytest.raises(BatcherClosed):
            await batcher.submit(3)

    run(main())


def test_a_cancelled_caller_is_skipped() -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=8, max_wait_ms=50))
        try:
            gone = asyncio.ensure_future(batcher.submit(7))
            kept = asyncio.ensure_future(batcher.submit(8))
            await asyncio.sleep(0.01)
            gone.cancel()
            assert await kept == 16
        finally:
            await batcher.aclose()

    run(main())
    assert recorder.batches == [[8]]


def test_stats_snapshot_counts_batches() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingOptions(max_batch_size=4, max_wait_ms=10))

    async def main() -> None:
        try:
            await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        finally:
            await batcher.aclose()

    run(main())
    snap = batcher.stats.snapshot()
    assert snap["batches"] == 2 and snap["items"] == 6 and snap["rows"] == 6
    assert snap["batch_rows"] == {"2": 1, "4": 1}
    assert snap["mean_batch_rows"] == 3.0
    assert set(snap["queue_wait_ms"]) == {"p50", "p99", "max"}


def test_options_from_env_override_the_policy() -> None:
    env = {"AIMAAS_BATCH_MAX_SIZE": "1", "AIMAAS_BATCH_MAX_WAIT_MS": "2.5"}
    options = BatchingOptions.from_env(env, max_batch_size=32, max_wait_ms=5)
    assert options.max_batch_size == 1 and options.max_wait_ms == 2.5
    assert BatchingOptions.from_env({}, max_batch_size=16).max_batch_size == 16
    with pytest.raises(ValueError):
        BatchingOptions(max_batch_size=0)


def test_fullest_bucket_runs_first_but_a_passed_over_bucket_does_not_starve() -> None:
    gate = threading.Event()
    seen: list[list[str]] = []

    def record(items: Sequence[str]) -> list[str]:
        gate.wait(5)
        seen.append(list(items))
        return list(items)

    async def main() -> None:
        batcher = DynamicBatcher(
            record, BatchingOptions(max_batch_size=16, max_wait_ms=0), bucket_of=lambda s: s[0]
        )
        try:
            blocker = asyncio.ensure_future(batcher.submit("z"))
            await asyncio.sleep(0.05)  # the worker is now busy with "z"
            items = ["a"] + ["b"] * 5 + ["c"] * 4 + ["d"] * 3 + ["e"] * 2
            waiting = [asyncio.ensure_future(batcher.submit(i)) for i in items]
            await asyncio.sleep(0.02)
            gate.set()
            await blocker
            assert await asyncio.gather(*waiting) == items
        finally:
            gate.set()
            await batcher.aclose()

    run(main())
    # b, c, d are fullest; "a" (oldest) was passed over three times, so it goes before "e".
    assert [b[0] for b in seen] == ["z", "b", "c", "d", "a", "e"]
    assert [len(b) for b in seen] == [1, 5, 4, 3, 1, 2]
