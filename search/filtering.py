"""What stands between retrieved text and the model: relevance, hostility, and doubt.

- ``RelevanceFilter`` drops results whose title and snippet are not similar enough to the
  query (cosine of sentence embeddings under ``min_similarity``): noise costs context and
  misleads small models.
- ``neutralise`` (``injection.py``, re-exported here) treats retrieved text as data: after
  Unicode normalisation, sentences that address the reader as an assistant ("ignore your
  instructions", "answer X", "new system prompt") and chat-template control tokens are cut
  out and replaced by a marker. (``tags.information`` then frames the text as quoted data
  and escapes protocol tags, so a document can never close the block or answer.)
- ``focus`` keeps the parts of a long document that matter to the query, in their order;
  bounded: the first ``FOCUS_TEXT_CHARS`` characters, at most ``FOCUS_MAX_CHUNKS`` pieces
  (a lexical shortlist) embedded, so a huge page costs what a long one does.
- ``contradiction_note`` compares the final answer with the model's closed-book answer and
  with the sources, for the trace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safework.engine.embedder import Encoder

from .answers import answers_agree, supported_by
from .base import SearchResult
from .injection import INJECTION_MARK, neutralise

__all__ = [
    "FOCUS_MAX_CHUNKS",
    "FOCUS_TEXT_CHARS",
    "INJECTION_MARK",
    "RelevanceFilter",
    "ScoredResult",
    "contradiction_note",
    "focus",
    "neutralise",
]


@dataclass(frozen=True)
class ScoredResult:
    result: SearchResult
    similarity: float


class RelevanceFilter:
    """Keeps results whose title + snippet embed close enough to the query."""

    def __init__(self, encoder: Encoder, min_similarity: float = 0.25) -> None:
        self.encoder = encoder
        self.min_similarity = min_similarity

    def score(self, query: str, results: Sequence[SearchResult]) -> list[ScoredResult]:
        if not results:
            return []
        texts = [query] + [f"{r.title}. {r.snippet}" for r in results]
        vecs = np.asarray(self.encoder.encode(texts), dtype=np.float32)
        sims = vecs[1:] @ vecs[0]
        return [ScoredResult(r, round(float(s), 4)) for r, s in zip(results, sims, strict=True)]

    def split(
        self, query: str, results: Sequence[SearchResult]
    ) -> tuple[list[ScoredResult], list[ScoredResult]]:
        """``(kept, dropped)``, each in the backend's order."""
        scored = self.score(query, results)
        kept = [s for s in scored if s.similarity >= self.min_similarity]
        dropped = [s for s in scored if s.similarity < self.min_similarity]
        return kept, dropped


FOCUS_TEXT_CHARS = 200_000
"""Characters of a document ``focus`` considers (``webfetch`` keeps as many of a page)."""
FOCUS_MAX_CHUNKS = 64
"""Pieces embedded per call, at most (a 1,600-character excerpt needs a few)."""
MAX_CHUNK_CHARS = 2_000
MIN_CHUNK_CHARS = 20
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"\w{3,}")


def _chunks(text: str, size: int) -> list[str]:
    """Paragraph-aligned pieces of about ``size`` characters (long paragraphs are cut), in
    one pass over ``text``."""
    pieces: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = para.strip()
        start = 0
        while len(para) - start > size:
            cut = para.rfind(" ", start, start + size)
            cut = cut if cut > start + size // 2 else start + size
            pieces.append(para[start:cut])
            space = _SPACE.match(para, cut)
            start = space.end() if space else cut
        if start < len(para):
            pieces.append(para[start:])
    return pieces


def _shortlist(pieces: Sequence[str], query: str, limit: int) -> list[int]:
    """Indices of at most ``limit`` pieces, in document order: all of them when they fit,
    else those sharing the most distinct query words (3+ letters; earlier pieces on ties).
    Linear in the text: a cheap first cut before the embedder sees anything."""
    if len(pieces) <= limit:
        return list(range(len(pieces)))
    words = {w.lower() for w in _WORD.findall(query)}
    hits = [len(words.intersection(w.lower() for w in _WORD.findall(p))) for p in pieces]
    best = sorted(range(len(pieces)), key=lambda i: (-hits[i], i))[:limit]
    return sorted(best)


def focus(
    text: str,
    query: str,
    max_chars: int,
    encoder: Encoder,
    chunk_chars: int = 500,
    *,
    max_chunks: int = FOCUS_MAX_CHUNKS,
    text_chars: int = FOCUS_TEXT_CHARS,
) -> str:
    """The most query-relevant pieces of ``text`` that fit ``max_chars``, in document order.

    Bounded whatever the document: only its first ``text_chars`` characters are cut into
    pieces of at most ``chunk_chars`` (capped at ``MAX_CHUNK_CHARS``), and at most
    ``max_chunks`` pieces (a lexical shortlist) are embedded with the query.
    """
    if chunk_chars < MIN_CHUNK_CHARS:
        raise ValueError(f"chunk_chars must be >= {MIN_CHUNK_CHARS} (got {chunk_chars})")
    if len(text) <= max_chars:
        return text
    pieces = _chunks(text[:text_chars], min(chunk_chars, MAX_CHUNK_CHARS))
    if not pieces:  # only whitespace
        return ""
    pieces = [pieces[i] for i in _shortlist(pieces, query, max(1, max_chunks))]
    vecs = np.asarray(encoder.encode([query, *pieces]), dtype=np.float32)  # (1 + P, dim)
    order = np.argsort(-(vecs[1:] @ vecs[0]), kind="stable")
    chosen, used = [], 0
    for i in order:
        if used + len(pieces[i]) > max_chars:
            continue
        chosen.append(int(i))
        used += len(pieces[i]) + len("\n[...]\n")
    if not chosen:  # even the best piece is too long: its head
        return pieces[int(order[0])][:max_chars]
    return "\n[...]\n".join(pieces[i] for i in sorted(chosen))


def contradiction_note(prior: str | None, answer: str, sources_text: str) -> str | None:
    """A line for the trace when the model's closed-book answer and the final answer differ."""
    if not prior or not answer or answers_agree(prior, answer):
        return None
    in_sources = supported_by(answer, sources_text)
    prior_in_sources = supported_by(prior, sources_text)
    if in_sources and not prior_in_sources:
        return (
            f"The sources contradict the model's own knowledge (alone it said {prior!r}); "
            f"the answer follows the sources ({answer!r})."
        )
    if prior_in_sources and not in_sources:
        return (
            f"The answer {answer!r} is not in the sources, which support the model's own "
            f"closed-book answer {prior!r}: treat it with caution."
        )
    return f"The model's closed-book answer {prior!r} differs from the final answer {answer!r}."
