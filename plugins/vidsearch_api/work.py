"""Heavy requests (propagation preview and apply) run on their own few threads, not the request threads.

The search API is mounted in the Airflow API server: its plain `def` routes share the server's thread
pool with Airflow's own API. A propagation may search Weaviate once per source (up to
`vidsearch.search.MAX_PROPAGATION_SOURCES`), so it runs in a `BoundedWork`: at most `workers` at once
on threads of its own, at most `queue` more waiting; a request beyond that is answered 503 with
`Retry-After` at once (`TransientError`) instead of queueing without end.

Settings (environment of the API server): `VIDSEARCH_PROPAGATION_WORKERS` (default 2),
`VIDSEARCH_PROPAGATION_QUEUE` (default 8).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vidsearch.errors import TransientError
from vidsearch.settings import number_from_env

T = TypeVar("T")

WORKERS_ENV = "VIDSEARCH_PROPAGATION_WORKERS"
QUEUE_ENV = "VIDSEARCH_PROPAGATION_QUEUE"
DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 8


def _setting(name: str, default: int, lo: int, hi: int) -> int:
    return number_from_env(name, default, int, lo=lo, hi=hi)


class BoundedWork:
    """Runs blocking calls on at most `workers` threads of its own, with at most `queue` waiting."""

    def __init__(self, workers: int | None = None, queue: int | None = None, name: str = "vidsearch-propagation"):
        self.workers = workers if workers is not None else _setting(WORKERS_ENV, DEFAULT_WORKERS, 1, 64)
        self.queue = queue if queue is not None else _setting(QUEUE_ENV, DEFAULT_QUEUE, 0, 1000)
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)  # running + waiting
        self._executor: ThreadPoolExecutor | None = None
        self._name = name
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self._name)
            return self._executor

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on one of the threads; `TransientError` (503) when all slots are taken."""
        if not self._slots.acquire(blocking=False):
            raise TransientError(
                f"too many propagations at once ({self.workers} running, {self.queue} waiting): retry shortly"
            )
        try:
            future = self._pool().submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._slots.release()
            raise
        # The slot is freed when the work ends, not when the request does: a caller that goes away
        # cancels work still waiting, but work already running keeps its slot until it finishes.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
