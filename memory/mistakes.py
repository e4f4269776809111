"""Mistakes as keys: the step a correction replaced, and how a draft is cut into steps.

A correction record holds the model's reasoning (the mistake) and the user's corrected
reasoning. ``mistake_step`` aligns the two step by step (sentences and lines, compared without
case or extra spaces) and returns the first step of the reasoning that the correction replaced,
with the step(s) that replaced it:

    reasoning:  "Brazil is in South America. The capital of Brazil is Sao Paulo."
    corrected:  "Brazil is in South America. The capital of Brazil is Brasilia. ..."
    -> MistakeStep(mistake="The capital of Brazil is Sao Paulo.",
                   correction="The capital of Brazil is Brasilia.")

The store embeds ``mistake`` beside the question (the record's mistake key, ``store.py``), so a
later draft that makes the same mistake while answering a *different* question finds it; the
server then replaces the drafted step by ``correction`` and lets the model continue from there
(``server/memory/watch.py``).

Why the step and not the whole reasoning: a draft is checked one step at a time, and a step
compared with a step is a sharp match, while the whole reasoning dilutes the mistake with the
steps around it (measured in ``bench/memory_mistakes.py``; docs/BENCHMARKS.md).

The pair of steps sharing the most words inside the first replaced block is taken (a correction
usually restates the step it fixes). A correction that only adds steps (nothing of the
reasoning was replaced) or only deletes them (nothing to put in their place) has no mistake
key: it is recalled by its question only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .records import CorrectionRecord

__all__ = [
    "MAX_STEP_CHARS",
    "PENDING",
    "SURE_SIMILARITY",
    "MistakeStep",
    "mistake_keys",
    "mistake_step",
    "repeats",
    "split_steps",
    "step_ends",
]

MAX_STEP_CHARS = 600
"""Longest step kept as a mistake or a correction (a step is a sentence, rarely longer)."""

_TAGS = re.compile(r"</?think>")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*(?=\s)|\n")
"""Where a step ends: after ., ! or ? (and closing quotes or brackets) before white space, or at
a line break. "3.14" and "e.g.," do not end a step."""
_ANSWER_GIVEN = "Answer given:"

PENDING = np.empty(0, dtype=np.float32)
"""A mistake key not computed yet (stored NULL: a row imported without an embedder); ``None``
is a record without one (stored empty)."""


@dataclass(frozen=True)
class MistakeStep:
    mistake: str
    """The step of the reasoning the correction replaced (what drafts are compared with)."""
    correction: str
    """What replaced it: inserted in place of a draft step that makes the same mistake."""


def step_ends(text: str) -> list[int]:
    """Offsets in ``text`` just after each complete step (a step still being written, with no
    boundary after it yet, has none)."""
    return [m.end() for m in _BOUNDARY.finditer(text)]


def split_steps(text: str) -> list[str]:
    """The steps of ``text``: sentences and lines, stripped, without ``<think>`` tags; the
    text after the last boundary is a step too."""
    text = _TAGS.sub(" ", text)
    out, start = [], 0
    for end in [*step_ends(text), len(text)]:
        step = " ".join(text[start:end].split())
        if step:
            out.append(step)
        start = end
    return out


def _norm(step: str) -> str:
    return " ".join(step.casefold().split()).rstrip(".!?")


def _cut(step: str) -> str:
    return step if len(step) <= MAX_STEP_CHARS else step[: MAX_STEP_CHARS - 3].rstrip() + "..."


def _overlap(a: str, b: str) -> float:
    """How much two steps share, word by word (0..1)."""
    return difflib.SequenceMatcher(a=a.split(), b=b.split(), autojunk=False).ratio()


def mistake_step(reasoning: str, corrected: str) -> MistakeStep | None:
    """The step of ``reasoning`` that ``corrected`` replaced, and its replacement; None when no
    step was replaced (steps only added or only removed, or nothing differs).

    In the first replaced block, the pair of steps (one of each side) sharing the most words is
    taken: a correction usually restates the mistaken step ("... has 10 strings" -> "... has 6
    strings"), while the steps around it are preamble, or what the model wrote after the fix.
    """
    mine, theirs = split_steps(reasoning), split_steps(corrected)
    matcher = difflib.SequenceMatcher(
        a=[_norm(s) for s in mine], b=[_norm(s) for s in theirs], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "replace":
            continue
        # "Answer given: X" (``/cot/edit``'s answer field) is the mistake only when the
        # reasoning itself has no step to offer.
        wrong = [s for s in mine[i1:i2] if not s.startswith(_ANSWER_GIVEN)] or mine[i1:i2]
        pairs = [(w, r) for r in theirs[j1:j2] for w in wrong]
        mistake, correction = max(pairs, key=lambda p: _overlap(_norm(p[0]), _norm(p[1])))
        return MistakeStep(_cut(mistake), _cut(correction))
    return None


SURE_SIMILARITY = 0.8
"""A draft step this close to a mistake repeats it whatever words it uses (``repeats``)."""
_STOP = frozenset(
    "a an the of is are was were be been to in on at and or it its this that these those which "  # noqa: SIM905
    "for with as by from i you he she we they not no yes so".split()
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.casefold()) if w not in _STOP}


def repeats(step: str, mistake: MistakeStep, similarity: float, threshold: float) -> bool:
    """Whether a draft ``step``, at ``similarity`` to ``mistake.mistake``, repeats that mistake.

    Sentence embeddings barely see which entity a sentence is about: "The atomic number of iron
    is 26." is 0.66 from "I think the atomic number of cobalt is 7." (all-MiniLM-L6-v2), and
    with 20 such corrections stored most drafts about another element would reach one of them.
    So from ``threshold`` up to ``SURE_SIMILARITY`` the step must also contain a word that only
    the mistake has (what the correction removed: "Istanbul", "7"); above it, similarity alone
    decides. Measured in bench/memory_mistakes.py and docs/BENCHMARKS.md.
    """
    if similarity >= max(threshold, SURE_SIMILARITY):
        return True
    if similarity < threshold:
        return False
    return bool((_words(mistake.mistake) - _words(mistake.correction)) & _words(step))


def mistake_keys(
    records: Sequence[CorrectionRecord], embed: Callable[[list[str]], np.ndarray]
) -> list[np.ndarray | None]:
    """Each record's mistake key: the unit vector (dim,) of its mistaken step, or None (a
    preference, or a correction that replaced no step). One ``embed`` call for all."""
    steps = [
        mistake_step(r.reasoning, r.corrected_reasoning) if r.kind == "correction" else None
        for r in records
    ]
    texts = [s.mistake for s in steps if s is not None]
    vectors = iter(embed(texts) if texts else [])
    return [None if s is None else next(vectors) for s in steps]
