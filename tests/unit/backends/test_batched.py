"""Dynamic batching on the CPU path: concurrent requests merge, answers go back to their own
callers, one bad input fails only its request, and the run gate's bounds still hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from aimaas import errors
from aimaas.backends.admission import RunGate
from aimaas.backends.batched import CPU_MAX_BATCH_ROWS, BatchingGate
from aimaas.errors import Overloaded
from aimaas.inference.wire import EmbeddingsRequest, EmbeddingsResult, TranscriptionRequest
from aimaas.manifest import ModelManifest
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.concurrency import at_once
from aimaas_testing.paths import REGISTRY


@pytest.fixture(scope="module")
def manifest() -> ModelManifest:
    return ModelRegistry(FolderStore(REGISTRY)).resolve("all-minilm-l6-v2")


class SlowEncoder:
    """Stands in for a runner: each run takes ``run_s`` and answers ``[len(text)]`` per text.

    It records the texts of every run, so a test sees which requests shared a batch; a text
    ``"bad"`` makes the whole run fail, as a model refusing one input does.
    """

    def __init__(self, run_s: float = 0.05) -> None:
        self.run_s = run_s
        self.runs: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def run(self, request: Any) -> EmbeddingsResult:
        assert self.release.wait(10)
        with self._lock:
            self.runs.append(list(request.texts))
        time.sleep(self.run_s)
        if "bad" in request.texts:
            raise errors.InvalidInput("bad text")
        return EmbeddingsResult(
            embeddings=[[float(len(t))] for t in request.texts],
            token_counts=[len(t) for t in request.texts],
        )


@pytest.fixture
def gate() -> Iterator[BatchingGate]:
    batching = BatchingGate(RunGate(1, max_waiting=64, wait_s=5))
    try:
        yield batching
    finally:
        batching.close()


def test_concurrent_requests_share_runs_and_get_their_own_answers(
    gate: BatchingGate, manifest: ModelManifest
) -> None:
    runner = SlowEncoder()
    texts = [["x" * (i + 1), "y" * (i + 1)] for i in range(16)]  # one length bucket (<= 32)
    results = at_once(16, lambda i: gate.run(manifest, runner, EmbeddingsRequest(texts=texts[i])))
    for i, result in enumerate(results):
        assert result.embeddings == [[float(i + 1)], [float(i + 1)]]  # its own rows, in order
        assert result.token_counts == [i + 1, i + 1]
    assert sum(len(run) for run in runner.runs) == 32  # every text ran exactly once
    assert len(runner.runs) < 16  # while one run went on, the others queued and merged
    assert max(len(run) for run in runner.runs) > 2
    assert all(len(run) <= CPU_MAX_BATCH_ROWS for run in runner.runs)


def test_a_lone_request_runs_alone(gate: BatchingGate, manifest: ModelManifest) -> None:
    runner = SlowEncoder(run_s=0)
    result = gate.run(manifest, runner, EmbeddingsRequest(texts=["hello"]))
    assert result.embeddings == [[5.0]] and runner.runs == [["hello"]]


def test_one_bad_input_fails_only_its_own_request(
    gate: BatchingGate, manifest: ModelManifest
) -> None:
    runner = SlowEncoder()
    runner.release.clear()  # hold the first run until everyone has queued behind it
    texts = ["a", "bb", "bad", "dddd", "eeeee", "ffffff"]
    threading.Timer(0.3, runner.release.set).start()
    results = at_once(
        len(texts), lambda i: gate.run(manifest, runner, EmbeddingsRequest(texts=[texts[i]]))
    )
    assert isinstance(results[2], errors.InvalidInput)
    for i, result in enumerate(results):
        if i != 2:
            assert result.embeddings == [[float(len(texts[i]))]]
    assert any(len(run) > 1 for run in runner.runs)  # "bad" did share a batch, and was rerun


def test_requests_of_other_parameters_or_lengths_never_share_a_batch(
    manifest: ModelManifest,
) -> None:
    class CharacterCounter:
        """The bucket reads the runner's ``encoder.count_tokens``: here one token a character."""

        @staticmethod
        def count_tokens(texts: Sequence[str]) -> list[int]:
            return [len(text) for text in texts]

    runner = SlowEncoder()
    runner.encoder = CharacterCounter()  # type: ignore[attr-defined]
    runner.release.clear()
    batching = BatchingGate(RunGate(1, wait_s=5))
    texts = ["s" * 5, "t" * 6, "l" * 200, "m" * 210]  # buckets 8, 8, 256, 256
    threading.Timer(0.3, runner.release.set).start()
    try:
        at_once(
            len(texts),
            lambda i: batching.run(manifest, runner, EmbeddingsRequest(texts=[texts[i]])),
        )
    finally:
        batching.close()
    for run in runner.runs:
        assert len({len(t) > 32 for t in run}) == 1, runner.runs  # short and long kept apart


