"""Loaded models of the GPU server: one task runner and one dynamic batcher per model version.

Concurrent requests for the same model are queued in a :class:`aimaas.batching.DynamicBatcher`;
a batch of requests is merged into one request, run once by the model's runner, and the result
is split back by each request's row count (:mod:`aimaas.inference.merging`, which the CPU
backend of the runtime core batches with too).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from aimaas.batching import BatchingOptions, DynamicBatcher
from aimaas.inference.merging import batch_key, merge_requests, rows, split_result
from aimaas.inference.runners import RUNNERS, ModelRunner, load_runner
from aimaas.manifest import ModelManifest
from aimaas.registry import ModelRegistry

from .engine import ExecutionTarget, LoadedSession, probe_feeds
from .generation import GenerationWorker, load_generation

logger = logging.getLogger(__name__)


@dataclass
class RequestStats:
    """Latency of whole requests (queue + batch + split) for one model."""

    requests: int = 0
    errors: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        if self.latency_ms:
            values = np.fromiter(self.latency_ms, dtype=np.float64)
            p50, p99 = np.percentile(values, [50, 99])
            out["latency_ms"] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
        return out


class ModelWorker:
    """One loaded model version: its runner and its batcher.

    Parameters
    ----------
    manifest
        The model version.
    runner
        The task runner around the model's session.
    loaded
        How the session was built (providers, precision, IO binding).
    options
        Batching limits.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        runner: ModelRunner,
        loaded: LoadedSession,
        options: BatchingOptions,
    ) -> None:
        self.manifest = manifest
        self.runner = runner
        self.loaded = loaded
        self.options = options
        self.stats = RequestStats()
        # Text batches are padded to their longest member: bucket by token length.
        self._encoder = getattr(runner, "encoder", None)
        self.batcher: DynamicBatcher[BaseModel, BaseModel] = DynamicBatcher(
            self._run_batch, options, bucket_of=self.bucket, rows_of=rows, name=manifest.model_id
        )

    def _run_batch(self, requests: Sequence[BaseModel]) -> list[BaseModel]:
        merged = merge_requests(requests)
        return split_result(self.runner.run(merged), [rows(r) for r in requests])

    def bucket(self, request: BaseModel) -> Hashable:
        """The batcher bucket of ``request``: its parameters and, for text, a length bucket."""
        return batch_key(request, self._encoder)

    async def infer(self, request: BaseModel) -> BaseModel:
        """Run ``request`` through the batcher and return its own result.

        Raises
        ------
        aimaas.errors.ApiError
            Invalid input (422), overload or shutdown (503).
        """
        started = time.perf_counter()
        try:
            result = await self.batcher.submit(request)
        except Exception:
            self.stats.errors += 1
            raise
        self.stats.requests += 1
        self.stats.latency_ms.append((time.perf_counter() - started) * 1000.0)
        return result

    async def aclose(self) -> None:
        """Close the batcher (queued requests fail with 503)."""
        await self.batcher.aclose()

    def describe(self) -> dict[str, Any]:
        """Where and how the model runs, plus its request and batching statistics."""
        return {
            "model": self.manifest.model_id,
            "providers": self.loaded.providers,
            "precision": self.loaded.precision,
            "io_binding": self.loaded.io_binding,
            "notes": self.loaded.notes,
            "batching": {
                "max_batch_size": self.options.max_batch_size,
                "max_wait_ms": self.options.max_wait_ms,
            },
            **self.stats.snapshot(),
            "batches": self.batcher.stats.snapshot(),
        }


def warm_up(manifest: ModelManifest, folder: Path, loaded: LoadedSession) -> None:
    """Run the graph once so CUDA kernels, cuDNN plans and arenas exist before traffic.

    Best effort: a graph whose inputs the generic probe cannot fill (silero-vad's sample
    rate) just skips it.
    """
    try:
        loaded.session.run(None, probe_feeds(manifest, folder))
    except Exception as exc:
        loaded.notes.append(f"warm-up skipped: {type(exc).__name__}")


