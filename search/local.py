"""``local:PATH`` and ``local:builtin``: search over a folder of documents on this machine.

The folder holds ``.txt``, ``.md`` and ``.jsonl`` files, found recursively (``documents.py``
reads them); ``local:builtin`` is the built-in corpus (``corpus.py``). Documents are split into
passages of ~120 words, indexed for BM25 and in FAISS (``index.py``: built on first use and
stored beside the corpus in ``PATH/.safework-index/``). Three retrieval modes rank passages
(``local_settings.py`` holds the settings):

- ``bm25``: BM25 over lower-cased, stopword-free, plural-stemmed words.
- ``dense``: all-MiniLM-L6-v2 vectors (``engine/embedder.py``) searched in FAISS, exact up to
  ``hnsw_threshold`` passages, HNSW beyond.
- ``hybrid`` (default): reciprocal rank fusion of both lists, ``sum 1 / (60 + rank)``.

In every mode, a query's numbers are exact: passages that state all of them come first
(``numbers_first``), so "atomic number 51" finds the record that says 51.

``search(query, k)`` returns the ``k`` best *documents*: each document's best passage is its
snippet and its score. ``search_many`` embeds all queries in one call and searches FAISS once.

Options (``BackendContext.options``): ``mode`` (bm25|dense|hybrid), ``passage_words``,
``overlap_words``, ``hnsw_threshold``. Build or query from the shell: ``safework index --help``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from safework.engine.embedder import Encoder
from safework.errors import ConfigError

from .base import BackendContext, Document, DocumentNotFound, SearchBackend, SearchResult
from .index import LocalIndex, tokenize
from .local_settings import MODES, LocalSettings

__all__ = ["MODES", "LocalBackend", "LocalSettings", "load_local"]

RRF_K = 60


# --------------------------------------------------------------------------- the backend


def fuse(ranked: Sequence[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list adds ``1 / (60 + rank)`` (rank from 1) to a passage."""
    if len(ranked) == 1:
        return list(ranked[0])
    scores: dict[int, float] = {}
    for ranking in ranked:
        for rank, (passage, _score) in enumerate(ranking, 1):
            scores[passage] = scores.get(passage, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def numbers_first(
    ranked: list[tuple[int, float]], numbers: frozenset[str], text_of: Callable[[int], str]
) -> list[tuple[int, float]]:
    """``ranked`` with the passages that state every number in ``numbers`` moved to the front,
    each group in its own order; unchanged when none states them all.

    A number in a query is a term the answer has to contain, as in a web search engine. Dense
    vectors barely tell 51 from 108, so fused with them the BM25 hit (the one element record
    with "Atomic number: 51") fell behind other element records: on the built-in corpus, the
    search cold start's writer found the record asked for on 10 of 52 "which element has
    atomic number N" questions of the fit half with hybrid search, and on 49 with this rule.
    """
    stating = [hit for hit in ranked if numbers <= set(tokenize(text_of(hit[0])))]
    if not stating or len(stating) == len(ranked):
        return ranked
    first = {passage for passage, _ in stating}
    return stating + [hit for hit in ranked if hit[0] not in first]


def query_numbers(query: str) -> frozenset[str]:
    """The numbers among ``query``'s terms (``tokenize``: "1,000" and "167.26" whole)."""
    return frozenset(term for term in tokenize(query) if term[0].isdigit())


class LocalBackend(SearchBackend):
    """Search over a local corpus folder (see the module docstring)."""

    def __init__(
        self,
        corpus: Path,
        *,
        name: str = "local",
        settings: LocalSettings | None = None,
        cache: Path | None = None,
        embedder: Encoder | None = None,
        index_dir: Path | None = None,
        rebuild: bool = False,
    ) -> None:
        """Open (building if needed) the index of ``corpus``; blocking, seconds to minutes."""
        self.name = name
        self.settings = settings or LocalSettings()
        self._cache = cache
        self._embedder = embedder
        self.index = LocalIndex.open(
            Path(corpus),
            self.settings,
            index_dir=index_dir,
            embedder=self._get_embedder,
            cache=cache,
            rebuild=rebuild,
        )

    def _get_embedder(self) -> Encoder:
        if self._embedder is None:
            from safework.engine.embedder import get_embedder

            self._embedder = get_embedder(self._cache)
        return self._embedder

    # ---- the interface

    async def search(self, query: str, k: int) -> list[SearchResult]:
        return (await self.search_many([query], k))[0]

    async def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchResult]]:
        return await asyncio.to_thread(self.search_sync, list(queries), k)

    async def read(self, doc_id: str) -> Document:
        return self.read_sync(doc_id)

    async def close(self) -> None:
        self.index.bm25 = self.index.dense = None

    # ---- synchronous versions (the CLI and benchmarks call these)

    def read_sync(self, doc_id: str) -> Document:
        i = self.index.by_id.get(doc_id)
        if i is None:
            raise DocumentNotFound(self.name, f"no document {doc_id!r} in {self.index.corpus}")
        return self.index.docs[i]

    def search_sync(
        self, queries: Sequence[str], k: int, mode: str | None = None
    ) -> list[list[SearchResult]]:
        """The ``k`` best documents for each query; ``mode`` overrides the configured one."""
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise ConfigError(f"local search mode {mode!r}: use one of {', '.join(MODES)}")
        if k <= 0 or not queries:
            return [[] for _ in queries]
        depth = min(len(self.index), max(50, 10 * k))
        vectors = None
        if mode != "bm25":
            if self.index.dense is None:
                raise ConfigError(
                    f"the index of {self.index.corpus} has no dense part; open the backend with "
                    f"mode=dense or mode=hybrid to build it"
                )
            vectors = self._get_embedder().encode(list(queries))  # (Q, 384)
        dense = self.index.rank_dense(vectors, depth) if vectors is not None else None
        results = []
        for q, query in enumerate(queries):
            ranked_dense, d = (dense[q] if dense is not None else None), depth
            while True:
                hits = self._top_documents(query, ranked_dense, mode, d, k)
                if len(hits) >= k or d >= len(self.index):
                    break
                d = min(len(self.index), d * 4)  # a few documents' passages filled the lists
                if vectors is not None:
                    ranked_dense = self.index.rank_dense(vectors[q : q + 1], d)[0]
            results.append(hits)
        return results

    def _top_documents(
        self,
        query: str,
        dense: list[tuple[int, float]] | None,
        mode: str,
        depth: int,
        k: int,
    ) -> list[SearchResult]:
        """Fuse the passage rankings, keep each document's best passage, stop at ``k``."""
        ranked = []
        if mode != "dense":
            ranked.append(self.index.rank_bm25(query, depth))
        if dense is not None:
            ranked.append(dense)
        fused = fuse(ranked)
        numbers = query_numbers(query)
        if numbers:
            fused = numbers_first(fused, numbers, self.index.passage)
        results: list[SearchResult] = []
        seen: set[int] = set()
        for passage, score in fused:
            doc_index = int(self.index.passage_doc[passage])
            if doc_index in seen:
                continue
            seen.add(doc_index)
            doc = self.index.docs[doc_index]
            snippet = self.index.passage(passage)
            results.append(SearchResult(doc.id, doc.title, snippet, doc.url, score))
            if len(results) == k:
                break
        return results


def load_local(name: str, arg: str, ctx: BackendContext) -> LocalBackend:
    """The loader for ``local:PATH`` and ``local:builtin`` (see ``search/base.py``)."""
    settings = LocalSettings.from_options(ctx.options)
    if arg == "builtin":
        from .corpus import ensure_builtin_corpus

        corpus = ensure_builtin_corpus(ctx.cache)
    else:
        corpus = Path(arg).expanduser()
        if not corpus.is_dir():
            raise ConfigError(
                f"local search corpus {arg!r} is not a folder; create it and put .txt, .md or "
                f".jsonl documents in it, or use local:builtin"
            )
    return LocalBackend(corpus, name=name, settings=settings, cache=ctx.cache)
