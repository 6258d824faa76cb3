"""Wiring: which adapter serves each port, chosen by name from :class:`~aimaas.config.Settings`.

This is the one module that knows every adapter. Ports (``aimaas.auth.keys.KeyStore``,
``aimaas.metering.ledger.UsageLedger``, ``aimaas.registry.store.ModelStore``,
``aimaas.backends.base.InferenceBackend``, ``aimaas.classifiers.store.ClassifierStore``, the
batch ports of ``aimaas.batch.ports``) never
import their adapters; the factory tables here do, lazily, so that importing this module costs
nothing and a deployable loads only the adapters its configuration names (the authorizer zip
never imports FastAPI, ONNX Runtime or urllib3).

Every port is built the same way: ``build_<port>(settings)`` looks ``settings.<port>`` up in the
port's table (``KEY_STORES``, ``LEDGERS``, ``MODEL_STORES``, ``GPU_BACKENDS``,
``CLASSIFIER_STORES``, ``FILE_STORES``, ``JOB_STORES``, ``WORK_QUEUES``); an unknown name or
incomplete settings raise :class:`ValueError` at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from aimaas.config import Settings

if TYPE_CHECKING:  # the adapters' modules are imported by the factories, on demand
    from aimaas.audit import AuditLog
    from aimaas.auth.authenticator import Authenticator
    from aimaas.auth.keys import KeyStore
    from aimaas.auth.lifecycle import KeyLifecycle
    from aimaas.auth.provisioner import KeyProvisioner
    from aimaas.backends.base import InferenceBackend
    from aimaas.batch.ports import FileStore, JobStore, WorkQueue
    from aimaas.classifiers.store import ClassifierStore
    from aimaas.metering.aggregator import StreamAggregator
    from aimaas.metering.ledger import UsageLedger
    from aimaas.registry.store import ModelStore

Adapter = TypeVar("Adapter")


def build_adapter(
    kind: str,
    adapters: Mapping[str, Callable[[Settings], Adapter]],
    name: str,
    settings: Settings,
) -> Adapter:
    """Build the adapter of one port that configuration ``name``s, from its factory table.

    Parameters
    ----------
    kind
        What the port is, for the error message ("ledger", "model store", ...).
    adapters
        The port's factories by name.
    name
        The configured name (``settings.ledger``, ``settings.model_store``, ...).
    settings
        Passed to the factory.

    Raises
    ------
    ValueError
        An unknown name (a configuration error, caught at start-up), or incomplete settings
        from the factory itself.
    """
    try:
        factory = adapters[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {sorted(adapters)}") from None
    return factory(settings)


def _required(value: str | None, variable: str, what: str) -> str:
    if not value:
        raise ValueError(f"{variable} is required for {what}")
    return value


# ---- key store --------------------------------------------------------------------------------


def _sqlite_key_store(settings: Settings) -> KeyStore:
    from aimaas.auth.sqlite import SqliteKeyStore

    return SqliteKeyStore(settings.sqlite_path)


def _dynamodb_key_store(settings: Settings) -> KeyStore:
    from aimaas.auth.dynamodb import DynamoDbKeyStore

    table = _required(settings.tenants_table, "AIMAAS_TENANTS_TABLE", "the dynamodb key store")
    return DynamoDbKeyStore(table)


#: Key store adapters by the name ``AIMAAS_KEY_STORE`` selects.
KEY_STORES: Mapping[str, Callable[[Settings], KeyStore]] = {
    "sqlite": _sqlite_key_store,
    "dynamodb": _dynamodb_key_store,
}


def build_key_store(settings: Settings) -> KeyStore:
    """The key store that ``settings.key_store`` names."""
    return build_adapter("key store", KEY_STORES, settings.key_store, settings)


def _no_provisioner(settings: Settings) -> KeyProvisioner:
    from aimaas.auth.provisioner import NoProvisioner

    return NoProvisioner()


def _api_gateway_provisioner(settings: Settings) -> KeyProvisioner:
    from aimaas.auth.provisioner import ApiGatewayProvisioner

    return ApiGatewayProvisioner(settings.stage)


#: The gateway side of keys, chosen with the key store (local SQLite has no gateway).
PROVISIONERS: Mapping[str, Callable[[Settings], KeyProvisioner]] = {
    "sqlite": _no_provisioner,
    "dynamodb": _api_gateway_provisioner,
}


def build_key_lifecycle(
    settings: Settings, store: KeyStore, pepper: str | Callable[[], str]
) -> KeyLifecycle:
    """Issue and revoke keys in ``store`` with the gateway that goes with ``settings.key_store``
    (callers build it on first use: the AWS one makes an ``apigateway`` client)."""
    from aimaas.auth.lifecycle import KeyLifecycle

    provisioner = build_adapter("key provisioner", PROVISIONERS, settings.key_store, settings)
    return KeyLifecycle(store, provisioner, pepper)


# ---- usage ledger -----------------------------------------------------------------------------


def _sqlite_ledger(settings: Settings) -> UsageLedger:
    from aimaas.metering.sqlite import SqliteLedger

    return SqliteLedger(settings.sqlite_path)


def _usage_table_options(settings: Settings) -> dict[str, int]:
    # The ledger and its stream aggregator must agree on these.
    extra = settings.extra
    return {
        "retention_days": int(extra.get("AIMAAS_USAGE_RETENTION_DAYS", "400")),
        "record_shards": int(extra.get("AIMAAS_USAGE_RECORD_SHARDS", "8")),
        "counter_shards": int(extra.get("AIMAAS_USAGE_COUNTER_SHARDS", "8")),
    }


def _dynamodb_ledger(settings: Settings) -> UsageLedger:
    from aimaas.metering.dynamodb import DynamoDbLedger

    table = _required(settings.usage_table, "AIMAAS_USAGE_TABLE", "the dynamodb ledger")
    aggregation = settings.extra.get("AIMAAS_LEDGER_AGGREGATION", "stream")
    if aggregation not in ("stream", "inline"):
        raise ValueError(f"AIMAAS_LEDGER_AGGREGATION must be stream or inline, not {aggregation!r}")
    return DynamoDbLedger(
        table, aggregate_inline=aggregation == "inline", **_usage_table_options(settings)
    )


def build_aggregator(settings: Settings) -> StreamAggregator:
    """The usage table's stream aggregator (``functions/aggregator``), configured as the ledger."""
    from aimaas.metering.aggregator import StreamAggregator

    table = _required(settings.usage_table, "AIMAAS_USAGE_TABLE", "the stream aggregator")
    return StreamAggregator(table, **_usage_table_options(settings))