class ModelPool:
    """The models this server has loaded, each loaded once on first use.

    Parameters
    ----------
    registry
        Resolves and verifies model versions.
    target
        Builds sessions on this server's device.
    batching
        Maps a manifest and the target's preferred concurrency to the model's batching limits.
    max_generations
        Generations of one language model in flight at once (None: 32 on CUDA, 4 on the CPU,
        whose cores one generation already keeps busy).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        target: ExecutionTarget,
        batching: Callable[[ModelManifest, int], BatchingOptions],
        max_generations: int | None = None,
    ) -> None:
        self.registry = registry
        self.target = target
        self._batching = batching
        self.max_generations = max_generations or (4 if target.name == "cpu" else 32)
        self._workers: dict[str, ModelWorker | GenerationWorker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._load_lock = threading.Lock()

    def resolve(self, name: str, version: str | None) -> ModelManifest:
        """The manifest of ``name`` at ``version`` (newest when None); 404 when unknown."""
        return self.registry.resolve(name, version)

    async def worker(self, manifest: ModelManifest) -> ModelWorker | GenerationWorker:
        """The worker of ``manifest``, loading the model (in a thread) on first use."""
        key = manifest.model_id
        found = self._workers.get(key)
        if found is not None:
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._workers.get(key)
            if found is None:
                found = await asyncio.to_thread(self._load, manifest)
                self._workers[key] = found
        return found

    def _load(self, manifest: ModelManifest) -> ModelWorker | GenerationWorker:
        # One load at a time: two models converting to fp16 at once would double peak memory.
        with self._load_lock:
            started = time.perf_counter()
            folder = self.registry.verified_dir(manifest)
            worker: ModelWorker | GenerationWorker
            if manifest.task == "text-generation":
                # Not batched: each generation has its own generator (see .generation).
                runner, loaded = load_generation(manifest, folder, self.target)
                worker = GenerationWorker(manifest, runner, loaded, self.max_generations)
                self._log_load(manifest, loaded, started)
                return worker
            if manifest.runtime == "onnxruntime":
                loaded = self.target.load(manifest, folder)
                runner = RUNNERS[manifest.task](manifest, folder, loaded.session)
                warm_up(manifest, folder, loaded)
            else:
                runner, loaded = self._load_engine(manifest, folder)
            worker = ModelWorker(
                manifest, runner, loaded, self._batching(manifest, self.target.concurrency)
            )
            self._log_load(manifest, loaded, started)
            return worker

    def _log_load(self, manifest: ModelManifest, loaded: LoadedSession, started: float) -> None:
        logger.info(
            "model loaded %s",
            json.dumps(
                {
                    "model": manifest.model_id,
                    "target": self.target.name,
                    "providers": loaded.providers,
                    "precision": loaded.precision,
                    "io_binding": loaded.io_binding,
                    "notes": loaded.notes,
                    "load_s": round(time.perf_counter() - started, 3),
                }
            ),
        )

    def _load_engine(
        self, manifest: ModelManifest, folder: Path
    ) -> tuple[ModelRunner, LoadedSession]:
        """A model of another engine (Whisper on CTranslate2): its own loader picks CUDA when
        the target offers it (batched, float16) and falls back to CPU."""
        providers = [p if isinstance(p, str) else p[0] for p in self.target.providers(manifest)]
        runner = load_runner(manifest, folder, providers=providers)
        device = getattr(runner, "device", "cpu")
        loaded = LoadedSession(
            session=runner.session,
            providers=[f"ctranslate2:{device}"],
            precision=str(getattr(runner, "compute_type", "default")),
            notes=[f"{manifest.runtime} runtime"],
        )
        return runner, loaded

    def loaded(self) -> Mapping[str, ModelWorker | GenerationWorker]:
        """Workers by model id."""
        return dict(self._workers)

    async def aclose(self) -> None:
        """Close every batcher (queued requests fail with 503)."""
        await asyncio.gather(*(w.aclose() for w in self._workers.values()))
