"""A client of a retriever server speaking Search-R1's API, and that API's ``contents`` format.

One ``POST {url}/retrieve`` answers a whole batch::

    {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}
    -> {"result": [[{"document": {"id": "7", "contents": "\\"Title\\"\\ntext"}, "score": 0.9},
                    ...],                                  # the results of q1, best first
                   [...]]}                                 # the results of q2

Entries may also be a plain document dict (no ``score`` wrapper), and ``contents`` may lack
the quoted title line. Search-R1 has no read endpoint, so ``read(id)`` returns the full
contents seen in earlier results of the same tenant (a bounded LRU per tenant, ``scoped``).
Any Search-R1 retriever works, and so does ``python -m safework.search.retriever SPEC``, which
serves this API over any of our backends.

Spec: ``http:URL`` (``http:http://localhost:8000``, with or without ``/retrieve``). The URL
is the operator's (it may well be on loopback); redirects are not followed, an answer is read
up to ``max_response_bytes`` (a bigger one is an error) within ``timeout_s`` per attempt, and
``read`` serves only what this backend returned before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import httpx

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
from .net import SHARED_SCOPE, SeenCache, TenantSeen, TenantView, retry

__all__ = ["HTTPBackend", "format_contents", "load_http", "parse_url", "split_contents"]

MAX_TITLE_CHARS = 100
"""A title taken from an unquoted first line is cut to this length."""
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The largest retriever answer read (a batch of results, each a document's contents)."""


def parse_url(url: str) -> str:
    """The retriever's base url, without a trailing ``/retrieve``; ConfigError for a bad one.

    >>> parse_url("http://localhost:8000/retrieve")
    'http://localhost:8000'
    """
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"search backend 'http' needs an http(s) URL, e.g. http:http://localhost:8000 "
            f"(got {url!r})"
        )
    return url.rstrip("/").removesuffix("/retrieve").rstrip("/")


def format_contents(title: str, text: str) -> str:
    """Search-R1's ``contents``: the title in quotes on the first line, then the text.

    >>> format_contents("Paris", "The capital of France.")
    '"Paris"\\nThe capital of France.'
    """
    return f'"{" ".join(title.split())}"\n{text}'


def split_contents(contents: str, fallback_title: str) -> tuple[str, str]:
    """``contents`` -> ``(title, text)``; without a quoted title line, the title is the first
    line (cut short) or ``fallback_title``, and the text is all of ``contents``.

    >>> split_contents('"Paris"\\nThe capital of France.', "7")
    ('Paris', 'The capital of France.')
    >>> split_contents("Paris is the capital of France.", "7")
    ('Paris is the capital of France.', 'Paris is the capital of France.')
    """
    first = contents.partition("\n")[0].strip()
    if len(first) >= 2 and first.startswith('"') and first.endswith('"'):
        return first[1:-1], contents.partition("\n")[2].strip()
    title = first if len(first) <= MAX_TITLE_CHARS else first[: MAX_TITLE_CHARS - 1] + "…"
    return title or fallback_title, contents.strip()


