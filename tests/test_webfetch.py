"""Finding 5 of issue 17: a web read cannot be pointed at the server's own network.

``DuckDuckGoBackend.read`` used ``ddgs``'s client, which checked nothing and followed up to 20
redirects anywhere: a result page that redirected to ``http://169.254.169.254/`` had the
server fetch its cloud credentials. ``SafeFetcher`` (``search/webfetch.py``) now resolves and
checks every hop, pins the connection to the address it checked, and caps size and time.
The network is ``httpx.MockTransport`` and a resolver function: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from safework.search.base import SearchError
from safework.search.duckduckgo import DuckDuckGoBackend
from safework.search.webfetch import (
    FetchRefused,
    FetchTimeout,
    SafeFetcher,
    blocked_reason,
    html_to_text,
)

PUBLIC = "93.184.216.34"
DNS = {
    "example.com": [PUBLIC],
    "redirector.example": [PUBLIC],
    "rebind.example": [PUBLIC, "127.0.0.1"],
    "internal.example": ["10.1.2.3"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "mapped.example": ["::ffff:169.254.169.254"],
}


class Net:
    """A fake network: ``routes`` maps a path to a response factory; every request and every
    DNS lookup is recorded."""

    def __init__(self, routes: dict[str, Any] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []
        self.lookups: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(request.url.path)
        if route is None:
            return httpx.Response(200, html="<html><title>Hi</title><p>Hello</p></html>")
        return route(request) if callable(route) else route

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in DNS:
            raise OSError("no such host")
        return DNS[host]

    def fetcher(self, **kw: Any) -> SafeFetcher:
        return SafeFetcher(transport=httpx.MockTransport(self.handler), resolver=self.resolve, **kw)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",  # decimal
        "http://0x7f000001/",  # hex
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",  # octal
        "http://0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/",  # the metadata address, mapped
        "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
        "http://100.100.100.200/",  # Alibaba metadata (shared address space)
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://localhost/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://router/",
        "http://internal.example/",  # a public-looking name with a private address
        "http://rebind.example/",  # one public and one loopback answer
        "http://mapped.example/",
        "file:///etc/passwd",
        "ftp://example.com/",
        "gopher://example.com/",
    ],
)
async def test_private_loopback_and_metadata_addresses_are_refused(url: str) -> None:
    net = Net()
    with pytest.raises(FetchRefused):
        await net.fetcher().fetch(url)
    assert net.requests == []


async def test_a_redirect_to_the_metadata_service_is_refused_at_that_hop() -> None:
    to_metadata = httpx.Response(302, headers={"location": "http://169.254.169.254/latest/"})
    net = Net({"/go": to_metadata})
    with pytest.raises(FetchRefused, match="metadata"):
        await net.fetcher().fetch("https://redirector.example/go")
    assert len(net.requests) == 1  # the first hop only


@pytest.mark.parametrize(
    "location",
    ["http://localhost:8000/admin", "http://[::1]/", "//127.0.0.1/x", "http://2130706433/"],
)
async def test_redirects_to_loopback_in_any_spelling_are_refused(location: str) -> None:
    net = Net({"/go": httpx.Response(301, headers={"location": location})})
    with pytest.raises(FetchRefused):
        await net.fetcher().fetch("http://redirector.example/go")
    assert len(net.requests) == 1


async def test_redirects_are_followed_by_the_fetcher_and_bounded() -> None:
    def hop(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("n", "0"))
        return httpx.Response(302, headers={"location": f"/loop?n={n + 1}"})

    net = Net({"/loop": hop, "/a": httpx.Response(302, headers={"location": "/b"})})
    page = await net.fetcher().fetch("http://example.com/a")  # /b is the default page
    assert (page.url, page.title, page.text) == ("http://example.com/b", "Hi", "Hello")
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        await net.fetcher().fetch("http://example.com/loop")
    assert len(net.requests) == 2 + 6


async def test_the_connection_is_pinned_to_the_checked_address() -> None:
    net = Net()
    await net.fetcher().fetch("https://example.com/page?q=1")
    (request,) = net.requests
    assert request.url.host == PUBLIC  # connected to the address checked, no second lookup
    assert request.headers["host"] == "example.com"
    assert request.extensions["sni_hostname"] == "example.com"  # TLS still checks the name
    assert net.lookups == ["example.com"]
    await net.fetcher().fetch("http://v6.example/")
    assert net.requests[-1].url.host == "2606:2800:220:1:248:1893:25c8:1946"


async def test_a_50_mb_page_is_read_only_up_to_the_cap() -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50 * 16):
            sent += 65_536
            yield b"a" * 65_536

    def big(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=body())

    net = Net({"/big": big})
    fetcher = net.fetcher(max_bytes=1_000_000, max_text_chars=1_000_000)
    page = await fetcher.fetch("http://example.com/big")
    assert page.truncated
    assert len(page.text) == 1_000_000
    assert sent < 1_200_000  # the rest was never read


async def test_a_gzip_bomb_is_inflated_only_up_to_the_cap() -> None:
    bomb = gzip.compress(b"a" * 50_000_000)  # 50 MB in about 50 kB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(bomb), 4096):
            yield bomb[i : i + 4096]

    def gzipped(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/plain", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=chunks())

    net = Net({"/bomb": gzipped})
    page = await net.fetcher(max_bytes=100_000).fetch("http://example.com/bomb")
    assert page.truncated
    assert len(page.text) == 100_000


@pytest.mark.timeout(10)
async def test_a_page_that_drips_forever_times_out() -> None:
    async def drip() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.05)
            yield b"a"

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=drip())

    net = Net({"/slow": slow})
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(FetchTimeout):
        await net.fetcher(timeout_s=0.5).fetch("http://example.com/slow")
    assert loop.time() - start < 2.0


async def test_binary_pages_are_refused() -> None:
    png = httpx.Response(200, headers={"content-type": "image/png"}, content=b"\x89PNG")
    net = Net({"/x.png": png})
    with pytest.raises(FetchRefused, match="not a text page"):
        await net.fetcher().fetch("http://example.com/x.png")


def test_html_becomes_text_without_scripts() -> None:
    html = (
        "<html><head><title> The  Page </title><style>p{}</style></head><body>"
        "<script>alert(1)</script><h1>Head</h1><p>One <b>two</b></p><p>Three</p></body></html>"
    )
    assert html_to_text(html) == ("The Page", "Head\nOne two\nThree")


def test_public_addresses_pass() -> None:
    for address in (PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert blocked_reason(ipaddress.ip_address(address)) is None


async def test_duckduckgo_read_goes_through_the_safe_fetcher() -> None:
    class DDGS:
        def __init__(self, timeout: int) -> None:
            pass

        def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            return [{"title": "Bait", "href": "https://redirector.example/go", "body": "b"}]

    to_metadata = httpx.Response(302, headers={"location": "http://169.254.169.254/"})
    net = Net({"/go": to_metadata})
    backend = DuckDuckGoBackend(ddgs_class=DDGS, fetcher=net.fetcher())
    (result,) = await backend.search("q", 1)
    with pytest.raises(SearchError, match="cloud metadata"):
        await backend.read(result.id)
    assert [r.url.path for r in net.requests] == ["/go"]


# ------------------------------------------------------------ the retriever backend (http.py)


def _retriever(handler: Any, **kw: Any) -> Any:
    from safework.search.http import HTTPBackend

    return HTTPBackend("http://retriever.test", transport=httpx.MockTransport(handler), **kw)


async def test_a_retriever_answer_over_the_cap_is_not_read_whole() -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(20 * 16):
            sent += 65_536
            yield b" " * 65_536

    backend = _retriever(lambda _: httpx.Response(200, content=body()), retries=0)
    backend.max_response_bytes = 1_000_000
    with pytest.raises(SearchError, match="more than 1000000 bytes"):
        await backend.search("q", 3)
    assert sent < 1_200_000
    await backend.close()


@pytest.mark.timeout(10)
async def test_a_retriever_that_drips_times_out_per_attempt() -> None:
    async def drip() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.05)
            yield b" "

    backend = _retriever(lambda _: httpx.Response(200, content=drip()), timeout_s=0.3, retries=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(SearchError, match="did not answer within"):
        await backend.search("q", 3)
    assert loop.time() - start < 2.0
    await backend.close()


async def test_a_retriever_redirect_is_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://169.254.169.254/"})

    backend = _retriever(handler, retries=0)
    with pytest.raises(SearchError, match="HTTP 302"):
        await backend.search("q", 3)
    assert seen == ["http://retriever.test/retrieve"]
    await backend.close()
