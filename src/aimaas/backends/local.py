"""In-process backend: ONNX Runtime on the Lambda's (or local server's) CPU."""

from __future__ import annotations

from typing import Any, Protocol

from aimaas.backends.base import InferenceBackend
from aimaas.inference.runners import ModelRunner, RunnerCache, load_runner
from aimaas.manifest import ModelManifest
from aimaas.registry import ModelRegistry


class RunPolicy(Protocol):
    """How runs of loaded models are admitted: :class:`~aimaas.backends.admission.RunGate`
    (bounded concurrency per model) or :class:`~aimaas.backends.batched.BatchingGate` (the
    same bounds, with concurrent requests merged into batches)."""

    def run(self, manifest: ModelManifest, runner: ModelRunner, request: Any) -> Any: ...

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

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()
