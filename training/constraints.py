"""Verifiable instructions for CoT-SFT: a benign request with one constraint added, and its
reference answer rewritten to keep it.

Why: IFEval-style constraints ("all lowercase", "no commas", "end with this phrase") are half of
the capability axis, and the AlpacaEval rows never show one, so SFT teaches the model to answer
in its own format whatever the request says (IFEval strict 6/40 before SFT, 3/40 after). Rows
built here ask for a constraint in our own words and show an answer that keeps it; the reasoning
names the constraint first, so the model learns to read it before answering.

What is shared with evaluation is only the *kind* of instruction, as IFEval's instruction ids
(``change_case:english_lowercase``...) with their arguments: the prompts are AlpacaEval
requests, never IFEval's, and every phrasing is ours. Each kind's rewrite is exact (lowercase
is ``str.lower``; a postscript is appended; sentences become bullet points), and
``tests/test_constraints.py`` checks every kind against IFEval's reference checkers.

=============================================  ===============================================
kind (IFEval id)                               rewrite of the reference answer
=============================================  ===============================================
``change_case:english_lowercase``              lowercased
``change_case:english_capital``                uppercased
``punctuation:no_comma``                       commas dropped (a clause comma becomes a space)
``startend:end_checker``                       an end phrase appended as the last line
``startend:quotation``                         wrapped in double quotes
``detectable_format:title``                    a ``<<title>>`` line from the request's words
``detectable_content:postscript``              a ``P.S.`` line appended
``detectable_format:json_format``              ``{"answer": ...}``
``combination:repeat_prompt``                  the request repeated word for word first
``detectable_format:number_highlighted_sections``  the first lines of prose as ``*line*``
``detectable_format:number_bullet_lists``      the sentences grouped into exactly n ``* `` points
``length_constraints:number_paragraphs``       the paragraphs grouped into n, ``***`` between
``length_constraints:number_words``            unchanged: a limit the answer already keeps
``keywords:existence``                         unchanged: two of its own words as keywords
=============================================  ===============================================

A kind whose rewrite does not fit an answer (bullets from one sentence, a word limit on a long
answer) is skipped for it; ``constrain`` tries the kinds in the order it is given.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .ifeval import split_sentences

__all__ = ["KINDS", "Constrained", "constrain"]


@dataclass(frozen=True)
class Constrained:
    """A request's constraint and the answer that keeps it."""

    instruction_id: str
    """The IFEval instruction id of the constraint's kind."""
    kwargs: dict[str, Any]
    """Its arguments, as IFEval's checker takes them."""
    text: str
    """The sentence added to the request."""
    note: str
    """The sentence the reasoning adds: what the constraint asks of the answer."""
    answer: str
    """The reference answer, rewritten to keep it."""

    def ifeval(self, key: int, prompt: str) -> dict[str, Any]:
        """The row's IFEval record (``key``, the whole ``prompt``, the instruction and its
        arguments), as the RL ``ifeval`` reward reads it."""
        return {
            "key": key,
            "prompt": prompt,
            "instruction_id_list": [self.instruction_id],
            "kwargs": [self.kwargs],
        }


Rewrite = Callable[[random.Random, str, str], Constrained | None]
"""``(rng, request, answer) -> Constrained`` or None when the kind does not fit the answer."""

_END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have other questions.",
    "I hope this helps.",
    "That is all for now.",
)
_POSTSCRIPTS = (
    "If anything here is unclear, ask and I will explain it another way.",
    "A second source is always worth a look before you rely on this.",
    "Thank you for the interesting question.",
)
_WORD = re.compile(r"[A-Za-z]{5,}")
_COMMON = """
about above after again against because before being below between could doing during every
further having other their there these those through under until where which while would should
might also into your yours very more most such than then them they this that with from what when
will just only some each both
"""
_STOP = frozenset(_COMMON.split())


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


def _english(text: str) -> bool:
    """Whether ``text`` reads as English to langdetect, as IFEval's case checkers also ask
    (seeded as ``ifeval`` seeds it; short or shouted text is often taken for another language)."""
    import langdetect

    langdetect.DetectorFactory.seed = 0
    try:
        return bool(langdetect.detect(text) == "en")
    except langdetect.LangDetectException:
        return False


def _case(
    key: str,
    convert: Callable[[str], str],
    holds: Callable[[str], bool],
    texts: tuple[str, ...],
    note: str,
) -> Rewrite:
    """The rewrite of a whole answer into one letter case (IFEval's ``change_case`` kinds),
    asked for in one of ``texts`` and named by ``note``; it gives None when the converted
    answer is not English or has no letter of that case."""

    def rewrite(rng: random.Random, request: str, answer: str) -> Constrained | None:
        changed = convert(answer)
        if not holds(changed) or not _english(changed):
            return None
        return Constrained(key, {}, _pick(rng, texts), note, changed)

    return rewrite


