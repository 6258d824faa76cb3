"""Admission control for in-process inference: bounded concurrency, bounded queues, clear 503s.

A long-running server (local mode, a container) takes requests on many threads. Letting every
one of them run an ONNX session at once oversubscribes the cores (each session has its own
intra-op threads), so throughput falls and the tail grows as concurrency rises, with no limit on
how many callers pile up. :class:`RunGate` lets at most ``slots`` model runs proceed at once
in the process; the others wait, at most ``max_waiting`` per model and each no longer than
``wait_s`` (or the request's deadline, if nearer). A caller that cannot be queued or whose
wait runs out gets :class:`aimaas.errors.Overloaded`: 503 with ``Retry-After``, in the error
shape, never billed, and the server keeps serving the calls it admitted.

Under Lambda a process serves one request at a time, so the gate never holds anyone back.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aimaas import deadline
from aimaas.errors import Overloaded


def default_slots(threads_per_run: int) -> int:
    """Runs that fit the cores this process may use, with ``threads_per_run`` threads each
    (0: ONNX Runtime's default, one thread per core, so one run)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(1, cores // threads_per_run) if threads_per_run > 0 else 1


class RunGate:
    """At most ``slots`` runs at once; a bounded, time-limited wait per model for the rest.

    Parameters
    ----------
    slots
        Runs that may proceed at once in this process (0: no limit, no gate).
    max_waiting
        Callers that may wait for one model at once; one more is refused at once.
    wait_s
        Longest wait for a slot (bounded by the request's deadline).
    retry_after_s
        The ``Retry-After`` the refusal suggests.
    """

    def __init__(
        self, slots: int, *, max_waiting: int = 64, wait_s: float = 5.0, retry_after_s: int = 1
    ) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._running = 0
        self._waiting: Counter[str] = Counter()
        self._free = threading.Condition()

    @property
    def running(self) -> int:
        """Runs in progress now."""
        return self._running

    @contextmanager
    def admit(self, model_id: str) -> Iterator[None]:
        """Hold a slot for one run of ``model_id`` while the block runs.

        Raises
        ------
        aimaas.errors.Overloaded
            ``max_waiting`` callers already wait for this model, or no slot came free in time.
        """
        if self.slots <= 0:
            yield
            return
        with self._free:
            if self._running >= self.slots or self._waiting:  # first come, first served
                self._wait_for_a_slot(model_id)
            self._running += 1
        try:
            yield
        finally:
            with self._free:
                self._running -= 1
                self._free.notify()

    def _wait_for_a_slot(self, model_id: str) -> None:
        # Called holding the lock.
        if self._waiting[model_id] >= self.max_waiting:
            raise self._refusal(model_id)
        self._waiting[model_id] += 1
        try:
            free = self._free.wait_for(
                lambda: self._running < self.slots, timeout=deadline.bounded(self.wait_s)
            )
        finally:
            self._waiting[model_id] -= 1
            if not self._waiting[model_id]:
                del self._waiting[model_id]
        if not free:
            raise self._refusal(model_id)

    def _refusal(self, model_id: str) -> Overloaded:
        return Overloaded(
            f"{model_id} is at capacity right now; retry in a moment.",
            retry_after=self.retry_after_s,
        )
