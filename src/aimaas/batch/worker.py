"""The batch worker: one chunk message in, its lines answered, counted once, results written.

The same code runs in every engine: a thread of the local server (``ThreadWorkQueue``), a
process on a host polling SQS (the LocalStack profile) and the worker Lambda fed by SQS.

Exactly once, on an at-least-once queue
---------------------------------------
- Billing: each line is metered under :func:`~aimaas.batch.records.line_request_id` (batch id
  + custom_id), so a redelivered chunk replays its lines against records that exist and bills
  nothing again (the ledger dedupes on the request id, as for a retried HTTP call).
- Counts: the job store counts a chunk once (:meth:`JobStore.finish_chunk`); a redelivery adds
  nothing.
- Files: partial results are named by chunk and the output/error files by the batch
  (:func:`~aimaas.batch.records.derived_file_id`), so a repeat overwrites with the same lines.
  A chunk's results are written only after its last line, in one atomic write per part, so a
  worker killed mid-chunk leaves no half-written part: the redelivery writes it whole.
- Hard limit: a line that the limit refuses on a redelivery but that an earlier delivery
  already billed is answered anyway (it was admitted once), so its output says what was billed.

Completion window
-----------------
A chunk checks the job's deadline (``created_at`` + ``completion_window``) before its first line
and with every cancel check: past it, the chunk's unrun lines go to the error file as
``batch_expired`` (counted as failed, never billed) and the batch ends ``expired``, with the
output of the lines that did run. The clock is injectable (tests move it past the window).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aimaas import errors
from aimaas.api.calls import Call
from aimaas.api.container import Container
from aimaas.auth import Principal
from aimaas.batch.lines import custom_id_of, input_lines, parse_line, run_line
from aimaas.batch.records import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FINALIZING,
    RUNNING,
    TERMINAL,
    BatchJob,
    Chunk,
    FileRecord,
    derived_file_id,
    line_request_id,
)
from aimaas.errors import error_body
from aimaas.storage import now_utc

logger = logging.getLogger("aimaas.batch")

#: How often (in lines) a running chunk looks for a cancel: a cancelled batch stops within this
#: many lines per chunk in flight, for one job-store read per that many lines.
CANCEL_CHECK_LINES = 16
#: A line refused because every model slot is busy (503 overloaded) is tried this many times.
OVERLOAD_ATTEMPTS = 20


@dataclass(frozen=True)
class LineResult:
    """One answered line: its output JSON and whether it succeeded."""

    line: dict[str, Any]
    ok: bool


def _expired(custom_id: str | None, request_id: str) -> dict[str, Any]:
    # OpenAI's shape for a request the window left unrun: no response, only the error.
    return {
        "id": f"batch_req_{request_id.rsplit('-', 1)[-1][:24]}",
        "custom_id": custom_id,
        "response": None,
        "error": {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        },
    }


def _result(custom_id: str | None, request_id: str, status: int, body: Any) -> dict[str, Any]:
    return {
        "id": f"batch_req_{request_id.rsplit('-', 1)[-1][:24]}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }


class BatchWorker:
    """Runs chunks of batches with the container's models, ledger and batch stores.

    Parameters
    ----------
    container
        The wired container (its ``batch`` services must be configured).
    sleep
        Waits between tries of an overloaded line (tests pass a no-op).
    clock
        The time that the completion window is checked against (tests move it on).
    """

    def __init__(
        self,
        container: Container,
        *,
        sleep: Any = time.sleep,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        if container.batch is None:
            raise ValueError("the container has no batch services")
        self.container = container
        self.batch = container.batch
        self.sleep = sleep
        self.clock = clock

    # ---- one line -----------------------------------------------------------------------------

    def run_one(self, job: BatchJob, raw: bytes, position: int) -> LineResult:
        """Answer one raw input line of ``job`` (never raises for a bad line)."""
        custom_id = custom_id_of(raw)
        request_id = line_request_id(job.batch_id, custom_id or f"line-{position}")
        try:
            line = parse_line(raw)
        except errors.ApiError as error:
            return LineResult(
                {
                    **_result(custom_id, request_id, error.status, error_body(error, request_id)),
                    "error": {"code": error.code, "message": error.message, "line": position + 1},
                },
                ok=False,
            )
        principal = Principal(tenant_id=job.tenant_id, key_id=job.key_id, plan=job.plan)
        for attempt in range(OVERLOAD_ATTEMPTS):
            call = Call(request_id=request_id, principal=principal, inline=True, batch=True)
            try:
                return LineResult(
                    _result(line.custom_id, request_id, 200, self._serve(call, line)), ok=True
                )
            except errors.Overloaded:  # synchronous traffic holds the slots: wait, never fail
                self.sleep(min(0.05 * 2**attempt, 1.0))
            except errors.BackendUnavailable:
                raise  # the ledger or a backend is down: the whole chunk is retried later
            except errors.ApiError as error:
                body = error_body(error, request_id)
                return LineResult(_result(line.custom_id, request_id, error.status, body), ok=False)
        error = errors.Overloaded("Every model slot stayed busy; the line was not run.")
        body = error_body(error, request_id)
        return LineResult(_result(line.custom_id, request_id, error.status, body), ok=False)

    def _serve(self, call: Call, line: Any) -> dict[str, Any]:
        # The hard monthly limit holds for batch lines as for HTTP calls (429 for the line).
        try:
            admission = self.container.authenticator.admit(call.principal)
        except errors.QuotaExceeded:
            tenant = call.principal.tenant_id
            if self.container.ledger.get(tenant, call.request_id) is None:
                raise
            admission = None  # billed by an earlier delivery of this chunk: answer it again
        try:
            answer = run_line(self.container, call, line)
        finally:
            if admission is not None:
                admission.finish(call.billed)
        return json.loads(answer.model_dump_json())

    # ---- one chunk ----------------------------------------------------------------------------

    def handle(self, chunk: Chunk) -> None:
        """Process one chunk message (idempotent: a redelivery bills and counts nothing new).

        Raises
        ------
        aimaas.errors.BackendUnavailable
            A store or the ledger failed: the message must be redelivered.
        """
        jobs, files = self.batch.jobs, self.batch.files
        job = jobs.get(chunk.tenant_id, chunk.batch_id)
        if job is None or job.status in TERMINAL:
            return
        if jobs.chunk_counted(job.tenant_id, job.batch_id, chunk.index):
            # Redelivered after it was counted: running it again would only rewrite its results
            # (differently, if the plan's limit was reached since). Finish the batch if the
            # first delivery died before doing so.
            self.finalize(job)
            return
        if chunk.length >= 0:
            data = files.read_range(job.tenant_id, job.input_file_id, chunk.offset, chunk.length)
            lines = input_lines(data or b"")
        else:
            data = files.content(job.tenant_id, job.input_file_id)
            lines = input_lines(data or b"")[chunk.start : chunk.stop]
        outputs: list[bytes] = []
        failures: list[bytes] = []
        for offset, raw in enumerate(lines):
            if offset % CANCEL_CHECK_LINES == 0:
                if job.status != CANCELLING:
                    job = jobs.get(chunk.tenant_id, chunk.batch_id) or job
                if job.status != CANCELLING and self.clock() >= job.deadline:
                    failures.extend(self._expire(job, lines[offset:], chunk.start + offset))
                    break
            if job.status == CANCELLING:
                break  # what ran is billed and written; the rest never runs
            result = self.run_one(job, raw, chunk.start + offset)
            (outputs if result.ok else failures).append(json.dumps(result.line).encode())
        files.put_part(job.tenant_id, job.batch_id, f"{chunk.index:08d}.out", _jsonl(outputs))
        files.put_part(job.tenant_id, job.batch_id, f"{chunk.index:08d}.err", _jsonl(failures))
        counted = jobs.finish_chunk(
            job.tenant_id, job.batch_id, chunk.index, len(outputs), len(failures)
        )
        self.finalize(counted or jobs.get(job.tenant_id, job.batch_id))

    def _expire(self, job: BatchJob, lines: list[bytes], position: int) -> list[bytes]:
        """Mark ``job`` expired (once) and answer ``lines`` (from input line ``position`` on)
        with ``batch_expired``, unrun and unbilled."""
        if job.expired_at is None:
            self.batch.jobs.transition(
                job.tenant_id, job.batch_id, RUNNING, expired_at=self.clock()
            )
        answered = []
        for n, raw in enumerate(lines):
            custom_id = custom_id_of(raw)
            request_id = line_request_id(job.batch_id, custom_id or f"line-{position + n}")
            answered.append(json.dumps(_expired(custom_id, request_id)).encode())
        return answered

    # ---- the end of a batch -------------------------------------------------------------------

    def finalize(self, job: BatchJob | None) -> BatchJob | None:
        """Write the output and error files and end the batch once every chunk is counted.

        Safe to call any number of times, from the worker or the cancel route: file ids are
        derived from the batch and the status moves only from a running one.
        """
        if job is None or job.status in TERMINAL or job.chunks_done < job.chunks:
            return job
        files = self.batch.files
        outputs: list[bytes] = []
        failures: list[bytes] = []
        for index in range(job.chunks):
            outputs.append(files.part(job.tenant_id, job.batch_id, f"{index:08d}.out") or b"")
            failures.append(files.part(job.tenant_id, job.batch_id, f"{index:08d}.err") or b"")
        now = now_utc()
        output_id = self._write(job, "output", b"".join(outputs), now)
        error_data = b"".join(failures)
        error_id = self._write(job, "error", error_data, now) if error_data else None
        changes: dict[str, Any] = {
            "output_file_id": output_id,
            "error_file_id": error_id,
            "finalizing_at": now,
        }
        if job.status == CANCELLING:
            changes.update(status=CANCELLED, cancelled_at=now)
        elif job.expired_at is not None:  # a chunk found the window passed: its lines expired
            changes.update(status=EXPIRED)
        else:
            changes.update(status=COMPLETED, completed_at=now)
        allowed = frozenset({*RUNNING, CANCELLING, FINALIZING})
        ended = self.batch.jobs.transition(job.tenant_id, job.batch_id, allowed, **changes)
        logger.info(
            "batch ended",
            extra={"batch_id": job.batch_id, "status": changes["status"], "lines": job.total},
        )
        return ended or self.batch.jobs.get(job.tenant_id, job.batch_id)

    def _write(self, job: BatchJob, kind: str, data: bytes, now: Any) -> str:
        file_id = derived_file_id(job.batch_id, kind)
        record = FileRecord(
            file_id=file_id,
            tenant_id=job.tenant_id,
            filename=f"{job.batch_id}_{kind}.jsonl",
            purpose="batch_output",
            size=len(data),
            created_at=now,
        )
        self.batch.files.put(record, data)
        return file_id


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def start_batch_worker(container: Container) -> None:
    """Have the container's queue deliver chunks to a worker in this process (a local queue's
    threads; a no-op for SQS, which the worker Lambda or a polling host consumes)."""
    if container.batch is not None:
        container.batch.queue.start(BatchWorker(container).handle)


def run_host_worker(
    container: Container, stop: threading.Event, *, threads: int = 1, wait_s: int = 1
) -> list[threading.Thread]:
    """Poll the container's queue from ``threads`` threads until ``stop`` is set (a worker
    on a host: the LocalStack profile, ``python -m aimaas_local batch-worker``).

    A chunk that raises stays on the queue and comes back after its visibility timeout; so does
    one whose process is killed mid-chunk, which the redelivery then runs whole, billing nothing
    twice (see the module docstring).
    """
    if container.batch is None:
        raise ValueError("the container has no batch services")
    queue = container.batch.queue
    worker = BatchWorker(container)

    def loop() -> None:
        while not stop.is_set():
            try:
                queue.poll(worker.handle, wait_s=wait_s, max_messages=1)
            except Exception:  # one chunk's failure must not end the worker: SQS retries it
                logger.exception("batch chunk failed")

    started = [threading.Thread(target=loop, name=f"batch-host-{n}") for n in range(threads)]
    for thread in started:
        thread.start()
    return started


def handle_sqs_event(worker: BatchWorker, event: dict[str, Any]) -> dict[str, Any]:
    """Run the chunks of one SQS event (the worker Lambda's event source mapping).

    Returns
    -------
    dict
        The partial batch response (``ReportBatchItemFailures``): only the messages whose chunk
        failed go back to the queue, to be redelivered (then dead-lettered after the queue's
        ``maxReceiveCount``); the rest are deleted.
    """
    failures = []
    for record in event.get("Records", []):
        try:
            worker.handle(Chunk.from_message(json.loads(record["body"])))
        except Exception:
            logger.exception("batch chunk failed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
