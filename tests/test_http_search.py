"""Tests for ``safework.search.http`` (the Search-R1 client) and ``safework.search.retriever``
(the Search-R1 server over any backend).

The client talks to the real retriever app over a small in-memory backend, in-process through
``httpx.ASGITransport`` (no sockets); ``httpx.MockTransport`` plays broken servers and networks.

Run: ``pytest tests/test_http_search.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from safework.errors import ConfigError
from safework.search import retriever
from safework.search.base import (
    BackendContext,
    Document,
    DocumentNotFound,
    SearchBackend,
    SearchError,
    SearchResult,
    SearchTimeout,
    load_backend,
)
from safework.search.http import HTTPBackend
from safework.search.retriever import create_retriever_app

BASE = "http://retriever.test"

DOCS = {
    "paris": ("Paris", "Paris is the capital of France."),
    "berlin": ("Berlin", "Berlin is the capital of Germany."),
    "rhine": ("Rhine", "The Rhine flows through Germany and France."),
}


class MemoryBackend(SearchBackend):
    """Ranks ``DOCS`` by how many query words each text holds; snippets are the first 20 chars."""

    name = "memory"

    def __init__(self, fail: SearchError | None = None) -> None:
        self.fail = fail

    async def search(self, query: str, k: int) -> list[SearchResult]:
        if self.fail:
            raise self.fail
        words = set(query.lower().split())
        scored = [
            (len(words & set(text.lower().rstrip(".").split())), doc_id)
            for doc_id, (_, text) in DOCS.items()
        ]
        ranked = sorted((s, d) for s, d in scored if s)[::-1][:k]
        return [
            SearchResult(
                id=d, title=DOCS[d][0], snippet=DOCS[d][1][:20], url=f"https://w/{d}", score=s
            )
            for s, d in ranked
        ]

    async def read(self, doc_id: str) -> Document:
        if doc_id not in DOCS:
            raise DocumentNotFound(self.name, doc_id)
        title, text = DOCS[doc_id]
        return Document(doc_id, title, text)


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests on to ``inner`` and keeps them."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def transport() -> CountingTransport:
    return CountingTransport(httpx.ASGITransport(app=create_retriever_app(MemoryBackend())))


@pytest.fixture
async def backend(transport: CountingTransport) -> AsyncIterator[HTTPBackend]:
    b = HTTPBackend(BASE, transport=transport, retries=0)
    yield b
    await b.close()


def mock_backend(
    handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> tuple[HTTPBackend, list[httpx.Request]]:
    """An HTTPBackend whose server is ``handler``; the list collects the requests it got."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kw = {"retries": 2, "backoff_s": 0.0, **kw}
    return HTTPBackend(BASE, transport=httpx.MockTransport(record), **kw), seen


# The client against the real retriever app


async def test_search_parses_titles_snippets_and_scores(
    backend: HTTPBackend, transport: CountingTransport
) -> None:
    results = await backend.search("capital of Germany", 2)
    assert results == [
        SearchResult("berlin", "Berlin", "Berlin is the capita", "https://w/berlin", 3.0),
        SearchResult("paris", "Paris", "Paris is the capital", "https://w/paris", 2.0),
    ]
    (request,) = transport.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/retrieve")
    body = json.loads(request.content)
    assert body == {"queries": ["capital of Germany"], "topk": 2, "return_scores": True}


async def test_search_many_is_one_post(backend: HTTPBackend, transport: CountingTransport) -> None:
    results = await backend.search_many(["Paris", "Germany", "nothing matches"], 3)
    assert [[r.id for r in rs] for rs in results] == [["paris"], ["rhine", "berlin"], []]
    assert len(transport.requests) == 1


async def test_nothing_to_ask_sends_nothing(
    backend: HTTPBackend, transport: CountingTransport
) -> None:
    assert await backend.search_many([], 3) == []
    assert await backend.search_many(["Paris"], 0) == [[]]
    assert transport.requests == []


async def test_read_returns_what_a_search_returned(backend: HTTPBackend) -> None:
    await backend.search("Paris", 1)
    assert await backend.read("paris") == Document(
        "paris", "Paris", "Paris is the capital", "https://w/paris"
    )


