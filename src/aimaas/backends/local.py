"""In-process backend: ONNX Runtime on the Lambda's (or local server's) CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from aimaas.backends.base import InferenceBackend
from aimaas.inference import wire
from aimaas.inference.runners import ModelRunner, RunnerCache, load_runner
from aimaas.manifest import ModelManifest
from aimaas.registry import ModelRegistry


class RunPolicy(Protocol):
    """How runs of loaded models are admitted: :class:`~aimaas.backends.admission.RunGate`
    (bounded concurrency per model) or :class:`~aimaas.backends.batched.BatchingGate` (the
    same bounds, with concurrent requests merged into batches)."""

    def run(self, manifest: ModelManifest, runner: ModelRunner, request: Any) -> Any: ...

    def admit(self, model_id: str) -> AbstractContextManager[None]:
        """Hold one run slot of ``model_id`` while the block runs (503 when none comes free)."""
        ...

    def close(self) -> None: ...


class LocalOnnxBackend(InferenceBackend):
    """Loads each model on first use (files verified by the registry) and keeps it.

    Parameters
    ----------
    registry
        Resolves verified local files of a manifest.
    threads
        ONNX Runtime intra-op threads per session (0: runtime default).
    providers
        Execution providers (default CPU); the GPU server passes CUDA here.
    gate
        Admission control of the runs (a :class:`RunPolicy`; None: every caller runs at once,
        as the GPU server's own batcher wants).
    """

    name = "local"

    def __init__(
        self,
        registry: ModelRegistry,
        threads: int = 0,
        providers: list[str] | None = None,
        gate: RunPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.threads = threads
        self.providers = providers
        self.gate = gate
        self.runners = RunnerCache(self._load)

    def _load(self, manifest: ModelManifest) -> ModelRunner:
        folder = self.registry.verified_dir(manifest)
        return load_runner(manifest, folder, threads=self.threads, providers=self.providers)

    def runner(self, manifest: ModelManifest) -> ModelRunner:
        """The loaded runner of ``manifest`` (loading it on first use)."""
        return self.runners.get(manifest)

    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        runner = self.runner(manifest)
        if self.gate is None:
            return runner.run(request)
        return self.gate.run(manifest, runner, request)

    def stream(
        self, manifest: ModelManifest, request: wire.GenerationRequest
    ) -> Iterator[wire.GenerationChunk]:
        """The runner's own stream, holding one run slot of the model from the first piece
        until the stream ends or is closed (a stream the client abandons frees it at once)."""
        runner = self.runner(manifest)
        stream = getattr(runner, "stream", None)
        if stream is None:  # not a language model: the port's one-piece answer
            yield from super().stream(manifest, request)
            return
        if self.gate is None:
            yield from stream(request)
            return
        with self.gate.admit(manifest.model_id):
            yield from stream(request)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()
