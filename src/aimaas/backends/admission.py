"""Admission control for in-process inference: bounded concurrency, bounded queues, clear 503s.

A long-running server (local mode, a container) takes requests on many threads. Letting every
one of them run an ONNX session at once oversubscribes the cores (each session has its own
intra-op threads), so throughput falls and the tail grows as concurrency rises, with no limit on
how many callers pile up. :class:`RunGate` lets at most ``slots`` runs of one model proceed at
once in the process; the others wait, at most ``max_waiting`` per model and each no longer than
``wait_s`` (or the request's deadline, if nearer). The limit is per model so that a long run of
one (a two-minute transcription) never holds back the calls of another (an embedding): the
cores are shared by the few models busy at once, not by every request. A caller that cannot be
queued or whose wait runs out gets :class:`aimaas.errors.Overloaded`: 503 with
``Retry-After``, in the error shape, never billed, and the server keeps serving the calls it
admitted.

Under Lambda a process serves one request at a time, so the gate never holds anyone back.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aimaas import deadline
from aimaas.errors import Overloaded

if TYPE_CHECKING:
    from aimaas.inference.runners import ModelRunner
    from aimaas.manifest import ModelManifest


def default_slots(threads_per_run: int) -> int:
    """Runs that fit the cores this process may use, with ``threads_per_run`` threads each
    (0: ONNX Runtime's default, one thread per core, so one run)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(1, cores // threads_per_run) if threads_per_run > 0 else 1


class RunGate:
    """At most ``slots`` runs of a model at once; a bounded, time-limited wait for the rest.

    Parameters
    ----------
    slots
        Runs of one model that may proceed at once in this process (0: no limit, no gate).
    max_waiting
        Callers that may wait for one model at once; one more is refused at once.
    wait_s
        Longest wait for a slot (bounded by the request's deadline).
    retry_after_s
        The ``Retry-After`` the refusal suggests.
    """

    def __init__(
        self, slots: int, *, max_waiting: int = 64, wait_s: float = 20.0, retry_after_s: int = 1
    ) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._running: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._free = threading.Condition()

    def running(self, model_id: str) -> int:
        """Runs of ``model_id`` in progress now."""
        with self._free:
            return self._running[model_id]

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
            # First come, first served: a newcomer queues behind this model's waiters.
            if self._running[model_id] >= self.slots or self._waiting[model_id]:
                self._wait_for_a_slot(model_id)
            self._running[model_id] += 1
        try:
            yield
        finally:
            with self._free:
                self._running[model_id] -= 1
                if not self._running[model_id]:
                    del self._running[model_id]
                self._free.notify_all()  # waiters of other models ignore it

    def run(self, manifest: ModelManifest, runner: ModelRunner, request: Any) -> Any:
        """Answer ``request`` on ``runner`` once a slot of its model is free.

        Raises
        ------
        aimaas.errors.Overloaded
            As :meth:`admit`.
        """
        with self.admit(manifest.model_id):
            return runner.run(request)

    def close(self) -> None:
        """Nothing to release: the gate holds no threads."""

    def _wait_for_a_slot(self, model_id: str) -> None:
        # Called holding the lock.
        if self._waiting[model_id] >= self.max_waiting:
            raise self.refusal(model_id)
        self._waiting[model_id] += 1
        try:
            free = self._free.wait_for(
                lambda: self._running[model_id] < self.slots, timeout=deadline.bounded(self.wait_s)
            )
        finally:
            self._waiting[model_id] -= 1
            if not self._waiting[model_id]:
                del self._waiting[model_id]
        if not free:
            raise self.refusal(model_id)

    def refusal(self, model_id: str) -> Overloaded:
        """The 503 a caller of ``model_id`` gets when the model is at capacity."""
        return Overloaded(
            f"{model_id} is at capacity right now; retry in a moment.",
            retry_after=self.retry_after_s,
        )
