"""A few worker threads of one's own that refuse work when all are busy, for blocking clients.

Why: ``ddgs`` is synchronous, so each search runs in a thread. ``asyncio.wait_for`` stops
waiting for a call that takes too long but cannot stop its thread, which runs on until the
client's own timeout ends it. In the event loop's default pool such threads would pile up and
starve every other ``to_thread`` call of the server (memory recall, page parsing, ``focus``).

``ThreadSlots(size)`` runs calls in its own ``size`` threads instead. A call holds its slot
until its thread really returns, timed out or not; when every slot is taken, a new call waits
at most ``wait_s`` for one and then raises ``PoolBusy``, so it fails fast (the search strategy
falls back) instead of queueing behind calls that may never return.

Simplification: waiting for a slot polls every ``POLL_S`` seconds (slots are freed by worker
threads, outside any event loop); with a short ``wait_s`` that costs a few wake-ups.

Use::

    slots = ThreadSlots(4, "safework-ddgs")
    rows = await asyncio.wait_for(slots.run(lambda: client.text(q), wait_s=1.0), 10.0)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["POLL_S", "PoolBusy", "ThreadSlots"]

T = TypeVar("T")
POLL_S = 0.02


class PoolBusy(Exception):
    """Every thread of a ``ThreadSlots`` is still busy with an earlier call."""


class ThreadSlots:
    """``size`` dedicated threads; ``run`` refuses (``PoolBusy``) rather than queue."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"a thread pool needs at least 1 thread (got {size})")
        self.size = size
        self.name = name
        self._free = threading.Semaphore(size)
        self._count_lock = threading.Lock()
        self._in_use = 0
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    @property
    def in_use(self) -> int:
        """Slots taken now, including those of calls nobody waits for any more."""
        return self._in_use

    async def run(self, call: Callable[[], T], wait_s: float = 0.0) -> T:
        """``call()`` in one of the threads; ``PoolBusy`` when none frees up within ``wait_s``.

        Cancelling the await (a timeout) leaves the call running in its slot until it returns.
        """
        await self._acquire(wait_s)
        try:
            future = self._pool.submit(call)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Let no new call in; threads still running finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _acquire(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while not self._free.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise PoolBusy(
                    f"all {self.size} {self.name} threads are still busy with earlier calls"
                )
            await asyncio.sleep(POLL_S)
        with self._count_lock:
            self._in_use += 1

    def _release(self, _future: Future[Any] | None = None) -> None:
        with self._count_lock:
            self._in_use -= 1
        self._free.release()
