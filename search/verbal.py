"""Linguistic calibration: an answer's wording says how sure it is, as its number does.

A search answer carries a confidence (stated, or the answer tokens' probability, mapped
through the model's fitted calibration). With ``safework.search.verbal_confidence`` the
answer's text says the same in words, in one of three bands of the calibrated confidence:

=============  ==============  ============================================================
wording        confidence      phrase
=============  ==============  ============================================================
``confident``  at least 0.8    "I'm confident: <answer>"
``likely``     0.5 up to 0.8   "The sources suggest <answer>, but I am not certain."
``unverified`` below 0.5       "I could not verify this. My best guess: <answer>"
=============  ==============  ============================================================

So on calibrated confidences, "I'm confident" is right at least four times in five, and "I
could not verify" less often than not. ``classify`` reads the band a text's own wording
expresses (a small lexicon of cue phrases, negations first: "not sure" is unverified, "not
certain" is likely); the loop applies it to the model's last reflection before its
``<answer>``, so how often the model's own words agree with its calibrated number is measured
(``safework.search.wording.model``) beside the wording the server gives the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Wording = Literal["confident", "likely", "unverified"]
WORDINGS: tuple[Wording, ...] = ("confident", "likely", "unverified")
CONFIDENT_AT = 0.8
"""Calibrated confidence from which an answer is worded ``confident``."""
LIKELY_AT = 0.5
"""... and ``likely`` (below it: ``unverified``)."""

CUES: dict[Wording, str] = {
    "confident": "I'm confident of this.",
    "likely": "The sources suggest it, but I am not certain.",
    "unverified": "I could not verify it.",
}
"""One sentence per band, for reasoning that states its own confidence in words (the search
cold-start transcripts end their last reflection with one)."""

_APOS = "['’]"
_CUE_PATTERNS: dict[Wording, tuple[str, ...]] = {
    # Checked first: negated certainty and explicit failure to verify.
    "unverified": (
        rf"\b(?:cannot|can{_APOS}t|could\s+not|couldn{_APOS}t|unable\s+to|failed\s+to|"
        rf"(?:was|am|were)\s+not\s+able\s+to|(?:wasn|weren){_APOS}t\s+able\s+to)\s+"
        r"(?:verify|confirm|find|tell)\b",
        rf"\b(?:not|n{_APOS}t)\s+(?:very\s+|at\s+all\s+)?(?:sure|confident)\b",
        r"\b(?:unsure|unlikely|doubtful)\b",
        r"\bunverified\b",
        rf"\bi\s+(?:do\s+not|don{_APOS}t)\s+know\b",
        r"\bno\s+idea\b",
        r"\bbest\s+guess\b",
        r"\bunknown\b",
        r"\bno\s+(?:reliable\s+)?(?:source|evidence)s?\b",
    ),
    "likely": (
        r"\bsources?\s+(?:suggests?|indicates?|points?\s+to|says?|seems?)\b",
        rf"\b(?:not|n{_APOS}t)\s+(?:completely\s+|entirely\s+|fully\s+)?certain\b",
        r"\b(?:probably|likely|presumably|apparently)\b",
        r"\b(?:appears?|seems?)\s+to\b",
        r"\bi\s+(?:think|believe)\b",
        r"\bmost\s+likely\b",
    ),
    "confident": (
        rf"\b(?:i{_APOS}m|i\s+am|we\s+are)\s+(?:very\s+|quite\s+|fully\s+)?"
        r"(?:confident|sure|certain)\b",
        r"\b(?:certainly|definitely|undoubtedly|clearly)\b",
        r"\bwithout\s+(?:a\s+)?doubt\b",
        r"\bconfirm(?:s|ed)\b",
    ),
}
_CUES = {w: re.compile("|".join(p), re.IGNORECASE) for w, p in _CUE_PATTERNS.items()}
_NO_ANSWER = frozenset({"", "unknown", "i do not know", "i don't know", "none"})


def wording_for(confidence: float) -> Wording:
    """The band of a (calibrated) confidence in ``[0, 1]``."""
    if confidence >= CONFIDENT_AT:
        return "confident"
    if confidence >= LIKELY_AT:
        return "likely"
    return "unverified"


def classify(text: str) -> Wording | None:
    """The band ``text``'s own wording expresses, or None when it states no confidence.

    >>> classify("Result [1] gives it: 26. I'm confident of this.")
    'confident'
    >>> classify("I'm not sure; the sources disagree."), classify("It is probably 1869.")
    ('unverified', 'likely')
    >>> classify("The atomic number of iron is 26.") is None
    True
    """
    for wording in WORDINGS[::-1]:  # unverified, likely, confident: negations win
        if _CUES[wording].search(text):
            return wording
    return None


def phrase(wording: Wording, answer: str) -> str:
    """The answer worded for its band.

    >>> phrase("likely", "1869.")
    'The sources suggest 1869, but I am not certain.'
    """
    answer = answer.strip()
    if answer.lower().rstrip(".") in _NO_ANSWER:
        return "I could not verify this, and I do not know the answer."
    if wording == "confident":
        return f"I'm confident: {answer}"
    if wording == "likely":
        return f"The sources suggest {_inline(answer)}, but I am not certain."
    return f"I could not verify this. My best guess: {answer}"


def _inline(answer: str) -> str:
    """An answer to run on inside a sentence: no closing full stop, a leading article or
    pronoun lower-cased ("The sources suggest the ...")."""
    answer = answer.rstrip().rstrip(".")
    first, _, rest = answer.partition(" ")
    if rest and first in {"The", "A", "An", "It", "Its", "This", "That", "These", "Those"}:
        return f"{first.lower()} {rest}"
    return answer


@dataclass(frozen=True)
class VerbalAnswer:
    """An answer's wording: the band of its confidence, and the band of the model's own."""

    wording: Wording
    """The band of ``confidence``: the wording the answer is given."""
    confidence: float
    basis: Literal["calibrated", "raw"]
    """Which number was worded: the calibrated confidence, or the raw one without a map."""
    model: Wording | None
    """The band the model's own words expressed before answering (None: it stated none)."""

    @property
    def agrees(self) -> bool | None:
        return None if self.model is None else self.model == self.wording

    def to_json(self) -> dict[str, Any]:
        return {
            "wording": self.wording,
            "basis": self.basis,
            "model": self.model,
            "agrees": self.agrees,
        }


def verbalize(
    raw: float | None, calibrated: float | None, model_text: str | None
) -> VerbalAnswer | None:
    """The wording of an answer with these confidences (None when it has neither);
    ``model_text`` is the model's reasoning before its answer, classified for agreement."""
    if calibrated is not None:
        value, basis = calibrated, "calibrated"
    elif raw is not None:
        value, basis = raw, "raw"
    else:
        return None
    model = classify(model_text) if model_text else None
    return VerbalAnswer(wording_for(value), round(value, 4), basis, model)  # type: ignore[arg-type]
