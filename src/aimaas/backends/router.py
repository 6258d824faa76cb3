"""Which backend runs a model: the stage's ``gpu_models`` go to the GPU backend, the rest local."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from aimaas import errors
from aimaas.backends.base import InferenceBackend
from aimaas.inference import wire
from aimaas.manifest import ModelManifest


class UnconfiguredGpuBackend(InferenceBackend):
    """Stands in when a stage sends models to a GPU but names no GPU backend."""

    name = "none"

    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        raise errors.BackendUnavailable(
            "GPU backend not configured for this stage.", code="gpu_backend_not_configured"
        )


class BackendRouter:
    """Chooses the backend of each model.

    A model listed in the stage's ``gpu_models`` runs on ``gpu`` whatever its manifest's
    ``target`` says; a model whose manifest targets ``gpu`` does too; everything else runs on
    ``cpu``.
    """

    def __init__(
        self, cpu: InferenceBackend, gpu: InferenceBackend, gpu_models: Iterable[str] = ()
    ) -> None:
        self.cpu = cpu
        self.gpu = gpu
        self.gpu_models = frozenset(gpu_models)

    def backend_for(self, manifest: ModelManifest) -> InferenceBackend:
        """The backend that serves ``manifest``."""
        if manifest.name in self.gpu_models or manifest.target == "gpu":
            return self.gpu
        return self.cpu

    def invoke(self, manifest: ModelManifest, request: Any) -> Any:
        """Run ``request`` on the backend chosen for ``manifest``."""
        return self.backend_for(manifest).invoke(manifest, request)

    def stream(
        self, manifest: ModelManifest, request: wire.GenerationRequest
    ) -> Iterator[wire.GenerationChunk]:
        """Stream ``request`` from the backend chosen for ``manifest``."""
        return self.backend_for(manifest).stream(manifest, request)

    def close(self) -> None:
        self.cpu.close()
        self.gpu.close()
