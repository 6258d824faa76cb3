"""Runtime configuration: which adapters are wired in, read once from the environment.

Nothing in the core asks "am I local?": the environment names an adapter for each port
(``AIMAAS_MODEL_STORE=folder|s3``, ``AIMAAS_KEY_STORE=sqlite|dynamodb``, ...) and each package
turns that name into an instance through its own factory. Plans and stages are data files in
``aimaas/data/`` shared with the CDK app. Standard library only (the authorizer imports it).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

#: Where ``plans.toml`` and ``stages.toml`` live: package data, so the layer, the images and an
#: installed checkout all find them the same way (``AIMAAS_CONFIG_DIR`` overrides, for tests).
PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "data"


def config_dir() -> Path:
    """The folder holding ``plans.toml`` and ``stages.toml`` (``AIMAAS_CONFIG_DIR`` overrides)."""
    explicit = os.environ.get("AIMAAS_CONFIG_DIR")
    return Path(explicit) if explicit else PACKAGED_CONFIG_DIR


@cache
def load_toml(name: str, directory: Path | None = None) -> dict[str, Any]:
    """Parse ``<config dir>/<name>`` once per process."""
    with ((directory or config_dir()) / name).open("rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True)
class StageConfig:
    """One stage of ``aimaas/data/stages.toml``."""

    name: str
    gpu_enabled: bool = False
    gpu_models: tuple[str, ...] = ()
    default_models: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, directory: Path | None = None) -> StageConfig:
        stages = load_toml("stages.toml", directory)["stages"]
        if name not in stages:
            raise KeyError(f"unknown stage {name!r}; known: {sorted(stages)}")
        data = stages[name]
        return cls(
            name=name,
            gpu_enabled=bool(data.get("gpu_enabled", False)),
            gpu_models=tuple(data.get("gpu_models", ())),
            default_models=dict(data.get("default_models", {})),
            raw=data,
        )


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything the runtime reads from its environment, resolved once at start-up."""

    stage: str = "local"
    # Model store: "folder" (a registry folder) or "s3" (bucket + prefix, cached in cache_dir).
    model_store: str = "folder"
    registry_path: Path = Path("build/registry")
    model_bucket: str | None = None
    model_prefix: str = "models/"
    model_cache_dir: Path = Path("/tmp/aimaas-models")  # noqa: S108 - Lambda's only writable dir
    # Keys, tenants and the usage ledger: "sqlite" or "dynamodb".
    key_store: str = "sqlite"
    ledger: str = "sqlite"
    sqlite_path: Path = Path(".aimaas/aimaas.db")
    tenants_table: str | None = None
    usage_table: str | None = None
    audit_table: str | None = None
    # Custom classifiers per tenant: "local" (files beside sqlite_path) or "aws" (S3 with the
    # stage's KMS key + DynamoDB metadata).
    classifier_store: str = "local"
    classifier_bucket: str | None = None
    classifiers_table: str | None = None
    kms_key_id: str | None = None
    # Batch jobs: files "folder" (beside sqlite_path) or "s3" (batch_bucket, the stage's KMS
    # key); jobs "sqlite" or "dynamodb" (batches_table); the queue "thread" (worker threads in
    # this process) or "sqs" (batch_queue_url). "none" for the queue switches batches off.
    batch_file_store: str = "folder"
    batch_job_store: str = "sqlite"
    batch_queue: str = "thread"
    batch_bucket: str | None = None
    batches_table: str | None = None
    batch_queue_url: str | None = None
    # Lines per queue message, and local worker threads (one keeps a batch from taking more
    # than one model slot from synchronous traffic at a time).
    batch_chunk_lines: int = 100
    batch_workers: int = 1
    # Most chunks of one tenant the local threads run at once (0: as many as there are threads;
    # the threads take tenants' chunks in turn either way, see ThreadWorkQueue).
    batch_per_tenant: int = 0
    # GPU backend: "none", "http" (the GPU server process) or "sagemaker".
    gpu_backend: str = "none"
    gpu_url: str | None = None
    sagemaker_endpoint: str | None = None
    gpu_timeout_s: float = 10.0
    # Behind API Gateway the Lambda authorizer has already checked the key: trust its context.
    trust_authorizer: bool = False
    max_body_bytes: int = 6 * 1024 * 1024
    # A slow upload is cut off (408) after this long without data (4x for the whole body);
    # at most max_uploads bodies are received at once (503 beyond).
    body_timeout_s: float = 15.0
    max_uploads: int = 64
    # Each request must be answered within this (API Gateway gives up at 29 s); every wait and
    # retry on its path is bounded by what is left (aimaas.deadline). 0: no deadline.
    request_deadline_s: float = 25.0
    onnx_threads: int = 0  # 0: let ONNX Runtime decide
    # Runs of one model at once in the process (-1: as many as the cores fit, see
    # aimaas.backends.admission; 0: no limit); callers beyond wait, at most max_waiting_runs per
    # model and run_wait_s each, then get 503 with Retry-After.
    max_concurrent_runs: int = -1
    max_waiting_runs: int = 64
    run_wait_s: float = 20.0
    # Concurrent requests for one model merged into one ONNX batch (aimaas.backends.batched),
    # within the same bounds. Off in the Lambda image: one request per process.
    cpu_batching: bool = True
    # Every AIMAAS_* variable, for adapters with settings of their own; kept out of repr() since
    # it can hold secrets (AIMAAS_KEY_PEPPER).
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``AIMAAS_*`` variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"AIMAAS_{name}")
            return value if value not in (None, "") else default

        return cls(
            stage=get("STAGE", "local") or "local",
            model_store=get("MODEL_STORE", "folder") or "folder",
            registry_path=Path(get("REGISTRY", "build/registry") or "build/registry"),
            model_bucket=get("MODEL_BUCKET"),
            model_prefix=get("MODEL_PREFIX", "models/") or "models/",
            model_cache_dir=Path(get("MODEL_CACHE_DIR", "/tmp/aimaas-models") or ""),  # noqa: S108
            key_store=get("KEY_STORE", "sqlite") or "sqlite",
            ledger=get("LEDGER", "sqlite") or "sqlite",
            sqlite_path=Path(get("SQLITE_PATH", ".aimaas/aimaas.db") or ""),
            tenants_table=get("TENANTS_TABLE"),
            usage_table=get("USAGE_TABLE"),
            audit_table=get("AUDIT_TABLE"),
            classifier_store=get("CLASSIFIER_STORE", "local") or "local",
            classifier_bucket=get("CLASSIFIER_BUCKET"),
            classifiers_table=get("CLASSIFIERS_TABLE"),
            kms_key_id=get("KMS_KEY_ID"),
            batch_file_store=get("BATCH_FILE_STORE", "folder") or "folder",
            batch_job_store=get("BATCH_JOB_STORE", "sqlite") or "sqlite",
            batch_queue=get("BATCH_QUEUE", "thread") or "thread",
            batch_bucket=get("BATCH_BUCKET"),
            batches_table=get("BATCHES_TABLE"),
            batch_queue_url=get("BATCH_QUEUE_URL"),
            batch_chunk_lines=int(get("BATCH_CHUNK_LINES", "100") or 100),
            batch_workers=int(get("BATCH_WORKERS", "1") or 1),
            batch_per_tenant=int(get("BATCH_PER_TENANT", "0") or 0),
            gpu_backend=get("GPU_BACKEND", "none") or "none",
            gpu_url=get("GPU_URL"),
            sagemaker_endpoint=get("SAGEMAKER_ENDPOINT"),
            gpu_timeout_s=float(get("GPU_TIMEOUT_S", "10") or 10),
            trust_authorizer=_flag(get("TRUST_AUTHORIZER"), False),
            max_body_bytes=int(get("MAX_BODY_BYTES", str(6 * 1024 * 1024)) or 0),
            body_timeout_s=float(get("BODY_TIMEOUT_S", "15") or 15),
            max_uploads=int(get("MAX_UPLOADS", "64") or 64),
            request_deadline_s=float(get("REQUEST_DEADLINE_S", "25") or 0),
            onnx_threads=int(get("ONNX_THREADS", "0") or 0),
            max_concurrent_runs=int(get("MAX_CONCURRENT_RUNS", "-1") or -1),
            max_waiting_runs=int(get("MAX_WAITING_RUNS", "64") or 64),
            run_wait_s=float(get("RUN_WAIT_S", "20") or 20),
            cpu_batching=_flag(get("CPU_BATCHING"), True),
            extra={k: v for k, v in env.items() if k.startswith("AIMAAS_")},
        )

    @property
    def stage_config(self) -> StageConfig:
        return StageConfig.load(self.stage)