async def test_read_of_an_unknown_id(backend: HTTPBackend) -> None:
    await backend.search("Paris", 1)
    with pytest.raises(DocumentNotFound, match="no read endpoint"):
        await backend.read("berlin")


async def test_seen_documents_are_a_bounded_lru(transport: CountingTransport) -> None:
    backend = HTTPBackend(BASE, transport=transport, max_seen=1)
    await backend.search("Germany", 2)  # rhine, then berlin: rhine is evicted
    assert (await backend.read("berlin")).title == "Berlin"
    with pytest.raises(DocumentNotFound):
        await backend.read("rhine")
    await backend.close()


@pytest.mark.parametrize(
    "url", [BASE, f"{BASE}/", f"{BASE}/retrieve", f"{BASE}/retrieve/", f"  {BASE}/retrieve  "]
)
async def test_url_with_or_without_retrieve(url: str, transport: CountingTransport) -> None:
    backend = HTTPBackend(url, transport=transport)
    await backend.search("Paris", 1)
    assert str(transport.requests[0].url) == f"{BASE}/retrieve"
    await backend.close()


async def test_backend_errors_pass_through_the_app() -> None:
    app = create_retriever_app(MemoryBackend(fail=SearchTimeout("memory", "too slow")))
    backend = HTTPBackend(BASE, transport=httpx.ASGITransport(app=app), retries=0)
    with pytest.raises(SearchError, match=r"retriever.test/retrieve answered HTTP 504.*too slow"):
        await backend.search("Paris", 1)
    await backend.close()


# The client against broken servers and networks


def answer(body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(200, json=body)


async def test_plain_documents_and_untitled_contents_are_accepted() -> None:
    body = {
        "result": [
            [
                {"id": 7, "contents": "First line\nsecond line"},
                {"document": {"id": "8", "contents": '"Quoted"\nbody'}, "score": 2},
                {"contents": "no id here"},
                {"document": {"id": "9", "contents": ""}, "score": "high"},
            ]
        ]
    }
    backend, _ = mock_backend(answer(body))
    results = await backend.search("q", 5)
    assert [(r.id, r.title, r.snippet, r.score) for r in results] == [
        ("7", "First line", "First line\nsecond line", None),
        ("8", "Quoted", "body", 2.0),
        (results[2].id, "no id here", "no id here", None),
        ("9", "9", "", None),
    ]
    assert results[2].id.startswith("sha1:")
    assert (await backend.read("7")).text == "First line\nsecond line"
    await backend.close()


async def test_more_results_than_asked_are_cut_to_k() -> None:
    docs = [{"id": str(i), "contents": f'"T{i}"\nx'} for i in range(5)]
    backend, _ = mock_backend(answer({"result": [docs]}))
    assert [r.id for r in await backend.search("q", 2)] == ["0", "1"]
    await backend.close()


async def test_http_500_is_a_search_error_with_url_and_status() -> None:
    backend, seen = mock_backend(lambda _: httpx.Response(500, text="index not loaded"))
    with pytest.raises(SearchError, match=r"retriever.test/retrieve answered HTTP 500.*index not"):
        await backend.search("q", 3)
    assert len(seen) == 1  # a server's answer is not retried
    await backend.close()


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="<html>oops</html>"), "malformed JSON"),
        (httpx.Response(200, json={"results": []}), "unexpected response"),
        (httpx.Response(200, json={"result": [[], []]}), "unexpected response"),  # 2 lists for 1
        (httpx.Response(200, json={"result": [[{"document": {"id": "1"}}]]}), "contents"),
        (httpx.Response(200, json={"result": [["just a string"]]}), "unexpected response"),
    ],
)
async def test_garbage_is_a_search_error(response: httpx.Response, message: str) -> None:
    backend, _ = mock_backend(lambda _: response)
    with pytest.raises(SearchError, match=message):
        await backend.search("q", 3)
    await backend.close()


