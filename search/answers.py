"""Whether two answers say the same thing: the scorer of QA with exact answers.

``answer_matches(prediction, gold)`` scores a prediction against accepted answers (the
generated QA of the built-in corpus, calibration, benchmarks). ``answers_agree`` compares two
model answers (sampled answers for agreement confidence, the closed-book answer against the
search answer), and ``supported_by`` asks whether a text states an answer.

Numbers compare as numbers everywhere: ``1`` is not ``1,000`` and ``-40`` is not ``40``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")

_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_RE = re.compile(r"[-−]?\d+(?:\.\d+)?")


def fold(text: str) -> str:
    """Drop accents (``Wöhler`` -> ``Wohler``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_answer(text: str) -> list[str]:
    """Lower-cased words and numbers of ``text``, without accents, punctuation or articles.

    >>> normalize_answer("The answer is: Iron (Fe), 55.85!")
    ['answer', 'is', 'iron', 'fe', '55.85']
    """
    tokens = TOKEN.findall(fold(text).lower())
    return [t for t in tokens if t not in _ARTICLES]


def _is_number(text: str) -> bool:
    return _NUMBER_RE.fullmatch(text.strip()) is not None


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack)))


def answer_matches(prediction: str, gold: str | Sequence[str]) -> bool:
    """Whether ``prediction`` gives the gold answer (or one of several accepted answers).

    Numbers compare numerically: any number in the prediction equal to the gold counts.
    Short all-letter golds (chemical symbols: ``Fe``, ``H``) must appear as a whole word
    with the same case. Other golds match when their normalised words equal the prediction's
    or appear in it as a contiguous run. Lenient by design: a prediction that lists several
    candidates matches if one is right, so keep predictions short.

    >>> answer_matches("The atomic number of iron is 26.", "26")
    True
    >>> answer_matches("26.0", "26"), answer_matches("260", "26")
    (True, False)
    >>> answer_matches("It is iron.", ["iron"]), answer_matches("Fe", "Fe")
    (True, True)
    >>> answer_matches("FE", "Fe"), answer_matches("Its symbol is Fe.", "Fe")
    (False, True)
    >>> answer_matches("Wolfram", ("tungsten", "wolfram"))
    True
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    words = normalize_answer(prediction)
    numbers = numbers_in(prediction)
    raw_words = TOKEN.findall(fold(prediction))
    for g in golds:
        g = g.strip()
        if not g:
            continue
        if _is_number(g):
            if _same_numbers(numbers_in(g), numbers):
                return True
        elif len(g) <= 3 and g.isalpha():
            if fold(g) in raw_words:
                return True
        elif _contains(words, normalize_answer(g)):
            return True
    return False


def numbers_in(text: str) -> list[float]:
    """The numbers ``text`` states (thousands separators dropped, either minus sign)."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return [float(n.replace("−", "-")) for n in _NUMBER_RE.findall(text)]


def _same_numbers(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(any(math.isclose(x, y, abs_tol=1e-9) for y in b) for x in a)


def answers_agree(a: str, b: str) -> bool:
    """Two answers say the same: when both state numbers, the same numbers (either way
    round); otherwise one matches the other as an accepted answer."""
    if not normalize_answer(a) or not normalize_answer(b):
        return False
    na, nb = numbers_in(a), numbers_in(b)
    if na and nb:
        return _same_numbers(na, nb) or _same_numbers(nb, na)
    return answer_matches(a, b) or answer_matches(b, a)


def supported_by(answer: str, text: str) -> bool:
    """``text`` states ``answer``: all its numbers, or its words as a contiguous run."""
    if not normalize_answer(answer):
        return False
    numbers = numbers_in(answer)
    if numbers:
        return _same_numbers(numbers, numbers_in(text))
    return answer_matches(text, answer)