_lowercase = _case(
    "change_case:english_lowercase",
    str.lower,
    str.islower,
    (
        "Write the whole reply in lowercase letters, with no capitals anywhere.",
        "Use only lowercase letters in your answer.",
        "No capital letters, please: everything in lowercase.",
    ),
    "Every letter of the answer has to be lowercase.",
)
_capital = _case(
    "change_case:english_capital",
    str.upper,
    str.isupper,
    (
        "Answer in English, in capital letters only.",
        "Write your entire reply in uppercase letters.",
        "Use all capital letters for the whole answer.",
    ),
    "Every letter of the answer has to be a capital.",
)


def _no_comma(rng: random.Random, request: str, answer: str) -> Constrained | None:
    if "," not in answer:
        return None
    plain = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer)  # 1,000 -> 1000
    plain = re.sub(r",[ \t]*", " ", plain).replace(" \n", "\n")
    text = _pick(
        rng,
        (
            "Do not use a single comma in your reply.",
            "Avoid commas entirely in the answer.",
            "Your response must contain no commas.",
        ),
    )
    note = "The answer must not contain any comma."
    return Constrained("punctuation:no_comma", {}, text, note, plain)


def _end_phrase(rng: random.Random, request: str, answer: str) -> Constrained | None:
    phrase = _pick(rng, _END_PHRASES)
    text = _pick(
        rng,
        (
            f'End your reply with the exact sentence "{phrase}" and write nothing after it.',
            f'The last words of your answer must be "{phrase}"',
            f'Close with "{phrase}", with nothing following it.',
        ),
    )
    note = f'The answer must end with "{phrase}" and nothing after it.'
    return Constrained(
        "startend:end_checker", {"end_phrase": phrase}, text, note, f"{answer.rstrip()}\n\n{phrase}"
    )


def _quotation(rng: random.Random, request: str, answer: str) -> Constrained | None:
    text = _pick(
        rng,
        (
            "Put your entire reply inside double quotation marks.",
            "Wrap the whole answer in double quotes.",
            'Your response should start and end with a double quote (").',
        ),
    )
    note = "The whole answer has to sit inside double quotation marks."
    return Constrained("startend:quotation", {}, text, note, f'"{answer.strip()}"')


def _title_words(request: str) -> str:
    words = re.findall(r"[A-Za-z0-9']+", request)[:6]
    return " ".join(w if w.isupper() else w.capitalize() for w in words)


def _title(rng: random.Random, request: str, answer: str) -> Constrained | None:
    title = _title_words(request)
    if not title:
        return None
    text = _pick(
        rng,
        (
            "Give the answer a title in double angle brackets, like <<a title>>.",
            "Start with a title wrapped in double angular brackets, for example <<my title>>.",
            "Include a title, written between << and >>.",
        ),
    )
    note = "The answer needs a title between << and >>."
    return Constrained("detectable_format:title", {}, text, note, f"<<{title}>>\n\n{answer}")


def _postscript(rng: random.Random, request: str, answer: str) -> Constrained | None:
    marker = _pick(rng, ("P.S.", "P.P.S"))
    if marker.lower() in answer.lower():
        return None
    text = _pick(
        rng,
        (
            f"Finish with a postscript that begins with {marker}",
            f"After the answer, add a note starting with {marker}",
            f"Add a postscript at the very end, starting with {marker}",
        ),
    )
    note = f"After the answer comes a postscript that starts with {marker}"
    extra = f"{answer.rstrip()}\n\n{marker} {_pick(rng, _POSTSCRIPTS)}"
    return Constrained(
        "detectable_content:postscript", {"postscript_marker": marker}, text, note, extra
    )


def _json(rng: random.Random, request: str, answer: str) -> Constrained | None:
    text = _pick(
        rng,
        (
            "Format your whole output as JSON.",
            "Reply with valid JSON only.",
            "Wrap the entire answer in JSON.",
        ),
    )
    note = "The whole answer has to be valid JSON, so I put it in an object."
    wrapped = json.dumps({"answer": answer.strip()}, ensure_ascii=False, indent=2)
    return Constrained("detectable_format:json_format", {}, text, note, wrapped)


def _repeat(rng: random.Random, request: str, answer: str) -> Constrained | None:
    text = _pick(
        rng,
        (
            "Before answering, copy my request above word for word (not this sentence), then "
            "answer it.",
            "First restate the request exactly as I wrote it, leaving out this sentence; then "
            "give your answer.",
        ),
    )
    note = "I have to repeat the request word for word before answering it."
    return Constrained(
        "combination:repeat_prompt",
        {"prompt_to_repeat": request},
        text,
        note,
        f"{request.strip()}\n\n{answer}",
    )


_LIST_LINE = re.compile(r"^\s*(?:[*\-#>|]|\d+[.)])")