class HTTPBackend(SearchBackend):
    """Search through a Search-R1 ``/retrieve`` server; one POST per batch of queries."""

    def __init__(
        self,
        url: str,
        name: str = "http",
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        max_seen: int = 4096,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.name = name
        self.base_url = parse_url(url)
        self.endpoint = f"{self.base_url}/retrieve"
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.max_response_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout_s, follow_redirects=False
        )
        self._seen: TenantSeen[Document] = TenantSeen(max_seen)

    def scoped(self, tenant: str) -> SearchBackend:
        return TenantView(self, tenant)

    async def search(self, query: str, k: int) -> list[SearchResult]:
        return (await self.search_many([query], k))[0]

    async def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchResult]]:
        return await self.search_many_for(SHARED_SCOPE, queries, k)

    async def read(self, doc_id: str) -> Document:
        return await self.read_for(SHARED_SCOPE, doc_id)

    async def search_many_for(
        self, tenant: str, queries: Sequence[str], k: int
    ) -> list[list[SearchResult]]:
        """``search_many`` for one tenant: only that tenant may later read what it returns."""
        queries = list(queries)
        if not queries or k < 1:
            return [[] for _ in queries]
        data = await self._post({"queries": queries, "topk": k, "return_scores": True})
        try:
            lists = _result_lists(data, len(queries))
            parsed = [[_parse_entry(entry) for entry in entries[:k]] for entries in lists]
        except ValueError as e:
            raise SearchError(self.name, f"{self.endpoint} sent an unexpected response: {e}") from e
        seen = self._seen.of(tenant)
        return [[_remember(seen, doc, score) for doc, score in entries] for entries in parsed]

    async def read_for(self, tenant: str, doc_id: str) -> Document:
        """``read`` for one tenant: a document that tenant's searches returned."""
        doc = self._seen.of(tenant).get(doc_id)
        if doc is None:
            raise DocumentNotFound(
                self.name,
                f"unknown id {doc_id!r}: a Search-R1 retriever has no read endpoint, "
                "so only documents from earlier results can be read",
            )
        return doc

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON answer, after retries on network errors and timeouts."""
        attempts = self.retries + 1
        try:
            status, body = await retry(
                lambda: self._attempt(payload),
                attempts,
                self.backoff_s,
                retry_on=httpx.TransportError,
            )
        except httpx.TransportError as e:
            error = e
        else:
            return self._decode(status, body)
        if isinstance(error, httpx.TimeoutException):
            raise SearchTimeout(
                self.name,
                f"{self.endpoint} did not answer within {self.timeout_s:g}s "
                f"({attempts} attempt(s))",
            )
        raise SearchError(
            self.name,
            f"cannot reach {self.endpoint}: {type(error).__name__}: {error} "
            f"({attempts} attempt(s))",
        )

    async def _attempt(self, payload: dict[str, Any]) -> tuple[int, bytes]:
        """One POST: the status and at most ``max_response_bytes`` of the body, all within
        ``timeout_s`` (httpx's own timeout is per network operation, not per answer)."""
        request = self._client.build_request("POST", self.endpoint, json=payload)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.send(request, stream=True)
                try:
                    body = await self._body(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout("no complete answer in time", request=request) from None
        return response.status_code, body

    async def _body(self, response: httpx.Response) -> bytes:
        if response.is_stream_consumed:  # built in memory (a mock transport)
            chunks = [response.content]
        else:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_response_bytes:
                    break
        body = b"".join(chunks)
        if len(body) > self.max_response_bytes:
            raise SearchError(
                self.name,
                f"{self.endpoint} sent more than {self.max_response_bytes} bytes; not read",
            )
        return body

    def _decode(self, status: int, body: bytes) -> Any:
        text = body[:200].decode("utf-8", "replace")
        if status != 200:
            raise SearchError(self.name, f"{self.endpoint} answered HTTP {status}: {text!r}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise SearchError(
                self.name, f"{self.endpoint} sent malformed JSON (HTTP 200): {text[:100]!r}"
            ) from e


def _remember(seen: SeenCache[Document], doc: Document, score: float | None) -> SearchResult:
    seen.add(doc.id, doc)
    return SearchResult(id=doc.id, title=doc.title, snippet=doc.text, url=doc.url, score=score)


def _result_lists(data: Any, n: int) -> list[list[Any]]:
    lists = data.get("result") if isinstance(data, dict) else None
    if (
        not isinstance(lists, list)
        or len(lists) != n
        or any(not isinstance(x, list) for x in lists)
    ):
        raise ValueError(f'expected {{"result": [...]}} holding {n} list(s) of results')
    return lists


def _parse_entry(entry: Any) -> tuple[Document, float | None]:
    """``{"document": {...}, "score": s}`` or a plain document -> (Document, score)."""
    doc = entry.get("document", entry) if isinstance(entry, dict) else None
    if not isinstance(doc, dict) or not isinstance(doc.get("contents"), str):
        raise ValueError(f"a result without a document and its contents: {str(entry)[:100]}")
    contents: str = doc["contents"]
    doc_id = doc.get("id")
    doc_id = str(doc_id) if doc_id is not None else _content_id(contents)
    title, text = split_contents(contents, doc_id)
    url = doc.get("url") if isinstance(doc.get("url"), str) else None
    raw = entry.get("score")
    score = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    return Document(id=doc_id, title=title, text=text, url=url), score


def _content_id(contents: str) -> str:
    """An id for a document sent without one, stable across searches."""
    return "sha1:" + hashlib.sha1(contents.encode()).hexdigest()[:16]


def load_http(name: str, arg: str, ctx: BackendContext) -> HTTPBackend:
    """The ``http:URL`` spec: ``arg`` is the retriever's URL."""
    return HTTPBackend(arg, name, timeout_s=ctx.timeout_s, retries=ctx.retries)
