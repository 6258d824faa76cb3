"""The completion window (a batch past it ends ``expired``) and fairness between tenants (one
tenant's big batch does not hold back another's small one, nor synchronous calls)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from aimaas.batch.records import line_request_id
from aimaas.batch.worker import BatchWorker
from aimaas.storage import now_utc
from tests.functional.batch.conftest import BatchApp, by_hand, embedding_lines, mixed_lines


class Clock:
    """A clock that the test moves on: real time plus ``ahead``."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return now_utc() + self.ahead


def test_chunks_run_after_the_window_expire_their_lines_unbilled(
    make_app: Callable[..., BatchApp],
) -> None:
    app = by_hand(make_app, 3)
    created = app.create(app.upload(mixed_lines()).json()["id"]).json()
    assert created["completion_window"] == "24h"
    clock = Clock()
    worker = BatchWorker(app.container, clock=clock)
    first, *rest = app.container.batch.queue.pending()
    worker.handle(first)  # emb-1, txt-1 and the line that is not JSON, within the window
    clock.ahead = timedelta(hours=24, seconds=1)
    for chunk in rest:
        worker.handle(chunk)
    done = app.get(f"/v1/batches/{created['id']}").json()
    assert done["status"] == "expired", done
    assert done["expired_at"] is not None and done["completed_at"] is None
    assert done["request_counts"] == {"total": 7, "completed": 2, "failed": 5}
    assert {x["custom_id"] for x in app.lines(done["output_file_id"])} == {"emb-1", "txt-1"}
    failures = app.lines(done["error_file_id"])
    expired = [x for x in failures if x["error"] and x["error"].get("code") == "batch_expired"]
    assert {x["custom_id"] for x in expired} == {"img-1", "aud-1", "emb-2", "bad-url"}
    assert all(x["response"] is None for x in expired)
    assert len(failures) == 5  # and the unparseable line, answered 400 before the window ended
    # Only what ran is billed.
    assert {r.request_id for r in app.records()} == {
        line_request_id(created["id"], c) for c in ("emb-1", "txt-1")
    }
    # An expired batch is over: a cancel or a redelivery changes nothing.
    again = app.client.post(f"/v1/batches/{created['id']}/cancel", headers=app.headers("a"))
    assert again.json()["status"] == "expired"
    worker.handle(first)
    assert app.get(f"/v1/batches/{created['id']}").json() == done


def test_a_chunk_that_reaches_the_window_mid_way_runs_only_its_first_lines(
    make_app: Callable[..., BatchApp],
) -> None:
    app = by_hand(make_app, 40)
    batch_id = app.create(app.upload(embedding_lines(40)).json()["id"]).json()["id"]

    class Late(Clock):
        # Within the window for the checks before lines 0 and 16, past it from line 32 on.
        def __call__(self) -> datetime:
            self.calls += 1
            return now_utc() + (timedelta(hours=25) if self.calls > 2 else timedelta(0))

    clock = Late()
    (chunk,) = app.container.batch.queue.pending()
    BatchWorker(app.container, clock=clock).handle(chunk)
    done = app.get(f"/v1/batches/{batch_id}").json()
    assert done["status"] == "expired"
    assert done["request_counts"] == {"total": 40, "completed": 32, "failed": 8}
    expired = app.lines(done["error_file_id"])
    assert [x["custom_id"] for x in expired] == [f"e{n}" for n in range(32, 40)]
    assert len(app.records()) == 32


def test_a_small_batch_of_another_tenant_finishes_before_a_big_one(
    make_app: Callable[..., BatchApp],
) -> None:
    app = make_app(batch_chunk_lines=2, batch_workers=1)
    big = app.create(app.upload(embedding_lines(200, "a"), "a").json()["id"], "a").json()
    small = app.create(app.upload(embedding_lines(4, "b"), "b").json()["id"], "b").json()
    # Synchronous traffic of a third tenant is served while the big batch runs.
    sync = app.client.post(
        "/v1/embeddings", json={"input": "not queued behind batches"}, headers=app.headers("c")
    )
    assert sync.status_code == 200
    small_done = app.wait(small["id"], "b")
    big_then = app.get(f"/v1/batches/{big['id']}", "a").json()
    assert small_done["status"] == "completed"
    # One thread, tenants in turn: tenant b waited for one of a's chunks per chunk of its own
    # (and those a ran before b's batch came), not for a's 100 chunks.
    assert big_then["status"] == "in_progress", big_then
    assert big_then["request_counts"]["completed"] < 100, big_then
    big_done = app.wait(big["id"], "a")
    assert big_done["status"] == "completed"
    assert big_done["completed_at"] >= small_done["completed_at"]