#: Ledger adapters by the name ``AIMAAS_LEDGER`` selects.
LEDGERS: Mapping[str, Callable[[Settings], UsageLedger]] = {
    "sqlite": _sqlite_ledger,
    "dynamodb": _dynamodb_ledger,
}


def build_ledger(settings: Settings) -> UsageLedger:
    """The usage ledger that ``settings.ledger`` names."""
    return build_adapter("ledger", LEDGERS, settings.ledger, settings)


# ---- model store ------------------------------------------------------------------------------


def _folder_store(settings: Settings) -> ModelStore:
    from aimaas.registry.store import FolderStore

    return FolderStore(settings.registry_path)


def _s3_store(settings: Settings) -> ModelStore:
    from aimaas.registry.store import S3Store

    bucket = _required(settings.model_bucket, "AIMAAS_MODEL_BUCKET", "the s3 model store")
    return S3Store(bucket, settings.model_prefix, settings.model_cache_dir)


#: Model store adapters by the name ``AIMAAS_MODEL_STORE`` selects.
MODEL_STORES: Mapping[str, Callable[[Settings], ModelStore]] = {
    "folder": _folder_store,
    "s3": _s3_store,
}


def build_model_store(settings: Settings) -> ModelStore:
    """The model store that ``settings.model_store`` names."""
    return build_adapter("model store", MODEL_STORES, settings.model_store, settings)


