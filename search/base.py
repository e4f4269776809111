"""The search backend interface and the spec strings that choose a backend.

Every backend answers two calls: ``search(query, k)`` returns up to ``k`` ``SearchResult``
(an id to read it by, a title, a snippet, a url when it has one), and ``read(id)`` returns the
whole ``Document``. Both are coroutines; backends that block (``ddgs``, FAISS, BM25) run their
work in a thread so the server's event loop never stalls.

Specs, by prefix (a registry: loaders import their dependencies only when chosen):

  ``duckduckgo``        web search through the ``ddgs`` package (no key)
  ``local:PATH``        a folder of .txt/.md/.jsonl documents, BM25 + dense, hybrid by default
  ``local:builtin``     the built-in corpus (Wikipedia articles, elements, computing terms)
  ``http:URL``          a retriever speaking Search-R1's ``POST /retrieve {queries, topk}``

``--search-backend NAME=SPEC`` names a backend (a request picks it by that name); a bare spec
is named after its kind (``duckduckgo``, ``local``, ``builtin``, ``http``). Backend options and
search-loop settings come as repeated ``KEY=VALUE`` flags (``parse_key_values``).
"""

from __future__ import annotations

import abc
import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safework.errors import ConfigError, SafeWorkError


class SearchError(SafeWorkError):
    """A backend could not answer: the network is down, it timed out, it sent garbage."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"search backend {backend!r}: {message}")
        self.backend = backend


class SearchTimeout(SearchError):
    """The backend did not answer within its timeout (after its retries)."""


class DocumentNotFound(SearchError):
    """``read(id)`` for an id the backend does not know."""


@dataclass(frozen=True)
class SearchResult:
    id: str
    """What ``read()`` takes: a document id, or the page url for web backends."""
    title: str
    snippet: str
    url: str | None = None
    score: float | None = None
    """The backend's relevance score (higher is better; scales differ between backends)."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    url: str | None = None


class SearchBackend(abc.ABC):
    """A search engine the deliberative loop can query and read from."""

    name: str = "search"
    """The backend's name in traces, metrics and ``safework.search.backend``."""

    @abc.abstractmethod
    async def search(self, query: str, k: int) -> list[SearchResult]:
        """The ``k`` best results for ``query``, best first (fewer when fewer match)."""

    async def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchResult]]:
        """Results for several queries; backends with a batch API override this."""
        return list(await asyncio.gather(*(self.search(q, k) for q in queries)))

    @abc.abstractmethod
    async def read(self, doc_id: str) -> Document:
        """The full text of a result; ``DocumentNotFound`` for an unknown id."""

    def scoped(self, tenant: str) -> SearchBackend:
        """This backend as one tenant's requests see it. Backends that remember what they
        returned (to serve ``read``) keep that memory per tenant, so one tenant can neither
        read nor probe what another's searches found; stateless backends return themselves."""
        return self

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections, threads and indexes."""


@dataclass
class BackendContext:
    """What loaders may need besides the spec."""

    cache: Path | None = None
    """The SafeWork cache (``SAFEWORK_CACHE``); ``None``: the default."""
    timeout_s: float = 10.0
    """Per-call timeout for network backends."""
    retries: int = 2
    """Extra attempts after a failed or timed-out network call."""
    options: dict[str, str] = field(default_factory=dict)


Loader = Callable[[str, str, BackendContext], SearchBackend]
"""``(name, argument after the prefix, context) -> SearchBackend``."""

LOADERS: dict[str, str] = {
    "duckduckgo": "safework.search.duckduckgo:load_duckduckgo",
    "local": "safework.search.local:load_local",
    "http": "safework.search.http:load_http",
}
NO_ARGUMENT = frozenset({"duckduckgo"})


def check_spec(spec: str) -> tuple[str, str]:
    """``"local:/corpus"`` -> ``("local", "/corpus")``; ConfigError for an unknown spec."""
    prefix, _, arg = spec.partition(":")
    known = "duckduckgo, local:PATH, local:builtin, http:URL"
    if prefix not in LOADERS:
        raise ConfigError(f"unknown search backend {spec!r}; use one of {known}")
    if prefix in NO_ARGUMENT and arg:
        raise ConfigError(f"search backend {prefix!r} takes no argument (got {spec!r})")
    if prefix not in NO_ARGUMENT and not arg:
        raise ConfigError(f"search backend {prefix!r} needs an argument: {prefix}:...")
    return prefix, arg


def default_name(spec: str) -> str:
    prefix, arg = check_spec(spec)
    return "builtin" if (prefix, arg) == ("local", "builtin") else prefix


def parse_backend_arg(text: str) -> tuple[str, str]:
    """``"wiki=local:/data/wiki"`` -> ``("wiki", "local:/data/wiki")``; bare spec -> its kind."""
    name, sep, spec = text.partition("=")
    if sep and ":" not in name and name:
        check_spec(spec)
        return name, spec
    return default_name(text), text


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}``, values read as YAML scalars (``4``, ``false``).

    ``flag`` names the option in the ConfigError raised for an item without ``=`` or a key.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE (got {item!r})")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_backend(
    spec: str, name: str | None = None, ctx: BackendContext | None = None
) -> SearchBackend:
    """The backend a spec names (``SearchBackend``); ConfigError if it cannot be built."""
    prefix, arg = check_spec(spec)
    module, _, attr = LOADERS[prefix].partition(":")
    loader: Loader = getattr(importlib.import_module(module), attr)
    return loader(name or default_name(spec), arg, ctx or BackendContext())