def test_a_full_queue_is_refused_at_once(manifest: ModelManifest) -> None:
    batching = BatchingGate(RunGate(1, max_waiting=1, wait_s=5, retry_after_s=2))
    runner = SlowEncoder(run_s=0)
    runner.release.clear()
    size = manifest.batching.max_batch_size
    full = EmbeddingsRequest(texts=["z"] * size)  # one full batch of rows each
    threading.Timer(0.5, runner.release.set).start()
    try:
        results = at_once(4, lambda _: batching.run(manifest, runner, full))
    finally:
        batching.close()
    refused = [r for r in results if isinstance(r, Overloaded)]
    served = [r for r in results if isinstance(r, EmbeddingsResult)]
    assert len(served) + len(refused) == 4 and refused and served
    assert refused[0].headers["Retry-After"] == "2"


def test_a_wait_past_its_bound_is_refused_and_the_model_serves_again(
    manifest: ModelManifest,
) -> None:
    batching = BatchingGate(RunGate(1, wait_s=0.2))
    runner = SlowEncoder(run_s=0)
    runner.release.clear()
    holder = threading.Thread(  # holds the model's only slot until released
        target=batching.run, args=(manifest, runner, EmbeddingsRequest(texts=["first"]))
    )
    holder.start()
    time.sleep(0.1)
    try:
        started = time.monotonic()
        with pytest.raises(Overloaded):
            batching.run(manifest, runner, EmbeddingsRequest(texts=["late"]))
        assert time.monotonic() - started < 3
        runner.release.set()
        holder.join(5)
        assert batching.run(manifest, runner, EmbeddingsRequest(texts=["on time"])).embeddings
    finally:
        runner.release.set()
        batching.close()
    assert ["late"] not in runner.runs  # the caller that gave up had its item dropped


def test_requests_that_cannot_merge_go_through_the_run_gate(manifest: ModelManifest) -> None:
    whisper = manifest.model_copy(update={"runtime": "ctranslate2"})

    class Transcriber:
        def __init__(self) -> None:
            self.gate_running: list[int] = []

        def run(self, request: Any) -> str:
            self.gate_running.append(gate.running(whisper.model_id))
            return "text"

    gate = RunGate(1, wait_s=5)
    batching = BatchingGate(gate)
    runner = Transcriber()
    try:
        assert batching.run(whisper, runner, TranscriptionRequest(audio=[b"RIFF"])) == "text"
    finally:
        batching.close()
    assert runner.gate_running == [1]  # it ran holding the gate's slot, not in a batcher
    assert batching.stats() == {}


def test_a_lone_request_runs_on_its_callers_thread(manifest: ModelManifest) -> None:
    """No hand-off to another thread: batching costs a lone caller a lock, nothing more."""

    class Where(SlowEncoder):
        def run(self, request: Any) -> EmbeddingsResult:
            self.thread = threading.current_thread()
            return super().run(request)

    batching = BatchingGate(RunGate(1))
    runner = Where(run_s=0)
    try:
        batching.run(manifest, runner, EmbeddingsRequest(texts=["x"]))
    finally:
        batching.close()
    assert runner.thread is threading.current_thread()


def test_close_fails_what_is_queued_and_refuses_new_requests(manifest: ModelManifest) -> None:
    batching = BatchingGate(RunGate(1, wait_s=10))
    runner = SlowEncoder(run_s=0)
    runner.release.clear()
    running = threading.Thread(
        target=batching.run, args=(manifest, runner, EmbeddingsRequest(texts=["first"]))
    )
    running.start()
    time.sleep(0.1)
    queued: list[BaseException] = []

    def second() -> None:
        try:
            batching.run(manifest, runner, EmbeddingsRequest(texts=["second"]))
        except errors.ApiError as exc:
            queued.append(exc)

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.1)
    batching.close()
    runner.release.set()
    running.join(5)
    waiter.join(5)
    assert [exc.status for exc in queued] == [503]  # failed clearly, not left waiting
    assert runner.runs == [["first"]]
