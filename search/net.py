"""Small pieces the network backends (``duckduckgo.py``, ``http.py``) share.

- ``SeenCache``: a bounded LRU of what a backend returned, which is what it lets ``read`` serve.
- ``TenantSeen``: one ``SeenCache`` per tenant (a bounded LRU of tenants), and ``TenantView``,
  the backend a tenant's search session gets (``SearchBackend.scoped``): its ``read`` serves
  only what that tenant's own searches returned.
- ``retry``: await a call again after a retryable error, with exponential backoff.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from .base import Document, SearchBackend, SearchResult

__all__ = ["SHARED_SCOPE", "SeenCache", "TenantScoped", "TenantSeen", "TenantView", "retry"]

SHARED_SCOPE = ""
"""The scope of calls made without a tenant (the CLI, the retriever server, calibration)."""

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


class TenantSeen(Generic[V]):
    """A ``SeenCache`` of ``max_size`` per tenant, for the ``max_tenants`` most recent ones."""

    def __init__(self, max_size: int, max_tenants: int = 256) -> None:
        self.max_size = max_size
        self._tenants: SeenCache[SeenCache[V]] = SeenCache(max_tenants)

    def of(self, tenant: str) -> SeenCache[V]:
        seen = self._tenants.get(tenant)
        if seen is None:
            seen = SeenCache(self.max_size)
            self._tenants.add(tenant, seen)
        return seen


class TenantScoped(Protocol):
    """What a backend offers ``TenantView``: its calls with the tenant made explicit."""

    name: str

    async def search_many_for(
        self, tenant: str, queries: Sequence[str], k: int
    ) -> list[list[SearchResult]]: ...

    async def read_for(self, tenant: str, doc_id: str) -> Document: ...


class TenantView(SearchBackend):
    """A network backend as one tenant sees it (shares its connections, not its memory)."""

    def __init__(self, backend: TenantScoped, tenant: str) -> None:
        self.backend = backend
        self.tenant = tenant
        self.name = backend.name

    async def search(self, query: str, k: int) -> list[SearchResult]:
        return (await self.backend.search_many_for(self.tenant, [query], k))[0]

    async def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchResult]]:
        return await self.backend.search_many_for(self.tenant, queries, k)

    async def read(self, doc_id: str) -> Document:
        return await self.backend.read_for(self.tenant, doc_id)

    async def close(self) -> None:
        """Nothing: the backend itself is closed by its owner."""


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
