"""Finding 9 of issue 17: what a tenant's searches returned is readable by that tenant only.

The network backends serve ``read`` from what their searches returned (so a model cannot
fetch arbitrary URLs). That memory was one cache for everyone: tenant B could read, and so
confirm, a page or document tenant A's searches had found. Each tenant's search session now
gets ``backend.scoped(tenant)``, a view with its own cache (``search/net.py``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from safework.search.base import DocumentNotFound, SearchBackend
from safework.search.duckduckgo import DuckDuckGoBackend
from safework.search.http import HTTPBackend
from safework.search.net import TenantSeen
from safework.search.webfetch import SafeFetcher
from safework.server.chat.protocol import ChatCompletionRequest
from safework.server.chat.serving import ChatServing
from safework.server.metrics import ServerMetrics
from safework.server.search import SearchService, SearchSettings

from .fakes import BagOfWordsEncoder, FakeEngine

URL = "https://example.com/private-findings"


class DDGS:
    def __init__(self, timeout: int) -> None:
        pass

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"title": "Findings", "href": URL, "body": "b"}]


def _duckduckgo() -> DuckDuckGoBackend:
    def page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="secret", headers={"content-type": "text/plain"})

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    fetcher = SafeFetcher(transport=httpx.MockTransport(page), resolver=resolve)
    return DuckDuckGoBackend(ddgs_class=DDGS, fetcher=fetcher)


def _retriever() -> HTTPBackend:
    def answer(request: httpx.Request) -> httpx.Response:
        doc = {"document": {"id": "7", "contents": '"Findings"\nsecret'}, "score": 1.0}
        return httpx.Response(200, json={"result": [[doc]]})

    return HTTPBackend("http://retriever.test", transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(("make", "doc_id"), [(_duckduckgo, URL), (_retriever, "7")])
async def test_one_tenants_results_are_not_readable_by_another(make: Any, doc_id: str) -> None:
    backend: SearchBackend = make()
    alice, bob = backend.scoped("alice"), backend.scoped("bob")
    (result,) = await alice.search("findings", 1)
    assert result.id == doc_id
    with pytest.raises(DocumentNotFound):
        await bob.read(doc_id)
    with pytest.raises(DocumentNotFound):  # nor without a tenant (the shared scope)
        await backend.read(doc_id)
    assert (await alice.read(doc_id)).text == "secret"
    await bob.search("findings", 1)  # bob finding it himself may read it
    assert (await bob.read(doc_id)).text == "secret"
    await backend.close()


def test_the_tenant_caches_are_bounded() -> None:
    seen: TenantSeen[int] = TenantSeen(max_size=2, max_tenants=2)
    for tenant in ("a", "b", "c"):
        seen.of(tenant).add("x", 1)
    assert seen.of("a").get("x") is None  # the least recent tenant was dropped
    assert seen.of("c").get("x") == 1


def test_a_chat_search_session_reads_as_its_tenant() -> None:
    backend = _duckduckgo()
    service = SearchService({"web": backend}, SearchSettings(), encoder=BagOfWordsEncoder())
    serving = ChatServing(FakeEngine(), ServerMetrics(), search=service)
    request = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "What was found?"}]}
    )
    plan = serving._plan(request, "search", [], "alice")
    (session,) = plan.searches
    assert session.backend.tenant == "alice"  # type: ignore[attr-defined]
    assert session.backend.name == "duckduckgo"
