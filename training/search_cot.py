"""Search transcripts for the SFT cold start, written through the server's own search loop.

The embedded 135M model never follows the search protocol on its own, so every ``:search``
answer goes through the loop's fallback. These transcripts teach it the protocol as the
server runs it: ``DeliberativeSearch`` (``search/deliberative.py``) is run for real, on the
real ``local:builtin`` backend and the server's sentence encoder (relevance filter, read
excerpts), with a scripted writer in place of the model (``TeacherEngine``). So the retrieved
text, the ``<information>`` blocks, the stop points and the closing ``</think>`` are exactly
what the model will see at serving time; only the model's turns are written here.

The writer (``Teacher``) knows the gold answer, but says only what the retrieved text supports
(for a ``prose`` question it first quotes the sentence that states the answer, then names it):

- a result states the answer: a short reflection naming the result (and, when the top result
  is another document, or the abbreviation's letters are not one word each, saying so), then
  ``<answer>`` with ``<confidence>`` 9;
- the answer's document is among the results but its snippet does not give the answer:
  ``<read>`` it, then answer (8) if the excerpt states it;
- nothing states it: one second search with other words, then, if that misses too, ``unknown``
  with confidence 1;
- a question that needs no search (``search_qa.direct_questions``): answered at once with its
  reason, confidence 10, after the server's first retrieval when ``retrieve_first`` is on, or
  with no search at all when it is off.

``retrieve_first`` is on (the server's default) for most transcripts and off for a seeded
share (``NO_RETRIEVE_FIRST``), where the model writes its first ``<search>`` itself.
The last reflection also says its confidence in words, in the band of the stated number
(``search/verbal.py``: "I'm confident of this." for 8-10, "I could not verify it." for 1), so
the model learns to word its answers as sure as they are (linguistic calibration). Reverse
element lookups (``UNSURE_KINDS``: the element from its symbol or number) are stated at 6 with
"... so I am not certain of it." (the ``likely`` band) even when found: such answers were right
about half the time on held-out questions, the others nearly always, and the stated number must
tell the two apart for the calibration map, and the wording, to carry information.
A transcript is kept only if the loop took the model's path (no fallback), its answer is the
writer's, and a confident answer scores correct (``QAItem.is_correct``).

Each row's assistant message carries ``masked``: the character spans of its content the server
inserted (the ``<think>`` opening, every ``<information>`` block, the closing ``</think>`` and
the answer's echo); ``sft_data`` gives their tokens label -100, so only the model's own text
(queries, reads, reflections, answer, confidence) is trained, as in the RL search stage
(``rollout._search_one``). A simplification: the writer's turns are not cut to the loop's token
budgets (they are a few dozen tokens; the budgets are hundreds).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, SamplingConfig
from safework.engine.embedder import Encoder
from safework.engine.events import SearchAnswer
from safework.search.answers import supported_by
from safework.search.base import SearchBackend
from safework.search.deliberative import DeliberativeSearch, SearchConfig
from safework.search.prompts import protocol_messages
from safework.search.state import SearchState
from safework.search.verbal import CUES, wording_for

from .search_qa import SearchQuestion

__all__ = [
    "CONFIDENCE",
    "NO_RETRIEVE_FIRST",
    "UNSURE_CONFIDENCE",
    "UNSURE_KINDS",
    "Teacher",
    "TeacherEngine",
    "Transcript",
    "write_transcript",
    "write_transcripts",
]

NO_RETRIEVE_FIRST = 0.25
"""Share of transcripts written with ``retrieve_first`` off (the model searches first)."""
CONFIDENCE = {"found": 9, "read": 8, "known": 10, "missing": 1}
"""Stated confidence (0-10) by how the answer was reached."""
UNSURE_KINDS = {
    "element_by_symbol": "the element from its symbol",
    "element_by_number": "the element from its atomic number",
}
"""Question kinds whose answers are stated with ``UNSURE_CONFIDENCE`` even when a result gives
them: a model that asks the way back from a value often takes the wrong record as its source.
On the 480-transcript ladder's held-out eval, answers to these kinds were right 4 times in 11,
the other element kinds 28 in 29, nearly all stated 9 ("The ladder with three times the search
transcripts"); one number for both left the calibration map nothing to tell them apart by.
They were stated at 4 ("not sure", the ``unverified`` band): after a full epoch of SFT the
model wrote 4 and those words on all 11 held-out reverse lookups (right 6 of 11), and the map
fitted on 40 other answers turned 0.4 into 0.73, the ``likely`` band, so its wording agreed on
29/40. Stated at 6 ("not certain"), it agreed on 40/40 (docs/BENCHMARKS.md, "A full epoch with
jailbreak-wrapped rows, and reverse lookups stated "likely"")."""
UNSURE_CONFIDENCE = 6
QUOTE_CHARS = 240
"""The longest sentence a prose answer's reflection quotes."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z<(\[])")
_NOT_PROSE = re.compile(r"</?information>|^\(Retrieved text|\(id: .*\)$")
_CATEGORY = re.compile(r"<[^<>\n]{1,60}>\s*")
"""A FOLDOC category tag (``<language>``): no part of a quoted sentence."""
_ENTRY = re.compile(r"^\[(\d+)\] (.*) \(id: (.*)\)$", re.M)


@dataclass
class Transcript:
    """One written transcript: the conversation and what the loop did."""

    question: SearchQuestion
    messages: list[dict[str, Any]]
    """System (the protocol), user, assistant (with ``masked`` spans)."""
    outcome: str
    """``found``, ``read``, ``known`` or ``missing`` (a key of ``CONFIDENCE``)."""
    answer: str
    confidence: int
    searches: int
    reads: int
    retrieve_first: bool

    @property
    def correct(self) -> bool:
        return self.question.item.is_correct(self.answer)


@dataclass
class Teacher:
    """Writes the model's turns of one transcript from what the loop has inserted so far."""

    question: SearchQuestion
    loop: DeliberativeSearch | None = None
    """The loop whose state the teacher reads (set before the loop runs)."""
    outcome: str = ""
    answer: str = ""
    confidence: int = -1
    own_searches: int = 0

    @property
    def state(self) -> SearchState:
        assert self.loop is not None, "the teacher writes inside a loop"
        return self.loop.state

    def turn(self) -> str:
        """The model's next turn (ends with ``</search>``, ``</read>`` or ``</confidence>``)."""
        q = self.question
        if not q.needs_search:
            return self._finish("known", f"{q.known} No search is needed.", q.item.answer)
        segments = self.state.segments
        if not segments:  # retrieve_first is off: the model searches first
            return self._search(q.queries[0], f"I am not sure of {q.asked}; I will search.")
        last = segments[-1].text
        own = [s.text for s in segments if s.generated]
        reading = bool(own) and own[-1].endswith("</read>")
        entries = [] if reading else _entries(last)
        if reading and self._states(last):
            quote = self._quote(last)
            note = (
                f'The entry says: "{quote}" That gives {q.asked}: {q.item.answer}.'
                if quote
                else f"The entry states {q.asked}: {q.item.answer}."
            )
            return self._finish("read", note, q.item.answer)
        for rank, title, _id, text in entries:
            if self._states(f"{title}\n{text}") and self._about(f"{title}\n{text}"):
                quote = self._quote(text)
                note = (
                    f'Result [{rank}] ({title}) says: "{quote}" That gives {q.asked}: '
                    f"{q.item.answer}."
                    if quote
                    else f"Result [{rank}] ({title}) gives {q.asked}: {q.item.answer}."
                )
                if rank != 1:
                    note = f"Result [1] does not answer this. {note}"
                return self._finish("found", note + self._letters_note(), q.item.answer)
        target = next((e for e in entries if e[2] == q.item.doc_id), None)
        if target is not None and target[2] not in self.state.read_ids:
            rank, title = target[0], target[1]
            note = (
                f"Result [{rank}] ({title}) should say, but its snippet does not; I will read it."
            )
            return f"{note}\n<read>{target[2]}</read>"
        if self.own_searches < len(q.queries) and self.state.stats.searches < 2:
            query = q.queries[self.own_searches]
            return self._search(query, f"The results do not give {q.asked}; I will search again.")
        note = f"The sources I found do not give {q.asked}, and I do not know it."
        return self._finish("missing", note, "unknown")

    def _search(self, query: str, note: str) -> str:
        self.own_searches += 1
        return f"{note}\n<search>{query}</search>"

    def _finish(self, outcome: str, note: str, answer: str) -> str:
        self.outcome, self.answer, self.confidence = outcome, answer, CONFIDENCE[outcome]
        cue = CUES[wording_for(self.confidence / 10)]  # its confidence in words, too
        unsure = UNSURE_KINDS.get(self.question.item.kind)
        if unsure is not None and outcome in ("found", "read"):
            self.confidence = UNSURE_CONFIDENCE
            cue = f"Looking up {unsure} often lands on the wrong record, so I am not certain of it."
        return (
            f"{note} {cue}\n<answer>{answer}</answer>\n<confidence>{self.confidence}</confidence>"
        )

    def _states(self, text: str) -> bool:
        return supported_by(self.question.item.answer, text)

    def _quote(self, text: str) -> str:
        """For a ``prose`` question, the sentence of ``text`` that states the answer (the
        reflection copies it, then names the answer in it); empty for other kinds, or when no
        one sentence of at most ``QUOTE_CHARS`` states it."""
        if self.question.item.kind != "prose":
            return ""
        lines = [
            line
            for line in text.splitlines()
            if not _ENTRY.match(line) and not _NOT_PROSE.search(line)
        ]  # the block's tags, its notice and result headings are the loop's, not the source's
        prose = _CATEGORY.sub("", " ".join(" ".join(lines).split()))
        asked = set(re.findall(r"[a-z]{4,}", self.question.asked.lower()))
        stating = [
            s.strip()
            for s in _SENTENCE.split(prose)
            if len(s) <= QUOTE_CHARS and "<" not in s and self._states(s)
        ]  # of those, the one closest to the question ("designed by ..." for who designed)
        return max(
            stating, key=lambda s: len(asked & set(re.findall(r"[a-z]{4,}", s.lower()))), default=""
        )

    def _about(self, text: str) -> bool:
        """The text is about the question's subject (so a year in it is the right year)."""
        subject = self.question.item.subject
        return subject.lower() in text.lower() or supported_by(subject, text)

    def _letters_note(self) -> str:
        """A reflection when an abbreviation's letters are not the initials of its words."""
        item = self.question.item
        if item.kind != "acronym":
            return ""
        initials = "".join(w[0] for w in item.answer.split() if w[0].isalnum())
        if initials.lower() == item.subject.lower():
            return ""
        return (
            f" The letters of {item.subject} are not simply the first letters of the words, "
            "so I give the name as the source writes it."
        )


def _entries(block: str) -> list[tuple[int, str, str, str]]:
    """``(rank, title, id, snippet)`` of the results in an ``<information>`` block."""
    heads = list(_ENTRY.finditer(block))
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(block)
        out.append((int(m.group(1)), m.group(2), m.group(3), block[m.end() : end]))
    return out


class TeacherEngine(Engine):
    """An ``Engine`` whose every turn is the ``Teacher``'s; token ids are placeholders (one per
    four characters), which is all the loop counts. Never renders a chat (the loop only does
    that for its prior check and its fallback, which the writer never reaches)."""

    model_id = "search-cold-start"
    max_model_len = 1 << 15

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    async def generate(  # type: ignore[override]
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        text = self.teacher.turn()
        ids = await self.tokenize(text)
        delta = ChoiceDelta(index=0, text=text, token_ids=ids, finish_reason="stop")
        yield EngineOutput(request_id, len(prompt_token_ids), [delta], True)

    async def abort(self, request_id: str) -> None:
        """Nothing runs in the background."""

    async def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return [0] * (len(text) // 4 + 1)

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        raise RuntimeError("the cold-start writer never takes the fallback")


async def write_transcript(
    question: SearchQuestion,
    backend: SearchBackend,
    encoder: Encoder,
    *,
    retrieve_first: bool = True,
    config: SearchConfig | None = None,
) -> Transcript:
    """Run the server's loop on ``question`` with the ``Teacher`` as the model."""
    # the prior check only adds a note to the final answer, never to the transcript
    config = replace(config or SearchConfig(), retrieve_first=retrieve_first, prior_check=False)
    user = [{"role": "user", "content": question.item.question}]
    loop = DeliberativeSearch(config, backend, user, question.item.question, encoder)
    teacher = Teacher(question, loop)
    sampling = SamplingConfig(max_tokens=4096, temperature=0.0)
    pieces: list[tuple[str, bool]] = []  # (text, written by the model)
    answer: SearchAnswer | None = None
    async for out in loop(TeacherEngine(teacher), [0], sampling, "cold-start"):
        answer = next((e for e in out.events if isinstance(e, SearchAnswer)), answer)
        pieces += [(d.text, bool(d.token_ids)) for d in out.choices if d.text]
    if answer is None or answer.protocol != "model" or answer.answer != teacher.answer:
        raise RuntimeError(f"the loop did not take the writer's answer for {question.item.id}")
    content, masked, at = "", [], 0
    for text, generated in pieces:
        if not generated:
            masked.append([at, at + len(text)])
        content, at = content + text, at + len(text)
    messages = [
        *protocol_messages(user),
        {"role": "assistant", "content": content, "masked": _merge(masked)},
    ]
    stats = loop.stats
    return Transcript(
        question,
        messages,
        teacher.outcome,
        teacher.answer,
        teacher.confidence,
        stats.searches,
        stats.reads,
        retrieve_first,
    )


def _merge(spans: Sequence[list[int]]) -> list[list[int]]:
    """Adjacent or overlapping ``[start, end)`` spans joined."""
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def write_transcripts(
    questions: Sequence[SearchQuestion],
    seed: int,
    *,
    cache: Path | None = None,
    backend: SearchBackend | None = None,
    encoder: Encoder | None = None,
) -> list[Transcript]:
    """Transcripts of ``questions`` on ``local:builtin`` (built and indexed through the cache
    on first use) with the server's encoder; ``retrieve_first`` off for a seeded share.

    Raises ``RuntimeError`` if a confident answer does not score correct (a writer bug).
    """
    if backend is None:
        from safework.search.base import BackendContext, load_backend

        backend = load_backend("local:builtin", ctx=BackendContext(cache=cache))
    if encoder is None:
        from safework.engine.embedder import get_embedder

        encoder = get_embedder(cache)
    rng = random.Random(f"search-cot-{seed}")
    plans = [(q, rng.random() >= NO_RETRIEVE_FIRST) for q in questions]

    async def write_all() -> list[Transcript]:
        return [await write_transcript(q, backend, encoder, retrieve_first=r) for q, r in plans]

    out = asyncio.run(write_all())
    for t in out:
        if t.confidence >= 7 and not t.correct:
            raise RuntimeError(f"confident but wrong: {t.question.item.id} -> {t.answer!r}")
    return out


# --------------------------------------------------------------------------- choosing questions

SEARCH_MIX = {"acronym": 0.4, "element": 0.3, "year": 0.1, "direct": 0.2}
"""Share of each question kind (``search_qa.KINDS``) unless the data config's ``search_mix``
names others; a kind with too few questions hands its shortfall to ``acronym`` (the largest
pool, ~600), which every mix holds."""


PICK_ORDER = ("prose", "element", "year", "direct", "acronym")
"""The order kinds are drawn and written in, whatever order a mix names them in (a YAML dump
that sorts keys gives the same rows); acronym last, as it takes the others' shortfall. It is
the order the recorded recipe's ``search_mix`` gives, so that recipe's rows are unchanged."""


def pick_questions(
    pools: dict[str, list[SearchQuestion]],
    dev_quota: dict[str, int],
    train_quota: dict[str, int],
    seed: int,
) -> tuple[list[SearchQuestion], list[SearchQuestion]]:
    """``(dev, train)``: seeded draws per kind, as many as each split's quota names (the
    caller splits its sizes by ``SEARCH_MIX`` or the config's ``search_mix``: ``rows.quotas``);
    questions about one document (a person's birth and death) never straddle the split.
    Raises ``ValueError`` when the pools cannot fill the quotas."""
    dev: list[SearchQuestion] = []
    train: list[SearchQuestion] = []
    dev_q, train_q = dict(dev_quota), dict(train_quota)
    dev_q.setdefault("acronym", 0)
    train_q.setdefault("acronym", 0)
    n_dev, n_train = sum(dev_q.values()), sum(train_q.values())
    kinds = [k for k in PICK_ORDER if k in dev_q or k in train_q]
    for kind in kinds:
        groups: dict[str, list[SearchQuestion]] = {}
        for q in pools[kind]:
            groups.setdefault(q.item.doc_id or q.item.id, []).append(q)
        order = sorted(groups)
        random.Random(f"search-pick-{seed}-{kind}").shuffle(order)
        want_dev, want_train = dev_q.get(kind, 0), train_q.get(kind, 0)
        got_dev: list[SearchQuestion] = []
        got_train: list[SearchQuestion] = []
        for key in order:
            if len(got_dev) < want_dev:
                got_dev += groups[key][: want_dev - len(got_dev)]
            elif len(got_train) < want_train:
                got_train += groups[key][: want_train - len(got_train)]
        if kind != "acronym":  # the shortfall goes to acronym
            dev_q["acronym"] += want_dev - len(got_dev)
            train_q["acronym"] += want_train - len(got_train)
        elif len(got_dev) < want_dev or len(got_train) < want_train:
            raise ValueError(
                f"only {sum(len(p) for p in pools.values())} search questions; asked for "
                f"{n_dev} dev and {n_train} train"
            )
        dev += got_dev
        train += got_train
    return dev, train