# ---- audit log --------------------------------------------------------------------------------


def _sqlite_audit_log(settings: Settings) -> AuditLog:
    from aimaas.audit.sqlite import SqliteAuditLog

    return SqliteAuditLog(settings.sqlite_path)


def _dynamodb_audit_log(settings: Settings) -> AuditLog:
    from aimaas.audit.dynamodb import DynamoDbAuditLog

    table = _required(settings.audit_table, "AIMAAS_AUDIT_TABLE", "the dynamodb audit log")
    return DynamoDbAuditLog(table)


#: Audit log adapters, selected with the key store's name (the two always live together).
AUDIT_LOGS: Mapping[str, Callable[[Settings], AuditLog]] = {
    "sqlite": _sqlite_audit_log,
    "dynamodb": _dynamodb_audit_log,
}


def build_audit_log(settings: Settings) -> AuditLog:
    """The audit log next to the key store that ``settings.key_store`` names."""
    return build_adapter("audit log", AUDIT_LOGS, settings.key_store, settings)


# ---- classifier store -------------------------------------------------------------------------


def _local_classifier_store(settings: Settings) -> ClassifierStore:
    from aimaas.classifiers.local import LocalClassifierStore

    return LocalClassifierStore(settings.sqlite_path.parent / "classifiers")


def _aws_classifier_store(settings: Settings) -> ClassifierStore:
    from aimaas.classifiers.aws import AwsClassifierStore

    what = "the aws classifier store"
    return AwsClassifierStore(
        _required(settings.classifier_bucket, "AIMAAS_CLASSIFIER_BUCKET", what),
        _required(settings.classifiers_table, "AIMAAS_CLASSIFIERS_TABLE", what),
        _required(settings.kms_key_id, "AIMAAS_KMS_KEY_ID", what),
    )


#: Tenant classifier stores by the name ``AIMAAS_CLASSIFIER_STORE`` selects.
CLASSIFIER_STORES: Mapping[str, Callable[[Settings], ClassifierStore]] = {
    "local": _local_classifier_store,
    "aws": _aws_classifier_store,
}


def build_classifier_store(settings: Settings) -> ClassifierStore:
    """The tenant classifier store that ``settings.classifier_store`` names."""
    return build_adapter("classifier store", CLASSIFIER_STORES, settings.classifier_store, settings)


# ---- batch jobs: file store, job store, work queue ---------------------------------------------


def _folder_file_store(settings: Settings) -> FileStore:
    from aimaas.batch.local import FolderFileStore

    return FolderFileStore(settings.sqlite_path.parent / "files")


def _s3_file_store(settings: Settings) -> FileStore:
    from aimaas.batch.aws import S3FileStore

    what = "the s3 batch file store"
    return S3FileStore(
        _required(settings.batch_bucket, "AIMAAS_BATCH_BUCKET", what),
        _required(settings.kms_key_id, "AIMAAS_KMS_KEY_ID", what),
    )


#: Batch file stores by the name ``AIMAAS_BATCH_FILE_STORE`` selects.
FILE_STORES: Mapping[str, Callable[[Settings], FileStore]] = {
    "folder": _folder_file_store,
    "s3": _s3_file_store,
}


def build_file_store(settings: Settings) -> FileStore:
    """The batch file store that ``settings.batch_file_store`` names."""
    return build_adapter("batch file store", FILE_STORES, settings.batch_file_store, settings)


def _sqlite_job_store(settings: Settings) -> JobStore:
    from aimaas.batch.local import SqliteJobStore

    return SqliteJobStore(settings.sqlite_path)


def _dynamodb_job_store(settings: Settings) -> JobStore:
    from aimaas.batch.aws import DynamoDbJobStore

    what = "the dynamodb batch job store"
    return DynamoDbJobStore(_required(settings.batches_table, "AIMAAS_BATCHES_TABLE", what))