def _highlights(rng: random.Random, request: str, answer: str) -> Constrained | None:
    if "*" in answer:
        return None
    n = rng.choice((1, 2, 3))
    lines = answer.split("\n")
    prose = [i for i, line in enumerate(lines) if line.strip() and not _LIST_LINE.match(line)]
    if len(prose) < n:
        return None
    for i in prose[:n]:
        lines[i] = f"*{lines[i].strip()}*"
    text = _pick(
        rng,
        (
            f"Highlight at least {n} section{'s' * (n > 1)} with markdown, like *this part*.",
            f"Mark at least {n} part{'s' * (n > 1)} of the answer in *italics with asterisks*.",
        ),
    )
    note = f"At least {n} part{'s' * (n > 1)} of the answer must be highlighted with asterisks."
    return Constrained(
        "detectable_format:number_highlighted_sections",
        {"num_highlights": n},
        text,
        note,
        "\n".join(lines),
    )


def _groups(items: Sequence[str], n: int) -> list[list[str]]:
    """``items`` in ``n`` consecutive groups as even as possible, none empty."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (k < extra)
        out.append(list(items[start:end]))
        start = end
    return out


def _bullets(rng: random.Random, request: str, answer: str) -> Constrained | None:
    if "*" in answer or any(_LIST_LINE.match(line) for line in answer.split("\n")):
        return None
    sentences = split_sentences(answer)
    n = rng.choice((2, 3, 4))
    if len(sentences) < n:
        return None
    points = "\n".join("* " + " ".join(g) for g in _groups(sentences, n))
    text = _pick(
        rng,
        (
            f"Answer in exactly {n} bullet points, each starting with * .",
            f"Use exactly {n} markdown bullet points (* like this) and no other list.",
        ),
    )
    note = f"The answer must be exactly {n} bullet points, each starting with *."
    return Constrained(
        "detectable_format:number_bullet_lists", {"num_bullets": n}, text, note, points
    )


def _paragraphs(rng: random.Random, request: str, answer: str) -> Constrained | None:
    if "*" in answer:
        return None
    blocks = [b.strip() for b in re.split(r"\n\s*\n", answer) if b.strip()]
    units = blocks if len(blocks) >= 2 else split_sentences(answer)
    n = rng.choice((2, 3))
    if len(units) < n:
        return None
    joiner = "\n\n" if units is blocks else " "
    body = "\n\n***\n\n".join(joiner.join(g) for g in _groups(units, n))
    text = _pick(
        rng,
        (
            f"Write exactly {n} paragraphs, separated by the markdown divider ***.",
            f"Split the answer into {n} paragraphs with *** on a line between them.",
        ),
    )
    note = f"The answer must be exactly {n} paragraphs with *** between them."
    return Constrained(
        "length_constraints:number_paragraphs", {"num_paragraphs": n}, text, note, body
    )


def _word_limit(rng: random.Random, request: str, answer: str) -> Constrained | None:
    count = len(re.findall(r"\w+", answer))
    if rng.random() < 0.5 and count <= 250:
        limit = 10 * math.ceil((count + 10) / 10)
        relation, text = (
            "less than",
            _pick(
                rng,
                (
                    f"Keep the answer under {limit} words.",
                    f"Use fewer than {limit} words.",
                ),
            ),
        )
        note = f"The answer must stay under {limit} words."
    elif count >= 40:
        limit = 10 * math.floor(count * 0.8 / 10)
        relation, text = (
            "at least",
            _pick(
                rng,
                (
                    f"Write at least {limit} words.",
                    f"The answer should be {limit} words or longer.",
                ),
            ),
        )
        note = f"The answer must be at least {limit} words long."
    else:
        return None
    return Constrained(
        "length_constraints:number_words",
        {"num_words": limit, "relation": relation},
        text,
        note,
        answer,
    )


def _keywords(rng: random.Random, request: str, answer: str) -> Constrained | None:
    words = sorted({w.lower() for w in _WORD.findall(answer)} - _STOP)
    if len(words) < 2:
        return None
    chosen = rng.sample(words, 2)
    text = _pick(
        rng,
        (
            f'Include the words "{chosen[0]}" and "{chosen[1]}" in your answer.',
            f"Your response must use the keywords {chosen[0]} and {chosen[1]}.",
        ),
    )
    note = f'The answer has to contain "{chosen[0]}" and "{chosen[1]}".'
    return Constrained("keywords:existence", {"keywords": chosen}, text, note, answer)


KINDS: dict[str, Rewrite] = {
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _capital,
    "punctuation:no_comma": _no_comma,
    "startend:end_checker": _end_phrase,
    "startend:quotation": _quotation,
    "detectable_format:title": _title,
    "detectable_content:postscript": _postscript,
    "detectable_format:json_format": _json,
    "combination:repeat_prompt": _repeat,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:number_bullet_lists": _bullets,
    "length_constraints:number_paragraphs": _paragraphs,
    "length_constraints:number_words": _word_limit,
    "keywords:existence": _keywords,
}
"""IFEval instruction id -> the rewrite that keeps it."""


def constrain(
    rng: random.Random, request: str, answer: str, kinds: Sequence[str]
) -> Constrained | None:
    """The first of ``kinds`` whose rewrite fits ``answer`` (None if none does, or if the
    answer holds code, which no case change or comma rule may touch)."""
    if "```" in answer:
        return None
    for kind in kinds:
        made = KINDS[kind](rng, request, answer)
        if made is not None:
            return made
    return None
