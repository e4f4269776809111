"""Small pieces the network backends (``duckduckgo.py``, ``http.py``) share.

- ``SeenCache``: a bounded LRU of what a backend returned, which is what it lets ``read`` serve.
- ``retry``: await a call again after a retryable error, with exponential backoff.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["SeenCache", "retry"]

T = TypeVar("T")
V = TypeVar("V")


class SeenCache(Generic[V]):
    """The ``max_size`` most recently added or read entries; the least recent goes first."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, V] = OrderedDict()

    def add(self, key: str, value: V) -> None:
        """Store (or replace) ``key`` as the most recent entry; evict beyond ``max_size``."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def get(self, key: str) -> V | None:
        """The entry for ``key``, now the most recent; None when it is not (or no longer) kept."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


async def retry(
    call: Callable[[], Awaitable[T]],
    attempts: int,
    backoff_s: float,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """``await call()`` up to ``attempts`` times; return its first result.

    An exception of a ``retry_on`` type is retried, after ``backoff_s * 2 ** (n - 1)`` seconds
    before the ``n``-th retry; once ``attempts`` calls have failed, the last one's exception is
    raised. Any other exception is raised at once.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1 (got {attempts})")
    for attempt in range(attempts - 1):
        try:
            return await call()
        except retry_on:
            pass
        await sleep(backoff_s * 2**attempt)
    return await call()