#: Batch job stores by the name ``AIMAAS_BATCH_JOB_STORE`` selects.
JOB_STORES: Mapping[str, Callable[[Settings], JobStore]] = {
    "sqlite": _sqlite_job_store,
    "dynamodb": _dynamodb_job_store,
}


def build_job_store(settings: Settings) -> JobStore:
    """The batch job store that ``settings.batch_job_store`` names."""
    return build_adapter("batch job store", JOB_STORES, settings.batch_job_store, settings)


def _thread_queue(settings: Settings) -> WorkQueue:
    from aimaas.batch.local import ThreadWorkQueue

    return ThreadWorkQueue(
        workers=settings.batch_workers, per_tenant=settings.batch_per_tenant or None
    )


def _sqs_queue(settings: Settings) -> WorkQueue:
    from aimaas.batch.aws import SqsWorkQueue

    what = "the sqs batch queue"
    return SqsWorkQueue(_required(settings.batch_queue_url, "AIMAAS_BATCH_QUEUE_URL", what))


#: Work queues by the name ``AIMAAS_BATCH_QUEUE`` selects ("none": no batch jobs).
WORK_QUEUES: Mapping[str, Callable[[Settings], WorkQueue]] = {
    "thread": _thread_queue,
    "sqs": _sqs_queue,
}


def build_work_queue(settings: Settings) -> WorkQueue:
    """The work queue that ``settings.batch_queue`` names."""
    return build_adapter("batch queue", WORK_QUEUES, settings.batch_queue, settings)


# ---- GPU backend ------------------------------------------------------------------------------


def _no_gpu(settings: Settings) -> InferenceBackend:
    from aimaas.backends.router import UnconfiguredGpuBackend

    return UnconfiguredGpuBackend()


def _http_gpu(settings: Settings) -> InferenceBackend:
    from aimaas.backends.http import HttpGpuBackend

    url = _required(settings.gpu_url, "AIMAAS_GPU_URL", "the http GPU backend")
    return HttpGpuBackend(url, timeout_s=settings.gpu_timeout_s)


def _sagemaker_gpu(settings: Settings) -> InferenceBackend:
    from aimaas.backends.sagemaker import SageMakerBackend

    endpoint = _required(
        settings.sagemaker_endpoint, "AIMAAS_SAGEMAKER_ENDPOINT", "the sagemaker GPU backend"
    )
    return SageMakerBackend(endpoint, timeout_s=settings.gpu_timeout_s)


#: GPU backends by the name ``AIMAAS_GPU_BACKEND`` selects.
GPU_BACKENDS: Mapping[str, Callable[[Settings], InferenceBackend]] = {
    "none": _no_gpu,
    "http": _http_gpu,
    "sagemaker": _sagemaker_gpu,
}


def build_gpu_backend(settings: Settings) -> InferenceBackend:
    """The GPU backend that ``settings.gpu_backend`` names."""
    return build_adapter("GPU backend", GPU_BACKENDS, settings.gpu_backend, settings)


# ---- key pepper and authenticator -------------------------------------------------------------


def pepper_from(settings: Settings) -> str:
    """The key-hash pepper, read now (see :mod:`aimaas.auth.pepper` for sources and refusals)."""
    from aimaas.auth.pepper import read_pepper

    return read_pepper(settings)


def build_authenticator(settings: Settings, ledger: UsageLedger) -> Authenticator:
    """The authenticator for ``settings``: its key store, and the pepper checked now, read on use.

    Raises
    ------
    aimaas.auth.pepper.PepperError
        A shared key store configured with the local default pepper (refused at start-up).
    """
    from aimaas.auth.authenticator import Authenticator
    from aimaas.auth.pepper import pepper_source

    return Authenticator(build_key_store(settings), ledger, pepper=pepper_source(settings))
