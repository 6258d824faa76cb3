"""The dependency container: every adapter the app uses, wired once from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aimaas.backends import BackendRouter, LocalOnnxBackend, build_gpu_backend
from aimaas.config import Settings
from aimaas.registry import ModelRegistry, build_store


@dataclass
class Container:
    """What a request needs, on ``app.state.container``.

    Attributes
    ----------
    settings
        The resolved runtime settings.
    registry
        Model manifests and verified files.
    backends
        Chooses where each model runs (in process or the GPU backend).
    authenticator
        ``aimaas.auth.Authenticator``: API key -> Principal (read by ``require_principal``).
    meter
        ``aimaas.metering.Meter``: durable, idempotent usage records.
    ledger
        The usage ledger behind ``meter`` (``GET /v1/usage`` reads it).
    """

    settings: Settings
    registry: ModelRegistry
    backends: BackendRouter
    authenticator: Any
    meter: Any
    ledger: Any = None

    def close(self) -> None:
        """Release connections of the backends and the ledger."""
        self.backends.close()
        if self.ledger is not None and hasattr(self.ledger, "close"):
            self.ledger.close()


def build_container(settings: Settings) -> Container:
    """Wire the adapters named by ``settings``.

    Each port picks its adapter through its own name -> factory mapping
    (``aimaas.registry.STORES``, ``aimaas.backends.GPU_BACKENDS``, the ledger's and the
    authenticator's), so nothing here branches on "local or cloud".

    Raises
    ------
    ValueError
        An unknown adapter name or a missing setting.
    """
    from aimaas.auth import build_authenticator
    from aimaas.metering import Meter, build_ledger

    stage = settings.stage_config
    registry = ModelRegistry(build_store(settings), stage.default_models)
    cpu = LocalOnnxBackend(registry, threads=settings.onnx_threads)
    backends = BackendRouter(cpu, build_gpu_backend(settings), stage.gpu_models)
    ledger = build_ledger(settings)
    return Container(
        settings=settings,
        registry=registry,
        backends=backends,
        authenticator=build_authenticator(settings, ledger),
        meter=Meter(ledger),
        ledger=ledger,
    )
