"""Tests for ``safework.search.duckduckgo``: web search through ``ddgs``, faked at its boundary.

``FakeDDGS`` stands in for the ``ddgs.DDGS`` class the backend is given: it plays scripted
answers (result rows or ``ddgs`` exceptions) and records every call. The threads, timeouts,
retries, error mapping and the read allow-list run for real. One test uses the real ``ddgs``
on a machine without network and expects the clear "no network?" error (skipped when online).

Run: ``pytest tests/test_duckduckgo.py``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from safework.errors import ConfigError
from safework.search.base import (
    BackendContext,
    DocumentNotFound,
    SearchError,
    SearchResult,
    SearchTimeout,
    load_backend,
)
from safework.search.duckduckgo import DuckDuckGoBackend
from safework.search.webfetch import SafeFetcher

Answer = list[dict[str, Any]] | Exception

ROWS = [
    {"title": f"Page {i}", "href": f"https://example.org/{i}", "body": f"About {i}."}
    for i in range(5)
]


@dataclass
class FakeDDGS:
    """Stands in for ``ddgs.DDGS``: ``text`` plays ``answers`` in order (the last one repeats);
    ``delay_s`` makes every call slow. Pages are read through ``SafeFetcher``, faked at its
    transport (``pages_fetcher``)."""

    answers: list[Answer] = field(default_factory=lambda: [ROWS])
    delay_s: float = 0.0
    timeouts: list[int] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, timeout: int) -> FakeDDGS:
        self.timeouts.append(timeout)
        return self

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.searches.append({"query": query, **kwargs})
        time.sleep(self.delay_s)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(fake: FakeDDGS, **kw: Any) -> DuckDuckGoBackend:
    kw = {"timeout_s": 2.0, "retries": 2, "backoff_s": 0.0, **kw}
    return DuckDuckGoBackend(ddgs_class=fake, **kw)


async def test_results_map_rows_and_pass_options() -> None:
    fake = FakeDDGS()
    backend = make(fake, timeout_s=2.5, region="us-en", safesearch="off")
    results = await backend.search("pages", 5)
    assert results[0] == SearchResult(
        id="https://example.org/0",
        title="Page 0",
        snippet="About 0.",
        url="https://example.org/0",
    )
    assert [r.id for r in results] == [row["href"] for row in ROWS]
    assert fake.searches == [
        {"query": "pages", "max_results": 5, "region": "us-en", "safesearch": "off"}
    ]
    assert fake.timeouts == [3]  # ddgs takes whole seconds: rounded up


async def test_k_is_respected_even_when_ddgs_returns_more() -> None:
    fake = FakeDDGS()
    results = await make(fake).search("pages", 2)
    assert [r.title for r in results] == ["Page 0", "Page 1"]
    assert fake.searches[0]["max_results"] == 2


async def test_rows_without_url_are_skipped() -> None:
    fake = FakeDDGS(answers=[[{"title": "no link", "body": "x"}, ROWS[0]]])
    assert [r.id for r in await make(fake).search("q", 5)] == [ROWS[0]["href"]]


async def test_empty_results() -> None:
    assert await make(FakeDDGS(answers=[[]])).search("nothing", 3) == []
    # ddgs reports "nothing matched" as an exception; that is no error for us
    fake = FakeDDGS(answers=[DDGSException("No results found.")])
    assert await make(fake).search("nothing", 3) == []
    assert len(fake.searches) == 1
    assert await make(FakeDDGS()).search("   ", 3) == []
    assert await make(FakeDDGS()).search("q", 0) == []


async def test_retries_a_ddgs_timeout_then_succeeds() -> None:
    fake = FakeDDGS(answers=[TimeoutException("timed out"), ROWS])
    results = await make(fake, retries=1).search("q", 3)
    assert len(results) == 3
    assert len(fake.searches) == 2


async def test_exhausted_retries_raise_search_timeout() -> None:
    fake = FakeDDGS(answers=[TimeoutException("timed out")])
    with pytest.raises(SearchTimeout, match=r"no answer within 2s after 3 attempt") as info:
        await make(fake, retries=2).search("q", 3)
    assert "cannot reach DuckDuckGo" in str(info.value)
    assert len(fake.searches) == 3


async def test_a_call_slower_than_the_timeout_is_abandoned() -> None:
    fake = FakeDDGS(delay_s=0.3)
    started = time.monotonic()
    with pytest.raises(SearchTimeout):
        await make(fake, timeout_s=0.05, retries=1).search("q", 3)
    assert time.monotonic() - started < 0.3  # did not wait for the slow threads
    assert len(fake.searches) == 2


async def test_rate_limit_is_retried() -> None:
    fake = FakeDDGS(answers=[RatelimitException("202 Ratelimit"), ROWS])
    assert len(await make(fake).search("q", 2)) == 2
    assert len(fake.searches) == 2


async def test_rate_limit_after_all_retries_is_a_search_error_not_a_timeout() -> None:
    fake = FakeDDGS(answers=[RatelimitException("202 Ratelimit")])
    with pytest.raises(SearchError, match="rate limited") as info:
        await make(fake, retries=1).search("q", 2)
    assert not isinstance(info.value, SearchTimeout)
    assert len(fake.searches) == 2


async def test_other_ddgs_errors_are_a_clear_search_error_without_retry() -> None:
    fake = FakeDDGS(answers=[DDGSException("DNSError: error resolving DNS")])
    with pytest.raises(SearchError, match=r"cannot reach DuckDuckGo: DNSError.*\(no network\?\)"):
        await make(fake).search("q", 2)
    assert len(fake.searches) == 1


def pages_fetcher(pages: dict[str, str | int], fetched: list[str]) -> SafeFetcher:
    """A ``SafeFetcher`` whose network serves ``pages`` (text, or an HTTP status), every name
    resolving to one public address; ``fetched`` records the urls asked for."""

    def handler(request: httpx.Request) -> httpx.Response:
        url = f"https://{request.headers['host']}{request.url.raw_path.decode()}"
        fetched.append(url)
        page = pages.get(url, 404)
        if isinstance(page, int):
            return httpx.Response(page)
        return httpx.Response(200, text=page, headers={"content-type": "text/plain"})

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    return SafeFetcher(transport=httpx.MockTransport(handler), resolver=resolve)


async def test_read_a_returned_url() -> None:
    url = ROWS[1]["href"]
    fetched: list[str] = []
    backend = make(FakeDDGS(), fetcher=pages_fetcher({url: "# Page 1\n\nThe whole page."}, fetched))
    await backend.search("q", 3)
    doc = await backend.read(url)
    assert (doc.id, doc.title, doc.url) == (url, "Page 1", url)
    assert doc.text == "# Page 1\n\nThe whole page."
    assert fetched == [url]


async def test_read_refuses_urls_it_did_not_return() -> None:
    fetched: list[str] = []
    backend = make(FakeDDGS(), fetcher=pages_fetcher({}, fetched))
    await backend.search("q", 2)
    with pytest.raises(DocumentNotFound, match="only urls from earlier results"):
        await backend.read("http://169.254.169.254/")
    with pytest.raises(DocumentNotFound):
        await backend.read(ROWS[4]["href"])  # a row beyond k was never returned
    assert fetched == []


async def test_seen_urls_are_a_bounded_lru() -> None:
    fetched: list[str] = []
    fetcher = pages_fetcher({row["href"]: "text" for row in ROWS}, fetched)
    backend = make(FakeDDGS(), max_seen=2, fetcher=fetcher)
    await backend.search("q", 3)  # remembers 0, 1, 2; 0 is evicted
    with pytest.raises(DocumentNotFound):
        await backend.read(ROWS[0]["href"])
    assert (await backend.read(ROWS[2]["href"])).text == "text"


async def test_a_page_that_cannot_be_fetched_is_a_search_error() -> None:
    url = ROWS[0]["href"]
    backend = make(FakeDDGS(), fetcher=pages_fetcher({url: 404}, []))
    await backend.search("q", 1)
    with pytest.raises(SearchError, match=r"cannot fetch the page.*HTTP 404"):
        await backend.read(url)


def test_loader_takes_options_from_the_context() -> None:
    ctx = BackendContext(timeout_s=3.0, retries=1, options={"region": "de-de", "safesearch": "on"})
    backend = load_backend("duckduckgo", "web", ctx)
    assert isinstance(backend, DuckDuckGoBackend)
    assert (backend.name, backend.timeout_s, backend.retries) == ("web", 3.0, 1)
    assert (backend.region, backend.safesearch) == ("de-de", "on")
    default = load_backend("duckduckgo")
    assert isinstance(default, DuckDuckGoBackend)
    assert (default.name, default.region, default.safesearch) == ("duckduckgo", "wt-wt", "moderate")


def test_loader_rejects_a_bad_safesearch() -> None:
    with pytest.raises(ConfigError, match="safesearch"):
        load_backend("duckduckgo", ctx=BackendContext(options={"safesearch": "strict"}))


def _online() -> bool:
    try:
        with socket.create_connection(("duckduckgo.com", 443), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.timeout(30)
async def test_real_ddgs_offline_gives_a_clear_error() -> None:
    if _online():
        pytest.skip("DuckDuckGo is reachable: this test is for machines without network")
    backend = DuckDuckGoBackend(timeout_s=5.0, retries=0)
    with pytest.raises(SearchError, match=r"cannot reach DuckDuckGo.*\(no network\?\)"):
        await backend.search("python programming language", 3)
