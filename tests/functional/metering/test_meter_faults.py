"""Fault injection: the Meter retries, and every call it acknowledges is in the ledger once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aimaas.errors import BackendUnavailable
from aimaas.metering import Meter, UsageLedger
from aimaas.metering.sqlite import SqliteLedger
from aimaas_testing.metering import FlakyLedger, hammer, sample_record

START = datetime(2026, 5, 1, tzinfo=UTC)
END = datetime(2026, 7, 1, tzinfo=UTC)


def ledger_ids(ledger: UsageLedger) -> list[str]:
    return [
        f"{tenant}/{record.request_id}"
        for tenant in ("t-a", "t-b")
        for record in ledger.records(tenant, START, END)
    ]


def test_meter_retries_failures_before_the_write(ledger: UsageLedger) -> None:
    """30% of writes fail before landing; 3 tries per record. Acknowledged calls are all in
    the ledger exactly once; the calls that raised (reported as not served) are absent."""
    flaky = FlakyLedger(ledger, fail_before=0.3, seed=7)
    meter = Meter(flaky, attempts=3, sleep=lambda _: None)
    result = hammer(meter.record, threads=8, per_thread=40, start=START)
    stored = ledger_ids(ledger)
    assert len(stored) == len(set(stored))
    assert set(stored) == result.unique_ids  # every acknowledged call, nothing else
    assert not (result.failed - result.unique_ids) & set(stored)
    assert flaky.injected_before > 50  # faults were really injected and retried
    # With p=0.3 and 3 tries, about 2.7% of records fail for good: some must be "not served".
    assert result.failed
    for failed in result.failed - result.unique_ids:
        tenant, request_id = failed.split("/", 1)
        assert ledger.get(tenant, request_id) is None


def test_ambiguous_failure_retries_without_double_billing(tmp_path: Path) -> None:
    """The write lands but its acknowledgement is lost: the retry sees the duplicate, the call
    is served, and the ledger has it once."""
    inner = SqliteLedger(tmp_path / "l.db")
    flaky = FlakyLedger(inner, fail_after=1.0)
    meter = Meter(flaky, attempts=2, sleep=lambda _: None)
    record = sample_record("amb-1", timestamp=START)
    with pytest.raises(BackendUnavailable):
        meter.record(record)  # both tries "fail" after writing: the documented residual case
    assert inner.get("t-test", "amb-1") == record
    assert inner.totals("t-test", "month", "2026-05").calls == 1

    flaky.fail_after = 0.0
    flaky.fail_before = 0.0
    once_then_ok = FlakyLedger(inner, fail_after=1.0)
    calls = {"n": 0}

    def put(rec):  # first try: lands but raises; second try: the duplicate answer
        calls["n"] += 1
        if calls["n"] == 1:
            return once_then_ok.put(rec)
        return inner.put(rec)

    flaky.put = put  # type: ignore[method-assign]
    assert (
        Meter(flaky, attempts=3, sleep=lambda _: None).record(
            sample_record("amb-2", timestamp=START)
        )
        is False
    )  # recorded by the first try: served, billed once
    assert inner.totals("t-test", "month", "2026-05").calls == 2


def test_meter_gives_up_with_503_and_nothing_billed(tmp_path: Path) -> None:
    inner = SqliteLedger(tmp_path / "l.db")
    waits: list[float] = []
    meter = Meter(FlakyLedger(inner, fail_before=1.0), attempts=4, sleep=waits.append)
    with pytest.raises(BackendUnavailable) as caught:
        meter.record(sample_record("down", timestamp=START))
    assert caught.value.status == 503
    assert len(waits) == 3 and all(w > 0 for w in waits)  # backed off between the 4 tries
    assert inner.get("t-test", "down") is None


def test_programming_errors_are_not_retried(tmp_path: Path) -> None:
    class Broken(SqliteLedger):
        tries = 0

        def put(self, record):
            Broken.tries += 1
            raise ValueError("bug")

    meter = Meter(Broken(tmp_path / "b.db"), attempts=5, sleep=lambda _: None)
    with pytest.raises(ValueError):
        meter.record(sample_record("bug", timestamp=START))
    assert Broken.tries == 1


def test_no_retry_outlives_the_request_deadline(tmp_path: Path) -> None:
    """Every write fails: with no deadline the meter tries its 4 times; with 0.1 s left and
    0.5 s waits it stops after the first (the answer could no longer reach the client)."""
    from aimaas import deadline

    def attempts_made(left_s: float | None) -> int:
        flaky = FlakyLedger(SqliteLedger(tmp_path / f"{left_s}.sqlite"), fail_before=1.0)
        meter = Meter(flaky, attempts=4, initial_wait_s=0.5, sleep=lambda _: None)
        token = deadline.start(left_s)
        try:
            with pytest.raises(BackendUnavailable):
                meter.record(sample_record("r-1", tenant_id="t-a", timestamp=START))
        finally:
            deadline.reset(token)
        return flaky.injected_before

    assert attempts_made(None) == 4
    assert attempts_made(0.1) == 1
