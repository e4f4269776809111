"""The on-disk index of a local search corpus: passages, BM25 and FAISS (``local.py`` uses it).

Documents (``documents.py``) are split into passages of ~120 words that overlap by 20 and break
at paragraphs where they can (``split_passages``). Each passage, after its document's title, is
indexed for BM25 by ``bm25s`` (``tokenize``: lower-cased words, minus 33 stopwords, with Harman's
S-stemmer, plurals only, a simplification of a full stemmer) and as an all-MiniLM-L6-v2 vector
(``engine/embedder.py``) in a FAISS inner-product index, exact (``IndexFlatIP``) up to
``hnsw_threshold`` passages, ``IndexHNSWFlat`` beyond.

``LocalIndex.open`` builds the index on first use and stores it beside the corpus in
``PATH/.safework-index/`` (in the cache when ``PATH`` is read-only), with a manifest holding a
fingerprint of the corpus files (names, sizes, mtimes) and the settings. A changed corpus or
passage setting rebuilds it on load, under a file lock; a changed tokenizer rebuilds only BM25,
and the dense part is added when a dense mode first needs it (embedding is the slow part: ~35
passages/s on 2 CPU cores). ``rank_bm25`` and ``rank_dense`` rank passages, best first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from safework.engine.embedder import MINILM_ASSET, Encoder
from safework.errors import ConfigError
from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    read_json,
    remove_path,
    replace_dir,
    write_json_atomic,
)

from .base import Document
from .documents import corpus_files, load_corpus
from .local_settings import LocalSettings

__all__ = [
    "INDEX_DIRNAME",
    "INDEX_VERSION",
    "TOKENIZER",
    "LocalIndex",
    "index_dir_for",
    "passage_key",
    "split_passages",
    "tokenize",
]

log = logging.getLogger(__name__)

INDEX_DIRNAME = ".safework-index"
INDEX_VERSION = 1
"""Bump when passages, tokens or files change meaning: older indexes are then rebuilt."""
EMBED_CHUNK = 1024
BLAS_THRESHOLD = 20
"""FAISS skips BLAS below 128000 queries by default; batched flat search is ~7x faster with it."""


# --------------------------------------------------------------------------- passages and tokens


def split_passages(
    text: str, passage_words: int = 120, overlap_words: int = 20
) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of ``text``'s passages.

    Each passage holds ``passage_words`` words or a little more (up to 1.25x) when that lets it
    end at a paragraph break (a blank line); failing that, at a sentence end; failing that, at
    ``passage_words``. The next passage starts ``overlap_words`` words earlier than the previous
    one ended. A text of at most 1.25x ``passage_words`` words is one passage.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    n = len(words)
    if n == 0:
        return []
    longest, shortest = passage_words * 5 // 4, passage_words // 2
    breaks = {i for i in range(1, n) if "\n\n" in text[words[i - 1][1] : words[i][0]]}
    sentences = {i for i in range(1, n) if text[words[i - 1][1] - 1] in ".!?"}
    spans = []
    start = 0
    while True:
        if n - start <= longest:
            spans.append((words[start][0], words[n - 1][1]))
            return spans
        window = range(start + longest, start + shortest - 1, -1)
        end = next((i for i in window if i in breaks), None)
        end = end or next((i for i in window if i in sentences), start + passage_words)
        spans.append((words[start][0], words[end - 1][1]))
        start = max(end - overlap_words, start + 1)


STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is"}
    | {"it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there"}
    | {"these", "they", "this", "to", "was", "will", "with"}
)
"""Lucene's English stopwords (the list ``bm25s`` uses)."""
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")  # 167.26 and 1,000 stay one token
TOKENIZER = "words-decimals-lower-stop33-sstem"
"""Names ``tokenize``'s behaviour in the manifest: change it with ``tokenize`` (rebuilds BM25)."""


