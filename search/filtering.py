"""What stands between retrieved text and the model: relevance, hostility, and doubt.

- ``RelevanceFilter`` drops results whose title and snippet are not similar enough to the
  query (cosine of sentence embeddings under ``min_similarity``): noise costs context and
  misleads small models.
- ``neutralise`` (``injection.py``, re-exported here) treats retrieved text as data: after
  Unicode normalisation, sentences that address the reader as an assistant ("ignore your
  instructions", "answer X", "new system prompt") and chat-template control tokens are cut
  out and replaced by a marker. (``tags.information`` then frames the text as quoted data
  and escapes protocol tags, so a document can never close the block or answer.)
- ``focus`` keeps the parts of a long document that matter to the query, in their order.
- ``contradiction_note`` compares the final answer with the model's closed-book answer and
  with the sources, for the trace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .answers import answers_agree, supported_by
from .base import SearchResult
from .injection import INJECTION_MARK, neutralise

__all__ = [
    "INJECTION_MARK",
    "RelevanceFilter",
    "ScoredResult",
    "TextEncoder",
    "contradiction_note",
    "focus",
    "neutralise",
]


class TextEncoder(Protocol):
    """What relevance needs from an embedder: unit-norm vectors, one row per text."""

    def encode(self, texts: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class ScoredResult:
    result: SearchResult
    similarity: float


class RelevanceFilter:
    """Keeps results whose title + snippet embed close enough to the query."""

    def __init__(self, encoder: TextEncoder, min_similarity: float = 0.25) -> None:
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


def _chunks(text: str, size: int) -> list[str]:
    """Paragraph-aligned pieces of about ``size`` characters (long paragraphs are cut)."""
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        while len(para) > size:
            cut = para.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            pieces.append(para[:cut])
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    return pieces


def focus(
    text: str, query: str, max_chars: int, encoder: TextEncoder, chunk_chars: int = 500
) -> str:
    """The most query-relevant pieces of ``text`` that fit ``max_chars``, in document order."""
    if len(text) <= max_chars:
        return text
    pieces = _chunks(text, chunk_chars)
    if not pieces:  # only whitespace
        return ""
    vecs = np.asarray(encoder.encode([query, *pieces]), dtype=np.float32)
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
