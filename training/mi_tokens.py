"""Which words the MI peaks fall on, and how many of them are safety words (``analyze mi``).

A peak is found at a token, but tokens are pieces of words (``remem`` + ``ber``), so each
token is labelled with the whole word it belongs to (``words_of``: the answer decoded token by
token, each token's characters mapped to the word around them; a token of punctuation is
labelled with that text, stripped, and one of only whitespace keeps it, e.g. a newline). The
safety lexicon is a set of lowercase words (``SAFETY_LEXICON``, the kind of words the
report's Figure 3 shows at its peaks: "remember", "avoid", "safety"...); ``load_lexicon``
reads another from a file, one word per line, ``#`` starting a comment. ``peak_summary``
counts the words at peaks and the share of peaks on a lexicon word, with its counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SAFETY_LEXICON", "load_lexicon", "peak_summary", "visible", "words_of"]

SAFETY_LEXICON = frozenset(
    """
    remember avoid avoiding careful carefully caution cautious safe safely safety unsafe harm
    harmful harms hurt danger dangerous risk risky risks illegal unlawful law laws legal
    ethical ethics unethical responsible responsibly refuse refusal decline cannot can't
    won't sorry apologize inappropriate policy guidelines consent privacy protect protection
    wellbeing well-being professional consult emergency crisis however instead important note
    warning never should must
    """.split()  # noqa: SIM905 - a word list reads better as words
)
"""Words of caution, refusal, ethics and redirection, lowercase."""

_WORD = re.compile(r"[\w'-]+")


def load_lexicon(path: Path) -> frozenset[str]:
    """One lowercase word per line of ``path``; blank lines and ``#`` comments skipped."""
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip().lower()
        if word:
            words.add(word)
    if not words:
        raise ValueError(f"lexicon {path} holds no word")
    return frozenset(words)


def words_of(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """For each token of ``ids``, the word it is part of in the decoded text."""
    ends = []
    text = ""
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:k]), skip_special_tokens=False)
        ends.append(len(text))
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    out = []
    start = 0
    for end in ends:
        piece = text[start:end]
        word = next((text[a:b] for a, b in spans if a < end and b > start), None)
        out.append(word if word is not None and piece.strip() else piece.strip() or piece)
        start = max(start, end)
    return out


def visible(word: str) -> str:
    """A word as it should read in a label or a table cell: a word of only whitespace shown
    escaped (a newline as ``\\n``, a space as a middle dot); any other word as it is."""
    return repr(word)[1:-1].replace(" ", "\u00b7") if not word.strip() else word


def peak_summary(
    peak_words: Iterable[str], lexicon: frozenset[str], tokens: int, top: int = 30
) -> dict[str, Any]:
    """The words at peaks (``top`` most common, with counts), the peak rate over ``tokens``
    and the share of peaks on a lexicon word, each as ``{"rate", "k", "n"}``."""
    words = [w.lower() for w in peak_words]
    on_lexicon = sum(1 for w in words if w in lexicon)
    n = len(words)
    return {
        "peak_rate": {"rate": round(n / tokens, 4) if tokens else None, "k": n, "n": tokens},
        "safety_share": {
            "rate": round(on_lexicon / n, 4) if n else None,
            "k": on_lexicon,
            "n": n,
        },
        "words": Counter(words).most_common(top),
    }
