"""The dependency container: every adapter the app uses, wired once from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from aimaas.audit import AuditLog
from aimaas.auth import Authenticator
from aimaas.auth.lifecycle import KeyLifecycle
from aimaas.backends import BackendRouter, LocalOnnxBackend
from aimaas.backends.admission import RunGate, default_slots
from aimaas.backends.batched import BatchingGate
from aimaas.backends.local import RunPolicy
from aimaas.batch.ports import FileStore, JobStore, WorkQueue
from aimaas.classifiers import ClassifierStore
from aimaas.config import Settings
from aimaas.metering import Meter, UsageLedger
from aimaas.registry import ModelRegistry
from aimaas.wiring import (
    build_audit_log,
    build_authenticator,
    build_classifier_store,
    build_file_store,
    build_gpu_backend,
    build_job_store,
    build_key_lifecycle,
    build_ledger,
    build_model_store,
    build_work_queue,
)


@dataclass
class BatchServices:
    """The three batch ports (:mod:`aimaas.batch.ports`) and how lines are split into chunks."""

    files: FileStore
    jobs: JobStore
    queue: WorkQueue
    chunk_lines: int = 100

    def close(self) -> None:
        """Stop the queue's local workers first (they use the stores), then the stores."""
        self.queue.close()
        self.jobs.close()
        self.files.close()


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
        API key -> :class:`~aimaas.auth.Principal` (read by ``require_principal``).
    meter
        Durable, idempotent usage records.
    ledger
        The usage ledger behind ``meter`` (``GET /v1/usage`` reads it).
    classifiers
        Tenants' custom classifiers (None: the feature is off, its routes answer 404).
    audit
        The append-only audit log (classifier creates and deletes; None: not audited).
    batch
        Files, batch jobs and their queue (None: the Batch API answers 404).
    """

    settings: Settings
    registry: ModelRegistry
    backends: BackendRouter
    authenticator: Authenticator
    meter: Meter
    ledger: UsageLedger
    classifiers: ClassifierStore | None = None
    audit: AuditLog | None = None
    batch: BatchServices | None = None
    _keys: KeyLifecycle | None = field(default=None, repr=False)

    def keys(self) -> KeyLifecycle:
        """Issue and revoke the caller's keys (``/v1/keys``), the admin CLI's way; built on
        first use, so a cold start that never manages keys makes no ``apigateway`` client."""
        if self._keys is None:
            auth = self.authenticator
            self._keys = build_key_lifecycle(self.settings, auth.store, lambda: auth.pepper)
        return self._keys

    def close(self) -> None:
        """Release connections of the backends and the ledger."""
        if self.batch is not None:
            self.batch.close()
        self.backends.close()
        self.ledger.close()
        if self.classifiers is not None:
            self.classifiers.close()


def build_run_policy(settings: Settings) -> RunPolicy:
    """Admission control of in-process runs: a gate per model, with dynamic batching unless
    ``cpu_batching`` is off or the runs are unlimited (``max_concurrent_runs = 0``)."""
    slots = settings.max_concurrent_runs
    gate = RunGate(
        default_slots(settings.onnx_threads) if slots < 0 else slots,
        max_waiting=settings.max_waiting_runs,
        wait_s=settings.run_wait_s,
    )
    if not settings.cpu_batching or gate.slots == 0:
        return gate
    return BatchingGate(gate)


def build_container(settings: Settings) -> Container:
    """Wire the adapters named by ``settings``.

    Each port picks its adapter by name through :mod:`aimaas.wiring`, so nothing here
    branches on "local or cloud".

    Raises
    ------
    ValueError
        An unknown adapter name or a missing setting.
    """
    stage = settings.stage_config
    registry = ModelRegistry(build_model_store(settings), stage.default_models)
    cpu = LocalOnnxBackend(registry, threads=settings.onnx_threads, gate=build_run_policy(settings))
    backends = BackendRouter(cpu, build_gpu_backend(settings), stage.gpu_models)
    ledger = build_ledger(settings)
    container = Container(
        settings=settings,
        registry=registry,
        backends=backends,
        authenticator=build_authenticator(settings, ledger),
        meter=Meter(ledger),
        ledger=ledger,
        classifiers=build_classifier_store(settings),
        audit=build_audit_log(settings),
    )
    if settings.batch_queue != "none":
        container.batch = BatchServices(
            build_file_store(settings),
            build_job_store(settings),
            build_work_queue(settings),
            chunk_lines=max(1, settings.batch_chunk_lines),
        )
    return container
