"""Starting calls at the same moment, as concurrent clients do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def at_once(calls: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(0)`` .. ``fn(calls - 1)`` on ``calls`` threads released together by a barrier.

    Returns
    -------
    list
        Each call's result in order, or the exception it raised (the test inspects both).
    """
    start = threading.Barrier(calls)

    def one(index: int) -> Any:
        start.wait()
        try:
            return fn(index)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))
