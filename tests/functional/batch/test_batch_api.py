"""The Batch API on the local engine: real models, the real ledger, a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from aimaas.batch.records import Chunk
from aimaas.batch.worker import BatchWorker
from aimaas.plans import load_catalog
from tests.functional.batch.conftest import BatchApp, mixed_lines


def _run(app: BatchApp, lines: list, tenant: str = "a") -> dict:
    uploaded = app.upload(lines, tenant)
    assert uploaded.status_code == 200, uploaded.text
    created = app.create(uploaded.json()["id"], tenant)
    assert created.status_code == 200, created.text
    return app.wait(created.json()["id"], tenant)


def test_a_mixed_batch_answers_every_line_and_bills_each_success_once(app: BatchApp) -> None:
    lines = mixed_lines()
    batch = _run(app, lines)
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": 7, "completed": 5, "failed": 2}
    outputs = app.lines(batch["output_file_id"])
    failures = app.lines(batch["error_file_id"])
    assert len(outputs) + len(failures) == len(lines)
    by_id = {x["custom_id"]: x for x in outputs}
    assert set(by_id) == {"emb-1", "txt-1", "img-1", "aud-1", "emb-2"}
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in outputs)
    assert len(by_id["emb-2"]["response"]["body"]["data"]) == 2
    assert len(by_id["img-1"]["response"]["body"]["predictions"]) == 3  # the url's top_k
    codes = sorted(x["response"]["status_code"] for x in failures)
    assert codes == [400, 422]  # not JSON; not a task route
    records = app.records()
    assert len(records) == 5
    assert {r.request_id for r in records} == {x["response"]["request_id"] for x in outputs}
    assert {r.task for r in records} == {
        "embeddings+batch",
        "text-classification+batch",
        "image-classification+batch",
        "audio-classification+batch",
    }
    catalog = load_catalog()
    for x in outputs:
        usage = x["response"]["body"]["usage"]
        task = next(r.task for r in records if r.request_id == x["response"]["request_id"])
        model = x["response"]["body"]["model"].split("@")[0]
        full = catalog.price(
            task.removesuffix("+batch"), model, Decimal(str(usage["units"])), "pro"
        )
        fee = catalog.request_fee_usd * catalog.plan("pro").price_multiplier
        # Half the unit price, the whole request fee (plans.toml's batch_discount = 0.5).
        assert usage["price_usd"] == pytest.approx(float((full - fee) / 2 + fee), rel=1e-9)


def test_a_redelivered_chunk_bills_and_counts_nothing_twice(app: BatchApp) -> None:
    batch = _run(app, mixed_lines())
    before = app.records()
    worker = BatchWorker(app.container)
    job = app.container.batch.jobs.get("t_a", batch["id"])
    for index in range(job.chunks):  # every chunk again, as SQS may after a worker dies
        worker.handle(Chunk("t_a", batch["id"], index, index * 3, min(index * 3 + 3, 7)))
    assert len(app.records()) == len(before) == 5
    again = app.get(f"/v1/batches/{batch['id']}").json()
    assert again["request_counts"] == batch["request_counts"]


def test_a_chunk_killed_before_it_was_counted_is_rerun_without_a_second_bill(
    make_app: Callable[..., BatchApp],
) -> None:
    app = make_app(batch_chunk_lines=3, batch_queue="none")  # no worker: run chunks by hand
    from aimaas.api.container import BatchServices
    from aimaas.batch.local import FolderFileStore, SqliteJobStore, ThreadWorkQueue

    data = app.container.settings.sqlite_path
    app.container.batch = BatchServices(
        FolderFileStore(data.parent / "files"), SqliteJobStore(data), ThreadWorkQueue(), 3
    )
    batch_id = app.create(app.upload(mixed_lines()).json()["id"]).json()["id"]
    worker = BatchWorker(app.container)
    first = Chunk("t_a", batch_id, 0, 0, 3)
    jobs = app.container.batch.jobs
    real_finish = jobs.finish_chunk

    def killed(*args: object) -> None:
        raise RuntimeError("worker killed after billing, before counting")

    jobs.finish_chunk = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        worker.handle(first)
    billed = len(app.records())
    assert billed == 2  # emb-1 and txt-1 ran and were billed
    jobs.finish_chunk = real_finish  # type: ignore[method-assign]
    for chunk in app.container.batch.queue.pending():  # the queued chunks, redelivered
        worker.handle(chunk)
    done = app.get(f"/v1/batches/{batch_id}").json()
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 7, "completed": 5, "failed": 2}
    assert len(app.records()) == 5


def test_another_tenant_gets_404_for_files_and_batches(app: BatchApp) -> None:
    batch = _run(app, mixed_lines()[:2])
    file_id = batch["input_file_id"]
    for path in (
        f"/v1/files/{file_id}",
        f"/v1/files/{file_id}/content",
        f"/v1/files/{batch['output_file_id']}/content",
        f"/v1/batches/{batch['id']}",
    ):
        assert app.get(path, "a").status_code == 200, path
        theirs = app.get(path, "b")
        assert theirs.status_code == 404, path
        assert theirs.json()["error"]["code"] == "not_found"
    assert app.create(file_id, "b").status_code == 404
    cancel = app.client.post(f"/v1/batches/{batch['id']}/cancel", headers=app.headers("b"))
    assert cancel.status_code == 404
    assert app.get("/v1/batches", "b").json()["data"] == []
    assert [x["id"] for x in app.get("/v1/batches", "a").json()["data"]] == [batch["id"]]


def test_validation_errors_are_4xx_in_the_one_error_shape(app: BatchApp) -> None:
    file_id = app.upload(mixed_lines()[:1]).json()["id"]
    cases = [
        app.create(file_id, endpoint="/v1/usage"),
        app.create("file-000000000000000000000000"),
        app.create("../../etc/passwd"),
        app.client.post(
            "/v1/files",
            files={"file": ("x.jsonl", b"{}\n", "application/jsonl")},
            data={"purpose": "fine-tune"},
            headers=app.headers("a"),
        ),
        app.client.post("/v1/files", json={"file": "x"}, headers=app.headers("a")),
        app.get("/v1/files/not-an-id"),
    ]
    statuses = [r.status_code for r in cases]
    assert statuses == [422, 404, 404, 422, 415, 404]
    for response in cases:
        assert set(response.json()["error"]) == {"code", "message", "request_id"}


def test_cancel_stops_new_lines_and_bills_only_what_ran(make_app: Callable[..., BatchApp]) -> None:
    app = make_app(batch_chunk_lines=2, batch_queue="none")
    from aimaas.api.container import BatchServices
    from aimaas.batch.local import FolderFileStore, SqliteJobStore, ThreadWorkQueue

    data = app.container.settings.sqlite_path
    queue = ThreadWorkQueue()
    app.container.batch = BatchServices(
        FolderFileStore(data.parent / "files"), SqliteJobStore(data), queue, 2
    )
    lines = [
        {"custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings", "body": {"input": "hi"}}
        for n in range(6)
    ]
    batch_id = app.create(app.upload(lines).json()["id"]).json()["id"]
    worker = BatchWorker(app.container)
    pending = queue.pending()
    worker.handle(pending[0])  # two lines run
    cancelled = app.client.post(f"/v1/batches/{batch_id}/cancel", headers=app.headers("a"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelling"
    for chunk in pending[1:]:
        worker.handle(chunk)
    done = app.get(f"/v1/batches/{batch_id}").json()
    assert done["status"] == "cancelled"
    assert done["request_counts"] == {"total": 6, "completed": 2, "failed": 0}
    assert len(app.lines(done["output_file_id"])) == 2
    assert len(app.records()) == 2


def test_lines_past_the_hard_limit_fail_with_429_and_are_not_billed(app: BatchApp) -> None:
    from aimaas import errors
    from aimaas.auth import Principal
    from aimaas.metering.limits import Admission
    from tests.functional.classifiers.conftest import HeaderTenantAuthenticator

    class TwoCalls(HeaderTenantAuthenticator):
        """Admits two calls, then answers as a tenant at its monthly limit."""

        admitted = 0

        def admit(self, principal: Principal, used: int | None = None) -> Admission:
            if self.admitted >= 2:
                raise errors.QuotaExceeded("The monthly request limit is reached.", retry_after=9)
            self.admitted += 1
            return super().admit(principal, used)

    app.container.authenticator = TwoCalls()
    lines = [
        {"custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings", "body": {"input": "hi"}}
        for n in range(5)
    ]
    batch = _run(app, lines)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    failed = app.lines(batch["error_file_id"])
    assert {x["response"]["status_code"] for x in failed} == {429}
    assert len(app.records()) == 2


def test_a_worker_killed_after_counting_its_chunk_is_finished_by_the_redelivery(
    make_app: Callable[..., BatchApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(batch_chunk_lines=3, batch_queue="none")
    from aimaas.api.container import BatchServices
    from aimaas.batch.local import FolderFileStore, SqliteJobStore, ThreadWorkQueue

    data = app.container.settings.sqlite_path
    queue = ThreadWorkQueue()
    app.container.batch = BatchServices(
        FolderFileStore(data.parent / "files"), SqliteJobStore(data), queue, 3
    )
    batch_id = app.create(app.upload(mixed_lines()).json()["id"]).json()["id"]
    worker = BatchWorker(app.container)
    pending = queue.pending()
    real_finalize = BatchWorker.finalize
    monkeypatch.setattr(BatchWorker, "finalize", lambda self, job: job)  # dies before the end
    for chunk in pending:
        worker.handle(chunk)
    stuck = app.get(f"/v1/batches/{batch_id}").json()
    assert stuck["status"] == "in_progress"
    assert stuck["request_counts"] == {"total": 7, "completed": 5, "failed": 2}
    monkeypatch.setattr(BatchWorker, "finalize", real_finalize)
    worker.handle(pending[-1])  # SQS delivers the last message again
    done = app.get(f"/v1/batches/{batch_id}").json()
    assert done["status"] == "completed" and done["request_counts"] == stuck["request_counts"]
    assert len(app.lines(done["output_file_id"])) == 5
    assert len(app.records()) == 5