def _s_stem(word: str) -> str:
    """Harman's S-stemmer: ``-ies`` -> ``-y``, ``-es`` -> ``-e``, ``-s`` -> ``''``, with its
    exceptions; words of three letters or fewer are left alone."""
    if len(word) <= 3 or not word.endswith("s"):
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """BM25 terms: lower-cased words and numbers (decimals whole), minus stopwords, plurals
    stemmed.

    >>> tokenize("The Elements of chemistry: 118 elements; erbium weighs 167.26")
    ['element', 'chemistry', '118', 'element', 'erbium', 'weigh', '167.26']
    """
    return [_s_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


# --------------------------------------------------------------------------- the index


def _fingerprint(folder: Path, files: Sequence[Path]) -> str:
    """A digest of the corpus files' names, sizes and mtimes: any change to them changes it."""
    entries = []
    for path in files:
        st = path.stat()
        entries.append([path.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def passage_key(settings: LocalSettings) -> dict[str, Any]:
    """The settings that change passages (a change rebuilds the whole index)."""
    return {
        "index_version": INDEX_VERSION,
        "passage_words": settings.passage_words,
        "overlap_words": settings.overlap_words,
    }


def index_dir_for(corpus: Path, cache: Path | None = None) -> Path:
    """``corpus/.safework-index``, or a folder in the cache when ``corpus`` is not writable."""
    corpus = Path(corpus)
    if os.access(corpus, os.W_OK):
        return corpus / INDEX_DIRNAME
    digest = hashlib.sha256(str(corpus.resolve()).encode()).hexdigest()[:16]
    root = Path(cache if cache is not None else cache_dir())
    return root / "indexes" / f"{corpus.name}-{digest}"


def _embedder_name(embedder: Encoder) -> str:
    name = getattr(embedder, "name", None)
    if isinstance(name, str):
        return name
    max_tokens = getattr(embedder, "max_tokens", "?")
    return f"all-MiniLM-L6-v2 ({MINILM_ASSET.requirement}, max_tokens={max_tokens})"


def _passage_input(doc: Document, passage: str) -> str:
    """What BM25 and the embedder see: the title, then the passage."""
    return passage if passage.startswith(doc.title) else f"{doc.title}\n{passage}"


class LocalIndex:
    """Passages, BM25 and (when built) FAISS over one corpus folder; read-only once open."""

    def __init__(self, corpus: Path, index_dir: Path, docs: list[Document]) -> None:
        self.corpus, self.index_dir, self.docs = corpus, index_dir, docs
        self.by_id = {doc.id: i for i, doc in enumerate(docs)}
        self.passage_doc = np.zeros(0, dtype=np.int64)  # (P,) document of each passage
        self.passage_span = np.zeros((0, 2), dtype=np.int64)  # (P, 2) character span
        self.bm25: Any = None
        self.dense: Any = None
        self.manifest: dict[str, Any] = {}
        self.built: list[str] = []
        """What this open (re)built: ``passages``/``bm25``/``dense``; empty when all was reused."""
        self.load_seconds = 0.0

    # ---- opening

    @classmethod
    def open(
        cls,
        corpus: Path,
        settings: LocalSettings,
        *,
        index_dir: Path | None = None,
        embedder: Callable[[], Encoder] | None = None,
        cache: Path | None = None,
        rebuild: bool = False,
    ) -> LocalIndex:
        """Load the index of ``corpus``, building or refreshing what is stale or missing.

        ``embedder`` is called only if a dense index must be built or queried.
        """
        started = time.monotonic()
        corpus = Path(corpus)
        index_dir = Path(index_dir) if index_dir else index_dir_for(corpus, cache)
        with file_lock(lock_path_for(index_dir)):
            files = corpus_files(corpus)
            if not files:
                raise ConfigError(
                    f"the local search corpus {corpus} has no .txt, .md or .jsonl files; add "
                    f"some, or use local:builtin for the built-in corpus"
                )
            index = cls(corpus, index_dir, load_corpus(corpus, files))
            if not index.docs:
                raise ConfigError(f"the local search corpus {corpus} holds no documents")
            clean_leftovers(index_dir)
            fingerprint = _fingerprint(corpus, files)
            reason = "a rebuild was asked for" if rebuild else index._stale(fingerprint, settings)
            if reason:
                log.info("building the search index of %s (%s)", corpus, reason)
                index._build(fingerprint, settings, embedder)
            index._load()
            if index.bm25 is None:
                log.info("rebuilding the BM25 index in %s (the tokenizer changed)", index_dir)
                index._add_bm25()
            if settings.needs_dense and index._dense_stale(settings, embedder):
                log.info("adding the dense index to %s", index_dir)
                index._add_dense(settings, embedder)
        index.load_seconds = time.monotonic() - started
        return index

    def _stale(self, fingerprint: str, settings: LocalSettings) -> str | None:
        manifest = read_json(self.index_dir / "manifest.json")
        if manifest is None:
            return "no index yet"
        if manifest.get("fingerprint") != fingerprint:
            return "the corpus files changed"
        if manifest.get("passages_key") != passage_key(settings):
            return "the passage settings changed"
        if manifest.get("doc_ids_sha256") != self._doc_ids_digest():
            return "the documents changed"
        return None

    def _doc_ids_digest(self) -> str:
        return hashlib.sha256("\n".join(d.id for d in self.docs).encode()).hexdigest()

    def _dense_stale(self, settings: LocalSettings, embedder: Callable[[], Encoder] | None) -> bool:
        info = self.manifest.get("dense")
        if not info or not (self.index_dir / "dense.faiss").is_file():
            return True
        want_kind = "hnsw" if len(self.passage_doc) >= settings.hnsw_threshold else "flat"
        if embedder is None:
            raise ConfigError("a dense search mode needs an embedder")
        return info.get("kind") != want_kind or info.get("embedder") != _embedder_name(embedder())

    # ---- building

    def _build(
        self,
        fingerprint: str,
        settings: LocalSettings,
        embedder: Callable[[], Encoder] | None,
    ) -> None:
        """Build passages and BM25 (and dense, if the mode needs it) into a fresh folder."""
        staging = make_staging_dir(self.index_dir)
        try:
            timings: dict[str, float] = {}
            t0 = time.monotonic()
            docs, spans = [], []
            for i, doc in enumerate(self.docs):
                for span in split_passages(
                    doc.text, settings.passage_words, settings.overlap_words
                ):
                    docs.append(i)
                    spans.append(span)
            self.passage_doc = np.asarray(docs, dtype=np.int64)
            self.passage_span = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
            np.savez(staging / "passages.npz", doc=self.passage_doc, span=self.passage_span)
            timings["passages"] = time.monotonic() - t0
            manifest: dict[str, Any] = {
                "fingerprint": fingerprint,
                "passages_key": passage_key(settings),
                "doc_ids_sha256": self._doc_ids_digest(),
                "corpus": str(self.corpus),
                "files": len(corpus_files(self.corpus)),
                "documents": len(self.docs),
                "passages": len(self.passage_doc),
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "build_seconds": {k: round(v, 2) for k, v in timings.items()},
                "settings": asdict(settings),
            }
            manifest["bm25"] = self._write_bm25(staging, manifest)
            if settings.needs_dense:
                if embedder is None:
                    raise ConfigError("a dense search mode needs an embedder")
                manifest["dense"] = self._write_dense(staging, settings, embedder(), manifest)
            write_json_atomic(staging / "manifest.json", manifest)
            replace_dir(staging, self.index_dir)
        except BaseException:
            remove_path(staging)
            raise
        self.built += ["passages", "bm25"] + (["dense"] if settings.needs_dense else [])

    def _write_bm25(self, folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """Tokenize every passage and save a ``bm25s`` index as ``folder/bm25``."""
        import bm25s

        t0 = time.monotonic()
        tokens = [tokenize(self.passage_input(i)) for i in range(len(self.passage_doc))]
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        staging = make_staging_dir(folder / "bm25")
        try:
            retriever.save(str(staging), show_progress=False)
            replace_dir(staging, folder / "bm25")
        except BaseException:
            remove_path(staging)
            raise
        manifest.setdefault("build_seconds", {})["bm25"] = round(time.monotonic() - t0, 2)
        return {"tokenizer": TOKENIZER, "vocabulary": len(retriever.vocab_dict)}

    def _add_bm25(self) -> None:
        self.manifest["bm25"] = self._write_bm25(self.index_dir, self.manifest)
        write_json_atomic(self.index_dir / "manifest.json", self.manifest)
        self._load_bm25()
        self.built.append("bm25")

    def _write_dense(
        self, folder: Path, settings: LocalSettings, embedder: Encoder, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """Embed every passage and write ``dense.faiss`` into ``folder``; return its record."""
        import faiss

        t0 = time.monotonic()
        n = len(self.passage_doc)
        vectors = np.zeros((n, embedder.dim), dtype=np.float32)  # (P, 384)
        for start in range(0, n, EMBED_CHUNK):
            stop = min(start + EMBED_CHUNK, n)
            vectors[start:stop] = embedder.encode(
                [self.passage_input(i) for i in range(start, stop)]
            )
            log.info("embedded %d/%d passages (%.0f s)", stop, n, time.monotonic() - t0)
        kind = "hnsw" if n >= settings.hnsw_threshold else "flat"
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(embedder.dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        else:
            index = faiss.IndexFlatIP(embedder.dim)
        index.add(vectors)
        tmp = folder / ".dense.faiss.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, folder / "dense.faiss")
        seconds = time.monotonic() - t0
        manifest.setdefault("build_seconds", {})["dense"] = round(seconds, 2)
        log.info("dense index (%s, %d x %d) built in %.1f s", kind, n, embedder.dim, seconds)
        return {"kind": kind, "embedder": _embedder_name(embedder), "dim": embedder.dim}

    def _add_dense(self, settings: LocalSettings, embedder: Callable[[], Encoder] | None) -> None:
        if embedder is None:
            raise ConfigError("a dense search mode needs an embedder")
        self.manifest["dense"] = self._write_dense(
            self.index_dir, settings, embedder(), self.manifest
        )
        write_json_atomic(self.index_dir / "manifest.json", self.manifest)
        self._load_dense()
        self.built.append("dense")

    # ---- loading

    def _load(self) -> None:
        self.manifest = read_json(self.index_dir / "manifest.json") or {}
        with np.load(self.index_dir / "passages.npz") as arrays:
            self.passage_doc, self.passage_span = arrays["doc"], arrays["span"]
        if (self.manifest.get("bm25") or {}).get("tokenizer") == TOKENIZER:
            self._load_bm25()
        if self.manifest.get("dense") and (self.index_dir / "dense.faiss").is_file():
            self._load_dense()

    def _load_bm25(self) -> None:
        import bm25s

        self.bm25 = bm25s.BM25.load(str(self.index_dir / "bm25"), show_progress=False)

    def _load_dense(self) -> None:
        import faiss

        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
        self.dense = faiss.read_index(str(self.index_dir / "dense.faiss"))

    # ---- reading

    def __len__(self) -> int:
        return len(self.passage_doc)

    def passage(self, i: int) -> str:
        start, end = self.passage_span[i]
        return self.docs[self.passage_doc[i]].text[start:end]

    def passage_input(self, i: int) -> str:
        return _passage_input(self.docs[self.passage_doc[i]], self.passage(i))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.index_dir.rglob("*") if p.is_file())

    # ---- ranking: lists of (passage, score), best first

    def rank_bm25(self, query: str, depth: int) -> list[tuple[int, float]]:
        vocab = self.bm25.vocab_dict
        ids = [vocab[t] for t in tokenize(query) if t in vocab]
        if not ids:
            return []
        scores = self.bm25.get_scores_from_ids(ids)  # (P,)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > depth:
            hits = hits[np.argpartition(-scores[hits], depth - 1)[:depth]]
        order = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(i), float(scores[i])) for i in order]

    def rank_dense(self, vectors: np.ndarray, depth: int) -> list[list[tuple[int, float]]]:
        """Nearest passages for each row of ``vectors`` (Q, dim), one FAISS call."""
        import faiss

        depth = min(depth, len(self))
        if isinstance(self.dense, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(64, depth))
            scores, ids = self.dense.search(vectors, depth, params=params)  # (Q, depth)
        else:
            scores, ids = self.dense.search(vectors, depth)  # (Q, depth)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]
