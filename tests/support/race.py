"""Calls raced against each other: threads released together by a barrier, each call's
result or raised exception kept in order, the whole race bounded in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def race(calls: Sequence[Callable[[], Any]], timeout: float = 120.0) -> list[Any]:
    """Run the calls in threads released together; each one's result or the exception it
    raised (a broken barrier included), in order. Bounded: a call still running after
    `timeout` seconds fails the test (its result would read as None)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a raced call did not finish in time"
    return results
