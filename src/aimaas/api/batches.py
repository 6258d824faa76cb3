"""OpenAI's Files and Batch API: upload a JSONL of requests, run it as a batch, fetch results.

Routes translate OpenAI's shapes to the batch ports (:mod:`aimaas.batch.ports`); the lines
themselves run through the task functions of the synchronous routes, in the worker
(:mod:`aimaas.batch.worker`). Every lookup is keyed by the caller's tenant: another tenant's
file or batch answers 404, exactly like one that never existed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from aimaas import errors
from aimaas.api.bodies import media_type
from aimaas.api.dependencies import ContainerDep, IdentifiedCallDep
from aimaas.batch import uploads
from aimaas.batch.jobs import cancel_batch, create_batch, services
from aimaas.batch.records import BatchJob, FileRecord, new_file_id
from aimaas.storage import now_utc


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


class FileObject(_Out):
    """OpenAI's file object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def of(cls, record: FileRecord) -> FileObject:
        """The file object of a stored file record."""
        return cls(
            id=record.file_id,
            bytes=record.size,
            created_at=int(record.created_at.timestamp()),
            filename=record.filename,
            purpose=record.purpose,
        )


class BatchCreateIn(BaseModel):
    """``POST /v1/batches``."""

    model_config = ConfigDict(extra="ignore")  # unknown OpenAI fields must not break clients

    input_file_id: str = Field(max_length=64)
    endpoint: str = Field(max_length=200, description="The task route every line calls.")
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class RequestCounts(_Out):
    total: int
    completed: int
    failed: int


class BatchError(_Out):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(_Out):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(_Out):
    """OpenAI's batch object."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] | None = None

    @classmethod
    def of(cls, job: BatchJob) -> BatchObject:
        """The batch object of a stored job (times as Unix seconds, as OpenAI's)."""
        return cls(
            id=job.batch_id,
            endpoint=job.endpoint,
            errors=BatchErrors.model_validate(job.errors) if job.errors else None,
            input_file_id=job.input_file_id,
            completion_window=job.completion_window,
            status=job.status,
            output_file_id=job.output_file_id,
            error_file_id=job.error_file_id,
            created_at=int(job.created_at.timestamp()),
            in_progress_at=_epoch(job.in_progress_at),
            expires_at=_epoch(job.expires_at),
            finalizing_at=_epoch(job.finalizing_at),
            completed_at=_epoch(job.completed_at),
            failed_at=_epoch(job.failed_at),
            cancelling_at=_epoch(job.cancelling_at),
            cancelled_at=_epoch(job.cancelled_at),
            expired_at=_epoch(job.expired_at),
            request_counts=RequestCounts(
                total=job.total, completed=job.completed, failed=job.failed
            ),
            metadata=dict(job.metadata) if job.metadata else None,
        )


class BatchList(_Out):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


router = APIRouter(prefix="/v1", tags=["batch"])


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


async def _upload(request: Request) -> tuple[str, bytes, str]:
    """The (filename, bytes, purpose) of OpenAI's multipart file upload."""
    if media_type(request) != "multipart/form-data":
        raise errors.UnsupportedMediaType(
            "Upload the file as multipart/form-data with 'file' and 'purpose' fields."
        )
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as exc:  # python-multipart and Starlette raise several unexported types
        raise errors.MalformedRequest("The multipart body could not be parsed.") from exc
    try:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise errors.InvalidInput("The multipart body has no 'file'.")
        if purpose != "batch":
            raise errors.InvalidInput("purpose must be 'batch' (the only purpose served here).")
        data = await upload.read()
        name = (upload.filename or "input.jsonl")[-200:]
    finally:
        await form.close()
    if not data.strip():
        raise errors.InvalidInput("The file is empty.")
    # The size is the request body limit's (AIMAAS_MAX_BODY_BYTES, checked by the middleware
    # as the body arrives); bigger files go through /v1/uploads (in parts, or a presigned PUT).
    return name, data, purpose


@router.post(
    "/files",
    response_model=FileObject,
    summary="Upload a JSONL file of requests for a batch (OpenAI-compatible)",
)
async def create_file(request: Request, container: ContainerDep, call: IdentifiedCallDep) -> Any:
    files = services(container).files
    name, data, purpose = await _upload(request)
    record = FileRecord(
        file_id=new_file_id(),
        tenant_id=call.principal.tenant_id,
        filename=name,
        purpose=purpose,
        size=len(data),
        created_at=now_utc(),
    )
    await call.run(files.put, record, data)
    return _json(FileObject.of(record))


FileId = Annotated[str, Path(max_length=64)]
BatchId = Annotated[str, Path(max_length=64)]


def _not_found(what: str) -> errors.NotFound:
    return errors.NotFound(f"No {what} with that id.")


@router.get("/files/{file_id}", response_model=FileObject, summary="One file's metadata")
async def get_file(file_id: FileId, container: ContainerDep, call: IdentifiedCallDep) -> Any:
    files = services(container).files
    record = await call.run(files.get, call.principal.tenant_id, file_id)
    if record is None:
        raise _not_found("file")
    return _json(FileObject.of(record))


@router.get("/files/{file_id}/content", summary="A file's bytes (inputs, outputs, errors)")
async def get_file_content(
    file_id: FileId, container: ContainerDep, call: IdentifiedCallDep
) -> Response:
    files = services(container).files
    data = await call.run(files.content, call.principal.tenant_id, file_id)
    if data is None:
        raise _not_found("file")
    return Response(data, media_type="application/octet-stream")


@router.post("/batches", response_model=BatchObject, summary="Run a file of requests as a batch")
async def post_batch(
    body: BatchCreateIn, container: ContainerDep, call: IdentifiedCallDep
) -> Response:
    job = await call.run(
        create_batch,
        container,
        call.principal,
        body.input_file_id,
        body.endpoint,
        body.completion_window,
        body.metadata,
    )
    return _json(BatchObject.of(job))


@router.get("/batches/{batch_id}", response_model=BatchObject, summary="A batch's status")
async def get_batch(batch_id: BatchId, container: ContainerDep, call: IdentifiedCallDep) -> Any:
    jobs = services(container).jobs
    job = await call.run(jobs.get, call.principal.tenant_id, batch_id)
    if job is None:
        raise _not_found("batch")
    return _json(BatchObject.of(job))


@router.get("/batches", response_model=BatchList, summary="The caller's batches, newest first")
async def list_batches(
    container: ContainerDep,
    call: IdentifiedCallDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    jobs = services(container).jobs
    found = await call.run(jobs.list, call.principal.tenant_id, limit + 1, after)
    data = [BatchObject.of(j) for j in found[:limit]]
    return _json(
        BatchList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(found) > limit,
        )
    )


@router.post("/batches/{batch_id}/cancel", response_model=BatchObject, summary="Cancel a batch")
async def post_cancel(batch_id: BatchId, container: ContainerDep, call: IdentifiedCallDep) -> Any:
    job = await call.run(cancel_batch, container, call.principal.tenant_id, batch_id)
    return _json(BatchObject.of(job))


# ---- uploads (OpenAI's Uploads API): files larger than one request body ----------------------


class UploadCreateIn(BaseModel):
    """``POST /v1/uploads``."""

    model_config = ConfigDict(extra="ignore")

    filename: str = Field(min_length=1, max_length=200)
    purpose: str = Field(max_length=32)
    bytes: int = Field(ge=1, description="The file's exact size; completing checks it.")
    mime_type: str = Field(default="application/jsonl", max_length=100)


class UploadCompleteIn(BaseModel):
    """``POST /v1/uploads/{upload_id}/complete``."""

    model_config = ConfigDict(extra="ignore")  # OpenAI's optional md5 is not checked here

    part_ids: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="The parts in file order; empty when the bytes were PUT at upload_url.",
    )


