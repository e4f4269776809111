"""Fetching a web page for ``read`` without turning the server against its own network.

A web backend's ``read(url)`` makes the server fetch a URL a model chose (from a search result
a web page can influence), so it is a server-side request forgery risk: a redirect or a DNS
name can point at ``127.0.0.1``, the LAN, or a cloud metadata service. ``SafeFetcher`` :

- accepts only ``http`` and ``https`` URLs;
- resolves the host itself and checks **every** address it gets (``blocked_reason``):
  loopback, private, link-local (``169.254.169.254``), multicast, reserved, unspecified,
  shared (CGNAT, ``100.100.100.200``) and any other non-global address are refused, IPv4 and
  IPv6 alike, including IPv4 inside IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64) and the
  numeric spellings resolvers accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``); so are
  names that only mean something inside a network (``localhost``, ``*.internal``...);
- **pins** the connection to the address it checked: the request goes to the IP itself,
  with the name in the ``Host`` header and as the TLS server name (``sni_hostname``, so the
  certificate is still verified against the name), so a DNS answer that changes between the
  check and the connection (DNS rebinding) cannot redirect it;
- follows redirects itself, at most ``max_redirects``, checking and pinning each hop;
- reads at most ``max_bytes`` (2 MiB; asking for no compression, and decompressing gzip or
  deflate within the same cap), within ``timeout_s`` for the whole read, every hop included,
  and keeps at most ``max_text_chars`` (200,000, what ``filtering.focus`` considers) of text;
- ignores proxy settings from the environment (a proxy would resolve names itself).

Then ``html_to_text`` turns HTML into plain text (scripts and styles dropped) in a thread.
Tests fake the network with ``httpx.MockTransport`` and a resolver function.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_TEXT_CHARS",
    "FetchRefused",
    "FetchTimeout",
    "Page",
    "SafeFetcher",
    "blocked_reason",
    "html_to_text",
    "literal_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``; the system resolver by default."""

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_TEXT_CHARS = 200_000
USER_AGENT = "Mozilla/5.0 (compatible; SafeWork-search/1.0)"
BLOCKED_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "instance-data"})
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC = re.compile(r"[0-9a-fA-FxX.]+")
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")


class FetchRefused(Exception):
    """The URL, an address it resolves to, a redirect, or the answer is not allowed."""


class FetchTimeout(Exception):
    """The whole read (every hop) took longer than the fetcher's ``timeout_s``."""


