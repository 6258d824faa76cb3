"""The run gate: bounded concurrency, bounded waits, 503 beyond, full service after."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aimaas.backends.admission import RunGate, default_slots
from aimaas.errors import Overloaded


@contextmanager
def held(gate: RunGate, model: str = "m@1") -> Iterator[threading.Event]:
    """A run of ``model`` that holds its slot until the yielded event is set."""
    entered, release = threading.Event(), threading.Event()

    def run() -> None:
        with gate.admit(model):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join(10)


def test_a_caller_waits_for_a_slot_then_is_refused_in_time() -> None:
    gate = RunGate(1, wait_s=0.2, retry_after_s=3)
    with held(gate):
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused, gate.admit("m@1"):
            pass
        assert 0.15 <= time.monotonic() - started < 2
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == "3"
    with gate.admit("m@1"):  # free again: served at once
        assert gate.running("m@1") == 1


def test_a_waiting_caller_gets_the_slot_when_it_frees() -> None:
    gate = RunGate(1, wait_s=5)
    with held(gate) as release:
        threading.Timer(0.1, release.set).start()
        with gate.admit("m@1"):
            assert gate.running("m@1") == 1


def test_the_queue_per_model_is_bounded() -> None:
    gate = RunGate(1, max_waiting=1, wait_s=5)
    with held(gate) as release:
        waiter_done = threading.Event()

        def wait() -> None:
            with gate.admit("m@1"):
                waiter_done.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.1)  # the waiter is queued
        started = time.monotonic()
        with pytest.raises(Overloaded), gate.admit("m@1"):
            pass
        assert time.monotonic() - started < 0.5  # refused at once, not after a wait
        release.set()
        waiter.join(5)
    assert waiter_done.is_set()


def test_one_model_never_holds_back_another() -> None:
    gate = RunGate(1, wait_s=0.2)
    with held(gate, "whisper@1"):  # a long transcription
        started = time.monotonic()
        with gate.admit("minilm@1"):
            assert gate.running("minilm@1") == 1 and gate.running("whisper@1") == 1
        assert time.monotonic() - started < 0.1


def test_no_slots_means_no_gate() -> None:
    gate = RunGate(0)
    with gate.admit("a"), gate.admit("a"):
        assert gate.running("a") == 0


def test_default_slots_fit_the_cores() -> None:
    assert default_slots(0) == 1  # ONNX Runtime's default uses every core per run
    assert default_slots(1) >= 1
    assert default_slots(10_000) == 1