class UploadObject(_Out):
    """OpenAI's upload object, plus where this deployment takes the bytes in one PUT."""

    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    expires_at: int
    file: FileObject | None = None
    upload_url: str | None = Field(
        default=None,
        description="A presigned URL to PUT the whole file to (past the request body limit), "
        "then complete with no part ids; null where the store has none (send parts).",
    )
    upload_headers: dict[str, str] | None = Field(
        default=None, description="Headers to send with the PUT to upload_url, as they are."
    )


class UploadPartObject(_Out):
    """OpenAI's upload part object."""

    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


UploadId = Annotated[str, Path(max_length=64)]


def _upload_object(
    container: Any, upload: Any, presigned: tuple[str, dict[str, str]] | None = None
) -> UploadObject:
    file = None
    if upload.file_id is not None:
        record = services(container).files.get(upload.tenant_id, upload.file_id)
        file = FileObject.of(record) if record is not None else None
    return UploadObject(
        id=upload.upload_id,
        bytes=upload.size,
        created_at=int(upload.created_at.timestamp()),
        filename=upload.filename,
        purpose=upload.purpose,
        status=upload.status,
        expires_at=int(upload.expires_at.timestamp()),
        file=file,
        upload_url=presigned[0] if presigned else None,
        upload_headers=presigned[1] if presigned else None,
    )


@router.post("/uploads", response_model=UploadObject, summary="Start a large file upload")
async def post_upload(
    body: UploadCreateIn, container: ContainerDep, call: IdentifiedCallDep
) -> Any:
    def create() -> UploadObject:
        upload, presigned = uploads.create_upload(
            container, call.principal.tenant_id, body.filename, body.purpose, body.bytes,
            body.mime_type,
        )  # fmt: skip
        return _upload_object(container, upload, presigned)

    return _json(await call.run(create))


@router.post("/uploads/{upload_id}/parts", response_model=UploadPartObject, summary="Add one part")
async def post_upload_part(
    upload_id: UploadId, request: Request, container: ContainerDep, call: IdentifiedCallDep
) -> Any:
    if media_type(request) != "multipart/form-data":
        raise errors.UnsupportedMediaType("Send the part as multipart/form-data with 'data'.")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # python-multipart and Starlette raise several unexported types
        raise errors.MalformedRequest("The multipart body could not be parsed.") from exc
    try:
        part = form.get("data")
        if not isinstance(part, UploadFile):
            raise errors.InvalidInput("The multipart body has no 'data'.")
        data = await part.read()
    finally:
        await form.close()
    part_id = await call.run(uploads.add_part, container, call.principal.tenant_id, upload_id, data)
    return _json(
        UploadPartObject(id=part_id, created_at=int(now_utc().timestamp()), upload_id=upload_id)
    )


@router.post("/uploads/{upload_id}/complete", response_model=UploadObject, summary="Make the file")
async def post_upload_complete(
    upload_id: UploadId, body: UploadCompleteIn, container: ContainerDep, call: IdentifiedCallDep
) -> Any:
    def complete() -> UploadObject:
        upload = uploads.complete_upload(
            container, call.principal.tenant_id, upload_id, body.part_ids
        )
        return _upload_object(container, upload)

    return _json(await call.run(complete))


@router.post("/uploads/{upload_id}/cancel", response_model=UploadObject, summary="Cancel it")
async def post_upload_cancel(
    upload_id: UploadId, container: ContainerDep, call: IdentifiedCallDep
) -> Any:
    def cancel() -> UploadObject:
        upload = uploads.cancel_upload(container, call.principal.tenant_id, upload_id)
        return _upload_object(container, upload)

    return _json(await call.run(cancel))
