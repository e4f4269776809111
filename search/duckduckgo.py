"""Web search through DuckDuckGo (the ``ddgs`` package): no API key, no index to build.

``ddgs`` is synchronous, so every call runs in a worker thread under ``asyncio.wait_for`` and
the server's event loop never waits on the network. The threads are the backend's own
(``threads.ThreadSlots``, ``threads`` of them, 4 by default), not the loop's default pool: a
call that timed out keeps its slot until ``ddgs``'s own timeout (the same number of seconds,
rounded up) ends its thread, and when every slot is taken a new search waits at most
``slot_wait_s`` and then fails fast with a ``SearchError`` ("busy"), which the search
strategy answers without. Timeouts and rate limits are retried with a short exponential
backoff (``BackendContext.retries`` extra attempts); any other ``ddgs`` failure, such as a
machine without network, is a ``SearchError`` at once.

``read(url)`` fetches a page's text, but only for urls this backend returned in earlier
results to the same tenant (a bounded LRU per tenant, ``scoped``), so a model cannot make the
server fetch arbitrary addresses nor read what another tenant found. The fetch itself is
``webfetch.SafeFetcher`` (not ``ddgs``, whose client follows up to 20 redirects anywhere):
every hop resolved, checked against private, loopback and metadata addresses, and pinned;
size and time capped.

Spec: ``duckduckgo``; ``BackendContext.options``: ``region`` (default ``wt-wt``, no region)
and ``safesearch`` (``on``, ``moderate`` (default) or ``off``).

Simplification: ``wait_for`` cannot stop a thread, so a call that timed out keeps its thread
(and its slot) until ``ddgs``'s own timeout ends it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from safework.errors import ConfigError

from .base import (
    BackendContext,
    Document,
    DocumentNotFound,
    SearchBackend,
    SearchError,
    SearchResult,
    SearchTimeout,
)
from .net import SHARED_SCOPE, TenantSeen, TenantView, retry
from .threads import PoolBusy, ThreadSlots
from .webfetch import FetchRefused, FetchTimeout, SafeFetcher

__all__ = ["DuckDuckGoBackend", "load_duckduckgo"]

SAFESEARCH = ("on", "moderate", "off")
RETRYABLE = (TimeoutError, TimeoutException, RatelimitException)
"""What ``ddgs`` raises when a call may succeed if tried again: a timeout or a rate limit."""
DEFAULT_THREADS = 4
"""Threads for ``ddgs`` calls per backend; a hung call holds one until its own timeout."""
SLOT_WAIT_S = 1.0
"""How long a search waits for a free thread before it fails as busy."""
NO_RESULTS = "No results found."
"""The message ``ddgs`` raises ``DDGSException`` with when a search simply matched nothing."""


class DDGSClient(Protocol):
    """The part of ``ddgs.DDGS`` this backend uses (tests pass a fake with these methods)."""

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


DDGSFactory = Callable[..., DDGSClient]
"""Called as ``factory(timeout=seconds)``; ``ddgs.DDGS`` itself by default."""


def _real_ddgs() -> DDGSFactory:
    from ddgs import DDGS

    return DDGS


class DuckDuckGoBackend(SearchBackend):
    """``search`` asks DuckDuckGo; ``read`` fetches one of the pages it returned."""

    def __init__(
        self,
        name: str = "duckduckgo",
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        region: str = "wt-wt",
        safesearch: str = "moderate",
        ddgs_class: DDGSFactory | None = None,
        backoff_s: float = 0.5,
        max_seen: int = 1024,
        fetcher: SafeFetcher | None = None,
        threads: int = DEFAULT_THREADS,
        slot_wait_s: float = SLOT_WAIT_S,
    ) -> None:
        if safesearch not in SAFESEARCH:
            raise ConfigError(
                f"duckduckgo option safesearch must be one of {', '.join(SAFESEARCH)} "
                f"(got {safesearch!r})"
            )
        self.name = name
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.region = region
        self.safesearch = safesearch
        self.backoff_s = backoff_s
        self._ddgs = ddgs_class or _real_ddgs()
        self._seen: TenantSeen[SearchResult] = TenantSeen(max_seen)
        self._fetcher = fetcher or SafeFetcher(timeout_s=timeout_s)
        self._threads = ThreadSlots(threads, f"{name}-ddgs")
        self.slot_wait_s = slot_wait_s

    def scoped(self, tenant: str) -> SearchBackend:
        return TenantView(self, tenant)

    async def search(self, query: str, k: int) -> list[SearchResult]:
        return await self.search_for(SHARED_SCOPE, query, k)

    async def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchResult]]:
        return await self.search_many_for(SHARED_SCOPE, queries, k)

    async def read(self, doc_id: str) -> Document:
        return await self.read_for(SHARED_SCOPE, doc_id)

    async def search_many_for(
        self, tenant: str, queries: Sequence[str], k: int
    ) -> list[list[SearchResult]]:
        """The queries concurrently, but never more at once than the backend has threads."""
        gate = asyncio.Semaphore(self._threads.size)

        async def one(query: str) -> list[SearchResult]:
            async with gate:
                return await self.search_for(tenant, query, k)

        return list(await asyncio.gather(*(one(q) for q in queries)))

    async def search_for(self, tenant: str, query: str, k: int) -> list[SearchResult]:
        """``search`` for one tenant: only that tenant may later read what it returns."""
        if k < 1 or not query.strip():
            return []
        try:
            rows = await self._call(
                "search",
                lambda client: client.text(
                    query, max_results=k, region=self.region, safesearch=self.safesearch
                ),
            )
        except _NoResults:
            return []
        results = [r for r in map(_to_result, rows) if r is not None][:k]
        seen = self._seen.of(tenant)
        for result in results:
            seen.add(result.id, result)
        return results

    async def read_for(self, tenant: str, doc_id: str) -> Document:
        """``read`` for one tenant: a url that tenant's searches returned, else not found."""
        seen = self._seen.of(tenant).get(doc_id)
        if seen is None:
            raise DocumentNotFound(
                self.name, f"unknown url {doc_id!r}: only urls from earlier results can be read"
            )
        try:
            page = await self._fetcher.fetch(doc_id)
        except FetchTimeout as e:
            raise SearchTimeout(self.name, f"cannot fetch the page: {e}") from None
        except FetchRefused as e:
            raise SearchError(self.name, f"cannot fetch the page: {e}") from None
        return Document(id=doc_id, title=seen.title, text=page.text, url=doc_id)

    async def close(self) -> None:
        self._threads.close()
        await self._fetcher.close()

    async def _call(self, what: str, work: Callable[[DDGSClient], Any]) -> Any:
        """``work(client)`` in a thread, with the timeout and retries; ddgs errors mapped."""
        client_timeout = max(1, math.ceil(self.timeout_s))
        attempts = self.retries + 1

        def call() -> Any:
            return work(self._ddgs(timeout=client_timeout))

        async def attempt() -> Any:
            running = self._threads.run(call, self.slot_wait_s)
            return await asyncio.wait_for(running, self.timeout_s)

        try:
            return await retry(attempt, attempts, self.backoff_s, retry_on=RETRYABLE)
        except PoolBusy as e:
            raise SearchError(self.name, f"busy, try again shortly: {e}") from None
        except RETRYABLE as e:
            last = e
        except DDGSException as e:
            if what == "search" and str(e) == NO_RESULTS:
                raise _NoResults from None
            raise SearchError(self.name, _failure(what, e)) from e
        where = "cannot fetch the page" if what == "read" else "cannot reach DuckDuckGo"
        if isinstance(last, RatelimitException):
            raise SearchError(
                self.name, f"{where}: rate limited ({last}) after {attempts} attempt(s)"
            )
        message = f"no answer within {self.timeout_s:g}s after {attempts} attempt(s)"
        raise SearchTimeout(self.name, f"{where}: {message} (no network?)")


class _NoResults(Exception):
    """``ddgs`` reports an empty result list as an error; this turns it back into ``[]``."""


def _failure(what: str, error: Exception) -> str:
    if what == "read":
        return f"cannot fetch the page: {error}"
    return f"cannot reach DuckDuckGo: {error} (no network?)"


def _to_result(row: dict[str, Any]) -> SearchResult | None:
    url = row.get("href") or row.get("url")
    if not isinstance(url, str) or not url:
        return None
    title = str(row.get("title") or url)
    return SearchResult(id=url, title=title, snippet=str(row.get("body") or ""), url=url)


def load_duckduckgo(name: str, arg: str, ctx: BackendContext) -> DuckDuckGoBackend:
    """The ``duckduckgo`` spec (``arg`` is empty: ``check_spec`` refuses an argument)."""
    return DuckDuckGoBackend(
        name,
        timeout_s=ctx.timeout_s,
        retries=ctx.retries,
        region=ctx.options.get("region", "wt-wt"),
        safesearch=ctx.options.get("safesearch", "moderate"),
    )
