"""Settings of the GPU server, read once from the environment at start-up.

The model store, registry path and ONNX thread count come from the platform's own
:class:`aimaas.config.Settings` (``AIMAAS_MODEL_STORE``, ``AIMAAS_REGISTRY``, ...); the
variables below are the server's own. SageMaker's contract fixes the port (8080) and the model
folder (``/opt/ml/model``); the Dockerfile sets ``AIMAAS_REGISTRY`` to it.

=============================  =====================================================
``AIMAAS_GPU_HOST``            bind address (``0.0.0.0``; tests use ``127.0.0.1``)
``AIMAAS_GPU_PORT``            port (``SAGEMAKER_BIND_TO_PORT``, else 8080)
``AIMAAS_GPU_TARGET``          ``auto`` | ``cuda`` | ``tensorrt`` | ``cpu``
``AIMAAS_GPU_DEVICE_ID``       CUDA device ordinal (0)
``AIMAAS_GPU_FP16``            ``auto`` (manifest allows + parity holds) | ``off`` | ``force``
``AIMAAS_GPU_IO_BINDING``      ``1`` | ``0``
``AIMAAS_GPU_REQUIRE``         ``1``: fail (no healthy /ping) rather than serve from the CPU
``AIMAAS_GPU_PRELOAD``         models loaded before /ping answers: ``all`` or ``a,b``
                               (default: ``AIMAAS_GPU_MODELS``, the stage's GPU models)
``AIMAAS_GPU_METRICS_S``       seconds between metrics log lines (0: never)
``AIMAAS_BATCH_MAX_SIZE``      overrides every manifest's ``batching.max_batch_size``
``AIMAAS_BATCH_MAX_WAIT_MS``   overrides every manifest's ``batching.max_wait_ms``
``AIMAAS_BATCH_CONCURRENCY``   batches of one model in flight (CUDA 2, CPU 1)
``AIMAAS_BATCH_MAX_QUEUE``     rows queued per model before 503 ``overloaded`` (4096)
``AIMAAS_GPU_MAX_GENERATIONS`` generations of one language model at once (CUDA 32, CPU 4)
=============================  =====================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aimaas.batching import BatchingOptions
from aimaas.config import Settings
from aimaas.manifest import ModelManifest

from .engine import EngineOptions


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ServerSettings:
    """Everything the GPU server reads from its environment."""

    core: Settings = field(default_factory=Settings)
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on every interface
    port: int = 8080
    target: str = "auto"
    engine: EngineOptions = field(default_factory=EngineOptions)
    preload: tuple[str, ...] = ()
    metrics_interval_s: float = 60.0
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Build settings from ``environ`` (``os.environ`` by default)."""
        env = dict(os.environ if environ is None else environ)
        core = Settings.from_env(env)

        def get(name: str, default: str) -> str:
            value = env.get(name)
            return default if value in (None, "") else str(value)

        # The CDK stack names the stage's GPU models; load those before /ping says healthy.
        preload = get("AIMAAS_GPU_PRELOAD", get("AIMAAS_GPU_MODELS", ""))
        return cls(
            core=core,
            host=get("AIMAAS_GPU_HOST", cls.host),
            port=int(get("AIMAAS_GPU_PORT", get("SAGEMAKER_BIND_TO_PORT", "8080"))),
            target=get("AIMAAS_GPU_TARGET", "auto"),
            engine=EngineOptions(
                threads=core.onnx_threads,
                device_id=int(get("AIMAAS_GPU_DEVICE_ID", "0")),
                fp16=get("AIMAAS_GPU_FP16", "auto"),
                io_binding=_flag(env.get("AIMAAS_GPU_IO_BINDING"), True),
                min_cosine=float(get("AIMAAS_GPU_FP16_MIN_COSINE", "0.999")),
                require_gpu=_flag(env.get("AIMAAS_GPU_REQUIRE"), False),
            ),
            preload=tuple(p.strip() for p in preload.split(",") if p.strip()),
            metrics_interval_s=float(get("AIMAAS_GPU_METRICS_S", "60")),
            environ=env,
        )

    def with_overrides(self, **changes: Any) -> ServerSettings:
        """A copy with some fields replaced (command-line flags)."""
        return replace(self, **changes)

    def batching(self, manifest: ModelManifest, concurrency: int = 1) -> BatchingOptions:
        """A model's batching limits: its manifest policy (and the device's ``concurrency``),
        overridden by the environment, and never more rows than the model takes in one run
        (``manifest.max_batch_size``)."""
        options = BatchingOptions.from_env(
            self.environ,
            max_batch_size=manifest.batching.max_batch_size,
            max_wait_ms=manifest.batching.max_wait_ms,
            max_concurrent_batches=concurrency,
        )
        if options.max_batch_size > manifest.max_batch_size:
            options = replace(options, max_batch_size=manifest.max_batch_size)
        return options