@dataclass(frozen=True)
class Page:
    url: str
    """Where the page was finally read (after redirects)."""
    title: str
    text: str
    truncated: bool = False


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling ``inet_aton`` accepts.

    >>> str(literal_address("2130706433")), str(literal_address("0x7f.1"))
    ('127.0.0.1', '127.0.0.1')
    >>> literal_address("example.com") is None
    True
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why the server must not connect to ``ip``, or ``None`` for a public address.

    >>> blocked_reason(ipaddress.ip_address("::ffff:10.0.0.1"))
    'private'
    >>> blocked_reason(ipaddress.ip_address("93.184.216.34")) is None
    True
    """
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return blocked_reason(inner)
    if ip in METADATA:
        return "cloud metadata"
    for reason, hit in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return reason
    return None if ip.is_global else "not a public address"


def _blocked_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name in BLOCKED_NAMES or name.endswith(BLOCKED_SUFFIXES) or "." not in name


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class SafeFetcher:
    """``fetch(url)`` -> ``Page``; see the module docstring for what it refuses."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        max_redirects: int = MAX_REDIRECTS,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_text_chars = max_text_chars
        self.max_redirects = max_redirects
        self._resolve = resolver or system_resolver
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False
        )

    async def fetch(self, url: str) -> Page:
        try:
            async with asyncio.timeout(self.timeout_s):
                response, final = await self._follow(url)
                return await self._page(response, final)
        except TimeoutError:
            raise FetchTimeout(f"no page within {self.timeout_s:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise FetchRefused(f"cannot fetch the page: {type(e).__name__}: {e}") from e

    async def fetch_bytes(self, url: str, types: tuple[str, ...]) -> tuple[bytes, str]:
        """The body of ``url`` (an image, say) and its content type, which must be one of
        ``types``; under the same rules as ``fetch``, except that a body over ``max_bytes``
        is refused rather than cut."""
        try:
            async with asyncio.timeout(self.timeout_s):
                response, _ = await self._follow(url)
                kind, body, truncated = await self._read(response, types, "an accepted type")
        except TimeoutError:
            raise FetchTimeout(f"nothing within {self.timeout_s:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise FetchRefused(f"cannot fetch it: {type(e).__name__}: {e}") from e
        if truncated:
            raise FetchRefused(f"over {self.max_bytes:,} bytes")
        return body, kind

    async def close(self) -> None:
        await self._client.aclose()

    async def _follow(self, url: str) -> tuple[httpx.Response, str]:
        """The first response that is not a redirect (open: the caller closes it), and its
        URL."""
        for _ in range(self.max_redirects + 1):
            target = httpx.URL(url)
            address = await self.check(target)
            response = await self._send(target, address)
            if not response.is_redirect:
                return response, str(target)
            location = response.headers.get("location", "")
            await response.aclose()
            if not location:
                raise FetchRefused(f"HTTP {response.status_code} without a Location")
            url = str(target.join(location))
        raise FetchRefused(f"more than {self.max_redirects} redirects")

    async def check(self, url: httpx.URL) -> IPAddress:
        """The address to connect to for ``url``: every address the host resolves to must
        be public (one bad address refuses the URL); ``FetchRefused`` otherwise."""
        if url.scheme not in ("http", "https"):
            raise FetchRefused(f"only http(s) pages can be read, not {url.scheme!r}")
        host = url.host
        if not host:
            raise FetchRefused("a URL without a host")
        literal = literal_address(host)
        if literal is None and _blocked_name(host):
            raise FetchRefused(f"{host!r} names a machine inside a network")
        port = url.port or (443 if url.scheme == "https" else 80)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self._resolve(host, port)
            except OSError as e:
                raise FetchRefused(f"cannot resolve {host!r}: {e}") from e
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        if not addresses:
            raise FetchRefused(f"{host!r} has no address")
        for address in addresses:
            if (reason := blocked_reason(address)) is not None:
                raise FetchRefused(f"{host!r} is a {reason} address ({address}): not fetched")
        return addresses[0]

    async def _send(self, url: httpx.URL, address: IPAddress) -> httpx.Response:
        """GET ``url`` from ``address`` exactly (the host in ``Host`` and the TLS name)."""
        headers = {
            "Host": url.netloc.decode("ascii"),
            "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
        }
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        pinned = url.copy_with(host=str(address))
        request = self._client.build_request("GET", pinned, headers=headers, extensions=extensions)
        return await self._client.send(request, stream=True)

    async def _read(
        self, response: httpx.Response, types: tuple[str, ...], what: str, default: str = ""
    ) -> tuple[str, bytes, bool]:
        """(content type, body, cut) of a 200 response whose type is one of ``types`` (a
        missing header counts as ``default``); ``FetchRefused`` otherwise. Closes it."""
        try:
            if response.status_code != 200:
                raise FetchRefused(f"HTTP {response.status_code}")
            kind = response.headers.get("content-type", default).split(";")[0].strip().lower()
            if kind not in types:
                raise FetchRefused(f"not {what} ({kind or 'none given'})")
            body, truncated = await self._body(response)
        finally:
            await response.aclose()
        return kind, body, truncated

    async def _page(self, response: httpx.Response, url: str) -> Page:
        kind, body, truncated = await self._read(response, TEXT_TYPES, "a text page", "text/html")
        try:
            text = body.decode(response.charset_encoding or "utf-8", "replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", "replace")
        if kind in ("text/html", "application/xhtml+xml"):
            title, text = await asyncio.to_thread(html_to_text, text)
        else:
            title = ""
        if len(text) > self.max_text_chars:
            text, truncated = text[: self.max_text_chars], True
        return Page(url, title, text, truncated)

    async def _body(self, response: httpx.Response) -> tuple[bytes, bool]:
        """At most ``max_bytes`` of the (decompressed) body, and whether it was cut."""
        if response.is_stream_consumed:  # built in memory (a mock transport): already read
            return response.content[: self.max_bytes], len(response.content) > self.max_bytes
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "deflate"):
            raise FetchRefused(f"unsupported content encoding {encoding!r}")
        inflate = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None
        out, size = [], 0
        async for chunk in response.aiter_raw():
            if inflate is not None:
                try:
                    chunk = inflate.decompress(chunk, self.max_bytes - size + 1)
                except zlib.error as e:
                    raise FetchRefused(f"a corrupt {encoding} body: {e}") from e
            out.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                return b"".join(out)[: self.max_bytes], True
        return b"".join(out), False


_DROP = ("script", "style", "noscript", "template", "svg", "iframe", "object", "head")
_BLOCKS = (
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "header", "footer", "pre", "blockquote", "table", "ul", "ol", "dd", "dt",
)  # fmt: skip


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML page: scripts, styles and the head dropped, one line per
    block element, whitespace collapsed."""
    import lxml.html
    from lxml import etree

    if not html.strip():
        return "", ""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return "", html
    title = " ".join((doc.findtext(".//title") or "").split())
    etree.strip_elements(doc, *_DROP, etree.Comment, with_tail=False)
    for el in doc.iter(*_BLOCKS):
        el.tail = "\n" + (el.tail or "")
    lines = (" ".join(line.split()) for line in doc.text_content().splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return title, text
