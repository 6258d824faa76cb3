"""Dynamic batching on the CPU path: concurrent requests for one model run as one ONNX batch.

A long-running server (local mode, a container) takes requests on many threads. With only the
:class:`~aimaas.backends.admission.RunGate`, each of them still runs its own session call, one
after the other: 32 sixteen-sentence embeddings cost 32 runs of the graph. :class:`BatchingGate`
instead queues the request in its model's :class:`aimaas.batching.ThreadBatcher` (the batching
module the GPU server uses too: the same bucket queue and batch policy), where the callers
themselves merge what queued while the previous batch ran into one request
(:mod:`aimaas.inference.merging`), run it once and split the answer back. Requests of the same
parameters and, for text, the same token-length bucket share a batch.

A batch never waits for company: a lone caller runs at once on its own thread, and batches form
only from what arrives while the model is busy, so batching adds no latency at low load. At most
``slots`` batches of one model run at once, and at most ``max_waiting`` full batches' worth of
rows queue; beyond that, or when a caller's wait runs past ``wait_s`` (or its deadline), the
caller gets 503 ``overloaded`` with ``Retry-After``, as with the run gate. Requests that cannot
be merged (a transcription runs CTranslate2 on audio of any length) and models whose answers
would depend on their batch-mates (dynamic int8 quantization, :func:`merges_exactly`) go
through the run gate unchanged.

Under Lambda a process serves one request at a time, so there is nothing to merge: the Lambda
image turns batching off (``AIMAAS_CPU_BATCHING=false``) and keeps the plain gate.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from pydantic import BaseModel

from aimaas import deadline
from aimaas.backends.admission import RunGate
from aimaas.batching import BatcherOverloaded, BatchingOptions, ThreadBatcher
from aimaas.inference.merging import batch_key, batchable, merge_requests, rows, split_result
from aimaas.inference.runners import ModelRunner
from aimaas.manifest import ModelManifest

__all__ = ["CPU_MAX_BATCH_ROWS", "BatchingGate", "merges_exactly"]

#: Most rows (texts, images) one merged CPU batch holds, below a manifest's own (GPU-sized)
#: limit. ONNX Runtime's CPU arena grows to the largest batch it has run and keeps that size:
#: MobileNetV2 took 102 / 189 / 483 MB of RSS after batches of 1 / 8 / 32 images (67.9 images/s
#: at 32 against 44.2 at 8 on a loaded 2-core machine), and a queue that only fills under heavy
#: load made the load test's memory jump late in a run. Eight keeps most of the gain and a
#: bounded footprint.
CPU_MAX_BATCH_ROWS = 8


def merges_exactly(manifest: ModelManifest) -> bool:
    """Whether a request's answer from ``manifest`` is the same in a batch as alone.

    Only for ONNX graphs without dynamic quantization. A dynamically quantized graph (int8
    MiniLM, E5 and the topic classifiers) scales each activation tensor by its range over the
    whole batch, so merging would make one tenant's embedding depend on what other tenants sent
    at the same moment (cosine 0.992 to the same text alone, measured): those models keep the
    run gate, and their answers stay reproducible. Padding to a longer neighbour is masked out
    (fp32 answers agree to 1e-4).
    """
    return manifest.runtime == "onnxruntime" and manifest.quantization.method == "none"


class BatchingGate:
    """Runs mergeable requests through a per-model dynamic batcher, the rest through a gate.

    Parameters
    ----------
    gate
        Admission control for the requests that cannot be merged; its ``slots``, ``max_waiting``
        and ``wait_s`` also bound each model's batcher (batches at once, full batches queued,
        longest wait), so both paths refuse a flood the same way.
    """

    def __init__(self, gate: RunGate) -> None:
        self.gate = gate
        self._batchers: dict[str, ThreadBatcher[BaseModel, BaseModel]] = {}
        self._lock = threading.Lock()

    def run(self, manifest: ModelManifest, runner: ModelRunner, request: Any) -> Any:
        """Answer ``request`` on ``runner``: batched with its peers when it can be merged.

        Raises
        ------
        aimaas.errors.Overloaded
            The model's queue is full, or the answer did not come within the wait.
        aimaas.errors.ApiError
            What the runner raised for this request (another request's bad input never fails
            this one: a failed batch is rerun item by item).
        """
        if not (batchable(request) and merges_exactly(manifest)):
            return self.gate.run(manifest, runner, request)
        batcher = self._batcher(manifest, runner)
        try:
            return batcher.submit(request, timeout=deadline.bounded(self.gate.wait_s))
        except BatcherOverloaded:  # the queue is full, or the answer did not come in time
            raise self.gate.refusal(manifest.model_id) from None

    def admit(self, model_id: str) -> AbstractContextManager[None]:
        """A run slot of ``model_id`` from the gate (streams are never merged)."""
        return self.gate.admit(model_id)

    def _batcher(
        self, manifest: ModelManifest, runner: ModelRunner
    ) -> ThreadBatcher[BaseModel, BaseModel]:
        with self._lock:
            batcher = self._batchers.get(manifest.model_id)
            if batcher is None:
                batcher = self._new_batcher(manifest, runner)
                self._batchers[manifest.model_id] = batcher
            return batcher

    def _new_batcher(
        self, manifest: ModelManifest, runner: ModelRunner
    ) -> ThreadBatcher[BaseModel, BaseModel]:
        size = manifest.batching.max_batch_size
        slots = self.gate.slots if self.gate.slots > 0 else 1
        options = BatchingOptions(
            max_batch_size=min(size, CPU_MAX_BATCH_ROWS),
            max_queue=max(1, self.gate.max_waiting) * size,
            max_concurrent_batches=slots,
        )
        encoder = getattr(runner, "encoder", None)

        def run_batch(requests: Sequence[BaseModel]) -> list[BaseModel]:
            merged = merge_requests(requests)
            return split_result(runner.run(merged), [rows(r) for r in requests])

        return ThreadBatcher(
            run_batch,
            options,
            bucket_of=lambda request: batch_key(request, encoder),
            rows_of=rows,
            name=manifest.model_id,
        )

    def stats(self) -> dict[str, dict[str, object]]:
        """Each batched model's batch statistics (sizes, queue wait, run time)."""
        with self._lock:
            batchers = dict(self._batchers)
        return {model: batcher.stats.snapshot() for model, batcher in batchers.items()}

    def close(self) -> None:
        """Fail what is still queued; running batches finish."""
        with self._lock:
            batchers = list(self._batchers.values())
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()