def raising(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return handler


async def test_timeouts_are_retried_then_a_search_timeout() -> None:
    backend, seen = mock_backend(raising(httpx.ConnectTimeout), retries=2, timeout_s=1.5)
    with pytest.raises(SearchTimeout, match=r"did not answer within 1.5s \(3 attempt"):
        await backend.search("q", 3)
    assert len(seen) == 3
    await backend.close()


async def test_a_timeout_then_an_answer_succeeds() -> None:
    calls = iter([raising(httpx.ReadTimeout), answer({"result": [[{"id": "1", "contents": "x"}]]})])
    backend, seen = mock_backend(lambda request: next(calls)(request))
    assert [r.id for r in await backend.search("q", 3)] == ["1"]
    assert len(seen) == 2
    await backend.close()


async def test_connection_refused_is_a_search_error() -> None:
    backend, seen = mock_backend(raising(httpx.ConnectError), retries=1)
    with pytest.raises(SearchError, match=r"cannot reach http://retriever.test/retrieve") as info:
        await backend.search("q", 3)
    assert not isinstance(info.value, SearchTimeout)
    assert len(seen) == 2
    await backend.close()


# Specs


async def test_loader_takes_the_whole_url_and_the_context() -> None:
    ctx = BackendContext(timeout_s=4.0, retries=5)
    backend = load_backend("http:https://search.internal:8443/retrieve", "wiki", ctx)
    assert isinstance(backend, HTTPBackend)
    assert backend.endpoint == "https://search.internal:8443/retrieve"
    assert (backend.name, backend.timeout_s, backend.retries) == ("wiki", 4.0, 5)
    await backend.close()


@pytest.mark.parametrize(
    "spec", ["http:ftp://host/x", "http:localhost:8000", "http:http://", "http:/retrieve"]
)
def test_bad_url_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"http\(s\) URL"):
        load_backend(spec)


# The retriever app


@pytest.fixture
async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_retriever_app(MemoryBackend())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def test_app_speaks_search_r1(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/retrieve", json={"queries": ["Paris"], "topk": 1})
    assert r.status_code == 200
    paris = {"id": "paris", "contents": '"Paris"\nParis is the capital', "url": "https://w/paris"}
    assert r.json() == {"result": [[paris]]}  # no scores unless asked
    r = await app_client.post(
        "/retrieve", json={"queries": ["Paris", "zzz"], "topk": 1, "return_scores": True}
    )
    assert r.json() == {"result": [[{"document": paris, "score": 1.0}], []]}


async def test_app_full_text_reads_documents() -> None:
    app = create_retriever_app(MemoryBackend(), full_text=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        r = await c.post("/retrieve", json={"queries": ["Berlin"], "topk": 1})
    assert r.json()["result"][0][0]["contents"] == '"Berlin"\nBerlin is the capital of Germany.'


async def test_app_health(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/health")
    assert r.json() == {"status": "ok", "backend": "memory"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"queries": "Paris"},
        {"queries": [""]},
        {"queries": ["   "]},
        {"queries": [3]},
        {"queries": ["q"] * 65},
        {"queries": ["q"], "topk": 0},
        {"queries": ["q"], "topk": 51},
        [1, 2],
    ],
)
async def test_app_rejects_bad_bodies(app_client: httpx.AsyncClient, body: Any) -> None:
    r = await app_client.post("/retrieve", json=body)
    assert r.status_code == 422
    assert "detail" in r.json()


async def test_app_rejects_a_body_that_is_not_json(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post(
        "/retrieve", content=b"queries=x", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("error", "status"),
    [(SearchError("memory", "down"), 502), (SearchTimeout("memory", "slow"), 504)],
)
async def test_app_reports_backend_failures(error: SearchError, status: int) -> None:
    app = create_retriever_app(MemoryBackend(fail=error))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        r = await c.post("/retrieve", json={"queries": ["Paris"]})
    assert r.status_code == status
    assert r.json()["error"]["type"] == "search_error"
    assert str(error) in r.json()["error"]["message"]


def test_main_serves_the_spec_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.update(app=app, **kw))
    argv = ["duckduckgo", "--port", "9123", "--option", "safesearch=off", "--retries", "0"]
    assert retriever.main(argv) == 0
    backend = served["app"].state.backend
    assert (backend.name, backend.safesearch, backend.retries) == ("duckduckgo", "off", 0)
    assert (served["host"], served["port"]) == ("127.0.0.1", 9123)


@pytest.mark.parametrize("argv", [["nonsense"], ["duckduckgo", "--option", "region"]])
def test_main_refuses_a_bad_spec(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert retriever.main(argv) == 2
    assert "safework.search.retriever:" in capsys.readouterr().err
