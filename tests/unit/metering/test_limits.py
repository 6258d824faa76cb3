"""The hard-limit guard: admission near the limit goes through the ledger's reservation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aimaas.metering.limits import LimitGuard
from aimaas.metering.sqlite import SqliteLedger

NOW = datetime(2026, 3, 14, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(tmp_path / "usage.db")


def test_far_from_the_limit_nothing_is_reserved(ledger: SqliteLedger) -> None:
    guard = LimitGuard(ledger, margin=10)
    admission = guard.admit("t", 1000, 500, NOW)
    assert admission is not None and not admission.reserved
    assert guard.in_flight("t") == 1
    admission.finish(billed=False)
    assert guard.in_flight("t") == 0
    assert ledger.reserve("t", "2026-03", 1000, 1)  # no reservation was made before


def test_near_the_limit_calls_in_flight_count_against_the_allowance(ledger: SqliteLedger) -> None:
    guard = LimitGuard(ledger, margin=10)
    far = [guard.admit("t", 100, 85, NOW) for _ in range(3)]  # 15 left: unreserved
    assert all(a is not None and not a.reserved for a in far)
    # 5 left by the counter, 3 of them taken by the calls in flight: 2 more are admitted.
    near = [guard.admit("t", 100, 95, NOW) for _ in range(4)]
    assert [a is not None for a in near] == [True, True, False, False]
    assert guard.in_flight("t") == 5


def test_an_unbilled_call_gives_its_slot_back(ledger: SqliteLedger) -> None:
    guard = LimitGuard(ledger, margin=10)
    first = guard.admit("t", 100, 99, NOW)
    assert first is not None and first.reserved
    assert guard.admit("t", 100, 99, NOW) is None
    first.finish(billed=False)
    first.finish(billed=False)  # finishing twice gives back once
    second = guard.admit("t", 100, 99, NOW)
    assert second is not None
    second.finish(billed=True)
    assert guard.admit("t", 100, 99, NOW) is None  # a billed call keeps its slot


def test_at_or_past_the_limit_nothing_is_admitted(ledger: SqliteLedger) -> None:
    guard = LimitGuard(ledger)
    assert guard.admit("t", 100, 100, NOW) is None
    assert guard.admit("t", 100, 250, NOW) is None
    assert guard.in_flight("t") == 0
