"""Training questions for the search cold start, written by program, none of them evaluation.

The search stage is evaluated on the element questions of the built-in corpus (``search/corpus.py``:
``element_qa``, split by element with ``split_qa(items, 0.5, seed=0)``): ``safework-train eval``,
``fit_calibration`` and ``bench/search.py`` score the second half, the *held-out* one. None of
those is used here. The questions, each with an exact answer (``QAItem``, scored by
``QAItem.is_correct``), are:

- ``acronym``: FOLDOC entries whose text opens ``<category> (ABC) ...`` under the title that
  spells ABC out: "In computing, what does AHPL stand for?" -> "A Hardware Programming
  Language". Kept only when no other document states both the abbreviation and the expansion,
  no entry is titled with the abbreviation (FOLDOC's lists of meanings) and no other entry
  marks the same abbreviation: the answer is stated in exactly one document.
- ``year``: Wikipedia biographies that open ``Name (...; DATE - DATE)``: the years of birth and
  death ("In what year was Albert Einstein born?" -> "1879").
- ``element``: element questions of the *fit* half only (``fit_element_items``), the half the
  search RL stage trains on and the eval fits its calibration map on; every kind of each
  element. The element documents are short records (``Symbol: Fe``, ``Atomic number: 26``):
  without them the cold start never shows the model reading a value out of such a record, and
  the RL stage (which rolls out on this half) learned to answer without reading. All four
  questions of one record teach which field answers which question: with two per element
  the pool (~100) fell short of the element share of 480 transcripts (the rest went to
  acronyms), and the SFT model answered the element's name to 9 of 12 held-out "chemical
  symbol" questions.
- ``prose``: answers read out of running prose (``prose_questions``): who made a thing and
  when, from FOLDOC entries' openings, and capitals from Wikipedia articles. Every other kind's
  answer sits in a result's title or a record's field; served, a model taught only those
  named the question's own subject when the answer stood in a sentence ("What is the capital
  of Albania?" -> "Albania", Tirana in the top result).
- ``direct``: questions that need no search: sums of two numbers written by program, and a
  short list of common knowledge written for this project (``COMMON``).

``SearchQuestion`` adds what the cold-start writer (``search_cot.py``) needs: the model's own
query and a second, different query for when the first misses, and what is asked in words.
Everything is a pure function of the corpus and the seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safework.search.answers import TOKEN, supported_by
from safework.search.corpus import QAItem, element_qa, split_qa

__all__ = [
    "COMMON",
    "KINDS",
    "SearchQuestion",
    "acronym_questions",
    "direct_questions",
    "element_questions",
    "fit_element_items",
    "prose_questions",
    "search_questions",
    "year_questions",
]

KINDS = ("acronym", "element", "year", "prose", "direct")

COMMON: tuple[tuple[str, str, str], ...] = (
    ("How many days are there in a week?", "7", "A week has seven days."),
    ("How many minutes are there in an hour?", "60", "An hour has sixty minutes."),
    ("How many hours are there in a day?", "24", "A day has twenty-four hours."),
    ("How many months are there in a year?", "12", "A year has twelve months."),
    ("What is the capital of France?", "Paris", "The capital of France is Paris."),
    ("What is the capital of Japan?", "Tokyo", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "Rome", "The capital of Italy is Rome."),
    ("What is the largest planet in the Solar System?", "Jupiter", "Jupiter is the largest."),
    ("Which planet is closest to the Sun?", "Mercury", "Mercury orbits closest to the Sun."),
    ("At what temperature in degrees Celsius does water freeze at sea level?", "0", "At 0 C."),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100", "At 100 C."),
    ("How many legs does a spider have?", "8", "Spiders have eight legs."),
    ("How many sides does a hexagon have?", "6", "A hexagon has six sides."),
    ("How many bits are there in a byte?", "8", "A byte is eight bits."),
    (
        "What colour do you get by mixing blue and yellow paint?",
        "green",
        "Blue and yellow make green.",
    ),
    ("How many continents are there on Earth?", "7", "By the usual count there are seven."),
    ("What is the square root of 81?", "9", "9 times 9 is 81."),
    ("How many seconds are there in a minute?", "60", "A minute has sixty seconds."),
)
"""``(question, answer, the model's one-line reason)``: common knowledge, written for this
project, answered without searching."""


@dataclass(frozen=True)
class SearchQuestion:
    """A question with an exact answer and how the cold-start transcript goes after it."""

    item: QAItem
    queries: tuple[str, ...]
    """The model's first query, then a different one for a second search."""
    asked: str
    """What the question asks, in words ("what AHPL stands for")."""
    known: str = ""
    """For a question that needs no search: the model's reason (empty otherwise)."""

    @property
    def needs_search(self) -> bool:
        return not self.known


# --------------------------------------------------------------------------- acronyms

_MARKED = re.compile(r"^(?:Also: [^\n]*\n\n)?(?:\d+\. )?<[^<>\n]+>\s*\(([A-Z][A-Za-z0-9]{1,7})\)\s")
_ANY_MARK = re.compile(r"\(([A-Z][A-Za-z0-9]{1,7})\)")
_TITLE = re.compile(r"^[A-Za-z][A-Za-z0-9 '-]{3,60}$")


def _expansion_fits(acronym: str, title: str) -> bool:
    """The title spells the abbreviation out: several words, the first starting with its first
    letter, its letters in order in the title (``ALIAS`` in ``ALgorIthmic ASsembly``)."""
    words = title.split()
    if len(words) < 2 or title.lower().startswith(acronym.lower()):
        return False
    if words[0][0].lower() != acronym[0].lower():
        return False
    rest = iter(title.lower())
    return all(ch in rest for ch in acronym.lower())


def acronym_questions(documents: Sequence[dict[str, Any]]) -> list[SearchQuestion]:
    """FOLDOC abbreviations whose expansion is stated in exactly one document (sorted by id)."""
    foldoc = [d for d in documents if d.get("source") == "foldoc"]
    titles = {d["title"].lower() for d in foldoc}
    marks: dict[str, int] = {}
    for d in foldoc:
        for acronym in set(_ANY_MARK.findall(d["text"])):
            marks[acronym] = marks.get(acronym, 0) + 1
    postings = _postings(documents)
    out = []
    for d in foldoc:
        match = _MARKED.match(d["text"])
        if not match or not _TITLE.match(d["title"]):
            continue
        acronym, title = match.group(1), d["title"]
        if marks.get(acronym) != 1 or acronym.lower() in titles:
            continue
        if not _expansion_fits(acronym, title):
            continue
        others = [documents[i] for i in postings.get(acronym, ()) if documents[i]["id"] != d["id"]]
        if any(supported_by(title, f"{o['title']}\n{o['text']}") for o in others):
            continue
        item = QAItem(
            id=f"{d['id']}#acronym",
            question=f"In computing, what does {acronym} stand for?",
            answer=title,
            aliases=(),
            doc_id=d["id"],
            kind="acronym",
            subject=acronym,
        )
        out.append(
            SearchQuestion(item, (f"{acronym} stands for", acronym), f"what {acronym} stands for")
        )
    return sorted(out, key=lambda q: q.item.id)


def _postings(documents: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    """Case-sensitive word -> indices of the documents that hold it."""
    out: dict[str, set[int]] = {}
    for i, d in enumerate(documents):
        for token in set(TOKEN.findall(f"{d['title']}\n{d['text']}")):
            out.setdefault(token, set()).add(i)
    return out


# --------------------------------------------------------------------------- years

_LIFE = re.compile(r"^[^()]{2,60}?\(([^()]*?)\)\s+(?:was|is)\b")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")


def year_questions(documents: Sequence[dict[str, Any]]) -> list[SearchQuestion]:
    """Years of birth and death from Wikipedia biographies' opening ``(... YYYY - ... YYYY)``."""
    out = []
    for d in documents:
        if d.get("source") != "wikipedia":
            continue
        match = _LIFE.match(d["text"])
        if not match or ("–" not in match.group(1) and " - " not in match.group(1)):
            continue
        born_part, _, died_part = match.group(1).rpartition("–")
        born, died = _YEAR.findall(born_part), _YEAR.findall(died_part)
        name = d["title"]
        for event, years in (("born", born), ("died", died)):
            if len(years) != 1:
                continue
            item = QAItem(
                id=f"{d['id']}#{event}",
                question=f"In what year was {name} born?"
                if event == "born"
                else f"In what year did {name} die?",
                answer=years[0],
                aliases=(),
                doc_id=d["id"],
                kind="year",
                subject=name,
            )
            verb = "was born" if event == "born" else "died"
            queries = (f"{name} {event}", f"{name} biography")
            out.append(SearchQuestion(item, queries, f"the year {name} {verb}"))
    return sorted(out, key=lambda q: q.item.id)


# --------------------------------------------------------------------------- prose

_NAME = r"(?:[A-Z]\. )?[A-Z][a-z]+(?:[ -](?:[A-Z]\. )?[A-Z][a-z]+){1,2}"
"""A name of two or three capitalised words (``Jean Ichbiah``, ``S. Bourne`` is too short)."""
_MAKERS = {
    "developed": "developed",
    "designed": "designed",
    "written": "wrote",
    "invented": "invented",
    "created": "created",
    "devised": "devised",
    "implemented": "implemented",
}
"""The participle in the entry -> the question's verb ("written by" -> "who wrote")."""
_BY = re.compile(rf"\b({'|'.join(_MAKERS)}) by ({_NAME})\b(?![ -]?[A-Z])")
_WHEN = re.compile(
    rf"\b({'|'.join(_MAKERS)}|introduced|released|published) (?:by {_NAME}"
    rf"(?: and {_NAME})? (?:(?:at|of) [A-Z][^.,;()]{{1,40}} )?)?in (1[89][0-9]{{2}}|20[0-2][0-9])\b"
    r"(?![/-])"
)
_PROSE_SPAN = 400
_FIRST_SENTENCE = re.compile(r"(?<![A-Z])\.\s+(?=[A-Z])")
"""Only the first sentence of an entry (at most ``_PROSE_SPAN`` characters) is read: further
on, a name or a year is often about something else the entry mentions ("The name refers to a
formalism invented by ...")."""
_SENSES = re.compile(r"^(?:Also: [^\n]*\n\n)?1\. ")
_ELSEWHERE = re.compile(r"[\"{]|\b(?:book|paper|article|report|thesis)\b|<person>", re.I)
"""Before the participle, a quotation, a link to another entry or a publication means it is
probably about that other thing ("described in the book ... written by"), and a person's
entry names what the person made, not who made the person."""


def _capital(title: str) -> re.Pattern[str]:
    t = re.escape(title)
    owner = rf"(?:Its|The (?:country|state|province|territory|island)['’]s|{t}['’]s)"
    city = r"(?: city)?(?: and (?:largest|most populous) city)?"
    place = r"[A-Z][\w'’-]+(?: (?:[A-Z][\w'’-]+|la|de|del|da|do|el|al)){0,3}"
    return re.compile(
        rf"\b(?:{owner} capital{city}|The capital{city}(?: of {t})?)(?:,| is|:)? ({place})"
    )


_YEAR_RE = r"(1[0-9]{3}|20[0-2][0-9])"
_FINDERS = {
    "Discovered": "discovered",
    "Isolated": "first isolated",
    "Identified": "first identified",
    "First isolated": "first isolated",
    "First identified": "first identified",
    "First reported": "first reported",
    "First produced": "first produced",
    "First made": "first made",
    "First prepared": "first prepared",
}
"""How an element record says who found it -> the question's verb."""
_FOUND = re.compile(
    rf"\b({'|'.join(_FINDERS)}) (?:in {_YEAR_RE} )?by "
    r"((?:(?:[A-Z]\.\s?){1,3}|(?:Sir )?[A-Z][a-z]+\s(?=[A-Z]))*[A-Z][a-z]{2,})"
    rf"(?=,|\.\s|\.$| (?:in|and|of|at|via|with)\b)(?: in {_YEAR_RE}\b)?"
)
_WORK = re.compile(
    r"\b(?:novel|novella|book|essay|poem|treatise)\b[^.]{0,60}?"
    r"\bby ([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})"
)
HELD_OUT_DOCS = frozenset(
    {"wiki:Albania", "wiki:Angola", "wiki:Azerbaijan", "wiki:Animal_Farm", "element:actinium"}
)
"""Documents no ``prose`` question is taken from: ``bench/ask_checkpoint.py`` asks about them
(a capital, an author, a discoverer), so the served check stays a check of reading prose it
has not seen answered."""


def _prose_item(d: dict[str, Any], tag: str, question: str, answer: str, subject: str) -> QAItem:
    return QAItem(f"{d['id']}#{tag}", question, answer, (), d["id"], "prose", subject)


def _element_prose(d: dict[str, Any]) -> list[SearchQuestion]:
    """Who found an element, and when, from its record's prose."""
    found = _FOUND.search(d["text"])
    if not found:
        return []
    verb, name, element = _FINDERS[found.group(1)], found.group(3), d["title"].lower()
    if " " not in name and d["text"][found.end(3) :].startswith(" and "):
        return []  # one of several people by surname ("Reich and Richter"), or a first name
    out = [
        SearchQuestion(
            _prose_item(d, "who", f"Who {verb} {element}?", name, element),
            (f"{element} {verb} by", f"{element} history"),
            f"who {verb} {element}",
        )
    ]
    year = found.group(2) or found.group(4)
    if year:
        out.append(
            SearchQuestion(
                _prose_item(d, "when", f"In what year was {element} {verb}?", year, element),
                (f"{element} {verb} in", f"{element} history"),
                f"the year {element} was {verb}",
            )
        )
    return out


def prose_questions(documents: Sequence[dict[str, Any]]) -> list[SearchQuestion]:
    """Questions whose answer is read out of running prose, not a title or a record's field
    (sorted by id):

    - FOLDOC entries with one sense that name who made the thing in their opening ("A
      language designed by David Betz in 1986"): "In computing, who designed ADVSYS?" ->
      "David Betz", and the year when a participle ties one to it: "In computing, in what
      year was ADVSYS designed?" -> "1986";
    - Wikipedia articles that state their place's capital ("Its capital is Oranjestad"):
      "What is the capital of Aruba?" -> "Oranjestad".

    The answer never repeats the question's subject, so echoing the subject (what the model
    did on capitals before these existed) is never right.
    """
    out = []
    for d in documents:
        title, text = d["title"], d["text"]
        if d["id"] in HELD_OUT_DOCS:
            continue
        if d.get("source") == "elements":
            out += _element_prose(d)
        elif d.get("source") == "foldoc" and _TITLE.match(title) and not _SENSES.match(text):
            opening = _FIRST_SENTENCE.split(text[:_PROSE_SPAN], maxsplit=1)[0]
            by = _BY.search(opening)
            if by and _ELSEWHERE.search(opening[: by.start()]):
                by = None
            if by and title.lower() not in by.group(2).lower():
                verb = _MAKERS[by.group(1)]
                item = QAItem(
                    f"{d['id']}#who", f"In computing, who {verb} {title}?", by.group(2), (),
                    d["id"], "prose", title,
                )  # fmt: skip
                queries = (f"{title} {by.group(1)} by", title)
                out.append(SearchQuestion(item, queries, f"who {verb} {title}"))
            when = _WHEN.search(opening)
            if when and not _ELSEWHERE.search(opening[: when.start()]):
                verb = when.group(1)
                item = QAItem(
                    f"{d['id']}#when", f"In computing, in what year was {title} {verb}?",
                    when.group(2), (), d["id"], "prose", title,
                )  # fmt: skip
                queries = (f"{title} {verb} in", f"{title} history")
                out.append(SearchQuestion(item, queries, f"the year {title} was {verb}"))
        elif d.get("source") == "wikipedia":
            first = _FIRST_SENTENCE.split(text[:_PROSE_SPAN], maxsplit=1)[0]
            work, name = _WORK.search(first), re.sub(r"\s*\(.*\)$", "", title)
            if work:
                item = _prose_item(d, "author", f"Who wrote {name}?", work.group(1), name)
                queries = (f"{name} written by", f"{name} author")
                out.append(SearchQuestion(item, queries, f"who wrote {name}"))
            capital = _capital(title).search(text)
            if capital and capital.group(1).lower() != title.lower():
                item = QAItem(
                    f"{d['id']}#capital", f"What is the capital of {title}?", capital.group(1),
                    (), d["id"], "prose", title,
                )  # fmt: skip
                queries = (f"capital of {title}", f"{title} capital city")
                out.append(SearchQuestion(item, queries, f"the capital of {title}"))
    return sorted(out, key=lambda q: q.item.id)


# --------------------------------------------------------------------------- elements

EVAL_SPLIT_SEED = 0
"""The seed of the element split that evaluation uses (``training/evaluate.py``)."""

_ELEMENT_ASKED = {
    # kind -> (what is asked, in words; the first query; the second query)
    "atomic_number": ("the atomic number of {s}", "{s} atomic number", "{s} chemical element"),
    "symbol": ("the chemical symbol of {s}", "{s} chemical symbol", "{s} chemical element"),
    "element_by_symbol": ("the element with the symbol {s}", "element symbol {s}", "{s} element"),
    "element_by_number": (
        "the element with atomic number {s}",
        "atomic number {s}",
        "element number {s}",
    ),
}


def fit_element_items(corpus: Path | None = None) -> list[QAItem]:
    """The fit half of the element questions (``split_qa``'s first half at the eval's seed):
    never the held-out half that evaluation scores."""
    fit, _held_out = split_qa(element_qa(corpus), 0.5, seed=EVAL_SPLIT_SEED)
    return fit


def element_questions(items: Sequence[QAItem], per_element: int = 4) -> list[SearchQuestion]:
    """``per_element`` questions of each element among ``items`` (4: every kind), their kinds
    rotating from one element to the next so every kind is taught (sorted by id)."""
    by_doc: dict[str, list[QAItem]] = {}
    for item in items:
        if item.kind in _ELEMENT_ASKED:
            by_doc.setdefault(item.doc_id, []).append(item)
    kinds = list(_ELEMENT_ASKED)
    out = []
    for n, doc_id in enumerate(sorted(by_doc)):
        own = {item.kind: item for item in by_doc[doc_id]}
        order = kinds[n % len(kinds) :] + kinds[: n % len(kinds)]
        for kind in [k for k in order if k in own][:per_element]:
            item = own[kind]
            asked, first, second = (t.format(s=item.subject) for t in _ELEMENT_ASKED[kind])
            out.append(SearchQuestion(item, (first, second), asked))
    return sorted(out, key=lambda q: q.item.id)


# --------------------------------------------------------------------------- no search


def direct_questions(n_sums: int, seed: int) -> list[SearchQuestion]:
    """The ``COMMON`` questions, then ``n_sums`` sums of two two- or three-digit numbers."""
    out = []
    for i, (question, answer, known) in enumerate(COMMON):
        item = QAItem(f"common:{i}", question, answer, (), "", "direct", question)
        out.append(SearchQuestion(item, (), "", known))
    rng = random.Random(f"search-sums-{seed}")
    seen: set[tuple[int, int]] = set()
    while len(seen) < n_sums:
        a, b = rng.randint(12, 499), rng.randint(12, 499)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        item = QAItem(f"sum:{a}+{b}", f"What is {a} + {b}?", str(a + b), (), "", "direct", "sum")
        out.append(SearchQuestion(item, (), "", f"This is arithmetic: {a} + {b} = {a + b}."))
    return out


def search_questions(
    documents: Iterable[dict[str, Any]],
    n_sums: int = 200,
    seed: int = 0,
    elements: Sequence[QAItem] = (),
) -> dict[str, list[SearchQuestion]]:
    """Every training question of each kind (``KINDS``) from the built-in corpus documents
    and ``elements``, which must be fit-half items (``fit_element_items``). Element records are
    a source of ``prose`` questions (who found an element, when) only for those fit-half
    elements, and of no other kind."""
    documents = list(documents)
    docs = [d for d in documents if d.get("source") != "elements"]
    fit = {item.doc_id for item in elements}
    records = [d for d in documents if d.get("source") == "elements" and d["id"] in fit]
    return {
        "acronym": acronym_questions(docs),
        "element": element_questions(elements),
        "year": year_questions(docs),
        "prose": prose_questions(docs + records),
        "direct": direct_questions(n_sums, seed),
    }
