"""The deliberative search loop: think, search, read, reflect, answer with a confidence.

One answer is a transcript the model and the server write together in the assistant turn.
The model writes; generation stops at ``</search>`` or ``</read>``; the server runs the
search (or reads the document), filters the results (relevance, instruction-like text) and
inserts them as ``<information>...</information>``; the model goes on. The model ends with
``<answer>...</answer><confidence>0-10</confidence>``. ``max_turns`` bounds the model turns,
``sampling.max_tokens`` the tokens the model generates over all of them.

Models that do not follow the protocol (small ones) still get a sound answer: with
``retrieve_first`` the server searches the question before the model's first turn, and when a
turn ends without an action the server reads the best document itself and asks for the answer
by opening ``<answer>`` (a reasoning model's answer there is what follows its ``</think>``,
which the server writes itself when the answer budget cuts the reasoning). Confidence is the
source the model's calibration found most telling, else the stated one when the model gives
it, else the answer tokens' probability (or agreement across samples), mapped through the
model's fitted calibration (``answering.py`` builds the answer
and asks the closed-book prior).

``DeliberativeSearch`` is a server strategy: its ``EngineOutput`` steps carry the transcript
as text inside ``<think>...</think>`` (so clients see the trace in ``reasoning_content``)
and the answer after it, and ``search.*`` events (``SearchQuery``, ``SearchRead``,
``SearchAnswer``) describe each query, read and the answer. The session holds its settings;
what one answer gathers (transcript, sources, events, counts) is a ``SearchState``, fresh for
each call; ``answer()`` runs the loop to the end and returns the ``SearchAnswer``.
Only model-generated text carries token ids: inserted text has none, which is how usage
counts it and how training masks it out of the loss (``Segment.generated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, SamplingConfig, derive_seed
from safework.engine.embedder import Encoder
from safework.engine.events import Confidence, Event, SearchAnswer, SearchQuery, SearchRead
from safework.engine.reasoning import CLOSE_TAG, split_reasoning, starts_in_reasoning

from . import tags
from .answering import ConfidenceSource, closed_book, make_answer
from .answers import answers_agree
from .base import Document, SearchBackend, SearchError, SearchResult, SearchTimeout
from .calibration import Calibration
from .filtering import (
    RelevanceFilter,
    ScoredResult,
    contradiction_note,
    focus,
    neutralise,
)
from .prompts import first_line, grounded_messages, looping
from .state import Answer, SearchState, SearchStats, Segment, Turn
from .verbal import phrase, verbalize

__all__ = [
    "Answer",
    "ConfidenceSource",
    "DeliberativeSearch",
    "SearchConfig",
    "SearchState",
    "SearchStats",
    "Segment",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    max_turns: int = 4
    """Model turns at most (each ends at a search, a read, or the answer)."""
    top_k: int = 3
    """Results per search shown to the model (after filtering)."""
    read: bool = True
    """Let the model (and the fallback) read whole documents."""
    retrieve_first: bool = True
    """Search the question itself before the model's first turn."""
    min_similarity: float = 0.2
    """Results less similar than this to the query are dropped as noise."""
    info_max_chars: int = 1200
    """Longest ``<information>`` block of search results."""
    read_max_chars: int = 1600
    """Longest excerpt of a read document (its passages most relevant to the question)."""
    turn_max_tokens: int = 256
    answer_max_tokens: int = 48
    confidence: ConfidenceSource = "auto"
    """``auto``: stated if given, else the answer-token probability."""
    samples: int = 4
    """Answers sampled for ``confidence="agreement"``."""
    prior_check: bool = True
    """Also ask the model closed-book, and note where the sources contradict it."""
    verbal_confidence: bool = False
    """Word the answer by its calibrated confidence ("I'm confident: ...", "The sources
    suggest ...", "I could not verify this. ..."; ``verbal.py``)."""
    backend_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        if self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        if self.confidence == "agreement" and self.samples < 2:
            raise ValueError("agreement confidence needs at least 2 samples")


class DeliberativeSearch:
    """A strategy: ``session(engine, prompt_ids, sampling, request_id)`` streams the answer.

    ``messages`` is the conversation (chat-template dicts, last one the user's question);
    ``prompt_ids`` passed to the call must be ``protocol_messages(messages)`` rendered.
    """

    def __init__(
        self,
        config: SearchConfig,
        backend: SearchBackend,
        messages: Sequence[dict[str, Any]],
        question: str,
        encoder: Encoder,
        *,
        calibration: Calibration | None = None,
        in_reasoning: bool = False,
    ) -> None:
        self.config = config
        self.backend = backend
        self.messages = list(messages)
        self.question = question
        self.relevance = RelevanceFilter(encoder, config.min_similarity)
        self.encoder = encoder
        self.calibration = calibration
        self.in_reasoning = in_reasoning
        self.state = SearchState()
        """The current (or last) answer's state; each call starts a fresh one."""

    @property
    def stats(self) -> SearchStats:
        """The current (or last) answer's counts, for metrics."""
        return self.state.stats

    # ---------------------------------------------------------------- backend calls

    async def _call(self, op: str, coro: Any) -> Any:
        """Run one backend call with the server's timeout; record latency and failures."""
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(coro, self.config.backend_timeout_s)
        except TimeoutError as e:
            raise SearchTimeout(self.backend.name, f"no answer within {op} timeout") from e
        except SearchError:
            raise
        except Exception as e:  # a backend bug must not take the answer down
            logger.exception("search backend %s failed in %s", self.backend.name, op)
            raise SearchError(self.backend.name, f"{type(e).__name__}: {e}") from e
        finally:
            self.state.stats.latencies.append((op, time.perf_counter() - start))

    def _failed(self, op: str, error: SearchError) -> str:
        self.state.stats.errors.append(
            (op, "timeout" if isinstance(error, SearchTimeout) else "error")
        )
        message = f"{op} failed: {error}"
        self.state.failures.append(message)
        return message

    def _report(self, event: Event) -> None:
        """Record an event; it goes out with the text inserted next."""
        self.state.events.append(event)
        self.state.pending.append(event)

    async def _search(self, query: str, turn: int, room_chars: int) -> str:
        """Search, filter, and format the results as an ``<information>`` body."""
        asked = SearchQuery(turn=turn, query=query, backend=self.backend.name)
        self.state.stats.searches += 1
        try:
            results = await self._call("search", self.backend.search(query, self.config.top_k))
        except SearchError as e:
            self._report(replace(asked, error=self._failed("search", e)))
            return f"Search failed ({e}). Answer from what you know and say so."
        kept, dropped = await asyncio.to_thread(self.relevance.split, query, results)
        self.state.stats.dropped += len(dropped)
        dropped_out = tuple(
            {"id": s.result.id, "title": s.result.title, "similarity": s.similarity}
            for s in dropped
        )
        body, shown = self._format_results(kept, min(room_chars, self.config.info_max_chars))
        self._report(replace(asked, dropped=dropped_out, results=tuple(shown)))
        self.state.last_results = [s.result for s in kept]
        if body:
            self.state.bodies.append(body)
        return body or "No relevant results."

    def _format_results(
        self, kept: Sequence[ScoredResult], max_chars: int
    ) -> tuple[str, list[dict[str, Any]]]:
        lines, shown, used = [], [], 0
        per_result = max(120, max_chars // max(1, len(kept)))
        for i, s in enumerate(kept, 1):
            r = s.result
            (title, rid, snippet), removed = _neutralise_all(r.title, r.id, r.snippet)
            self.state.stats.neutralised += removed
            head = f"[{i}] {title} (id: {rid})"
            entry = f"{head}\n{snippet.strip()[: per_result - len(head)]}"
            if used + len(entry) > max_chars and lines:
                break
            lines.append(entry)
            used += len(entry) + 1
            self.state.sources.setdefault(r.id, r)
            out = {"id": r.id, "title": r.title, "url": r.url, "snippet": r.snippet}
            out.update(score=r.score, similarity=s.similarity)
            if removed:
                out["neutralised"] = removed
            shown.append(out)
        return "\n".join(lines), shown

    def _resolve(self, ref: str) -> str:
        """``<read>2</read>`` means the second result of the last search."""
        ref = ref.strip().strip("[]")
        if ref.isdigit() and 1 <= int(ref) <= len(self.state.last_results):
            return self.state.last_results[int(ref) - 1].id
        return ref

    async def _read(self, ref: str, turn: int, room_chars: int) -> str:
        doc_id = self._resolve(ref)
        self.state.stats.reads += 1
        try:
            doc: Document = await self._call("read", self.backend.read(doc_id))
        except SearchError as e:
            self._report(SearchRead(turn=turn, id=doc_id, error=self._failed("read", e)))
            return f"Reading {doc_id} failed ({e})."
        self.state.read_ids.add(doc_id)
        limit = min(room_chars, self.config.read_max_chars)
        excerpt = await asyncio.to_thread(focus, doc.text, self.question, limit, self.encoder)
        (title, rid, excerpt), removed = _neutralise_all(doc.title, doc.id, excerpt)
        self.state.stats.neutralised += removed
        self._report(
            SearchRead(
                turn=turn,
                id=doc_id,
                title=doc.title,
                url=doc.url,
                chars=len(excerpt),
                neutralised=removed,
            )
        )
        if doc_id not in self.state.sources:
            self.state.sources[doc_id] = SearchResult(doc_id, doc.title, excerpt[:200], doc.url)
        body = f"{title} (id: {rid})\n{excerpt}"
        self.state.bodies.append(body)
        return body

    # ---------------------------------------------------------------- generation

    def _transcript(self) -> str:
        return "".join(s.text for s in self.state.segments)

    async def _context(self, engine: Engine, prompt_ids: list[int]) -> list[int]:
        """The prompt plus the transcript so far (re-tokenised: drops end-of-sequence)."""
        text = self._transcript()
        return prompt_ids + (await engine.tokenize(text) if text else [])

    def _room_chars(self, context_len: int, engine: Engine) -> int:
        """Characters of inserted text the context can still take (~3 chars a token)."""
        reserve = self.config.turn_max_tokens + self.config.answer_max_tokens + 16
        return max(0, (engine.max_model_len - context_len - reserve) * 3)

    async def _generate(
        self,
        engine: Engine,
        ids: list[int],
        sampling: SamplingConfig,
        rid: str,
        n_prompt: int,
        turn: Turn,
    ) -> AsyncIterator[EngineOutput]:
        """One model turn, streamed as it is generated; cut short when it loops."""
        stream = engine.generate(ids, sampling, rid)
        try:
            async for step in stream:
                for d in step.choices:
                    if d.index != 0:
                        continue
                    turn.text += d.text
                    turn.tokens += len(d.token_ids)
                    turn.logprobs += d.logprobs or []
                    self.state.stats.generated_tokens += len(d.token_ids)
                    if d.finish_reason is not None:
                        turn.finish_reason = d.finish_reason
                    if d.text or d.token_ids:
                        delta = ChoiceDelta(index=0, text=d.text, token_ids=d.token_ids)
                        yield EngineOutput(rid, n_prompt, [delta], False)
                if turn.finish_reason is None and looping(turn.text):
                    turn.finish_reason = "loop"
                    break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def _insert(self, text: str, n_prompt: int, rid: str) -> EngineOutput:
        """Server-written text: streamed like the model's, without token ids, with the
        events of the search or read that produced it."""
        self.state.segments.append(Segment(text, generated=False))
        events, self.state.pending = self.state.pending, []
        delta = ChoiceDelta(index=0, text=text, token_ids=[])
        return EngineOutput(rid, n_prompt, [delta], False, events=events)

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        cfg = self.config
        n_prompt = len(prompt_ids)
        self.state = SearchState()
        prior_task = None
        if cfg.prior_check:
            prior_task = asyncio.create_task(
                closed_book(engine, self.messages, request_id, sampling.cache_salt)
            )
        try:
            opening = "" if self.in_reasoning else "<think>\n"
            delta = ChoiceDelta(index=0, text=opening, token_ids=[])
            yield EngineOutput(request_id, n_prompt, [delta], False)
            answer: Answer | None = None
            turns = self._turns(engine, prompt_ids, sampling, request_id)
            async with contextlib.aclosing(turns) as outputs:  # closed at once when we are
                async for out in outputs:
                    if isinstance(out, Answer):  # the last item: the loop's answer
                        answer = out
                    else:
                        yield out
            assert answer is not None, "_turns ends with its answer"
            prior = None
            if prior_task is not None:
                with contextlib.suppress(Exception):
                    prior, prior_tokens = await prior_task
                    self.state.stats.generated_tokens += prior_tokens
            yield self._final(request_id, n_prompt, answer, prior)
        finally:
            if prior_task is not None and not prior_task.done():
                prior_task.cancel()  # aborts the closed-book request
                await asyncio.wait({prior_task})

    async def answer(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> SearchAnswer:
        """Run the loop to the end (nothing streamed) and return its answer."""
        final: SearchAnswer | None = None
        async with contextlib.aclosing(self(engine, prompt_ids, sampling, request_id)) as outs:
            async for out in outs:
                final = next((e for e in out.events if isinstance(e, SearchAnswer)), final)
        assert final is not None, "the last step carries the answer"
        return final

    async def _turns(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, rid: str
    ) -> AsyncIterator[EngineOutput | Answer]:
        """The model's turns and the server's insertions, streamed; the last item is the
        answer (the model's, or the fallback's when the model gave none)."""
        cfg = self.config
        n_prompt = len(prompt_ids)
        turn_sampling = replace(
            sampling,
            n=1,
            stop=[*tags.STOP_STRINGS, *sampling.stop],
            include_stop_str_in_output=True,
            logprobs=0,
            structured=None,
        )
        if cfg.retrieve_first:
            room = self._room_chars(n_prompt, engine)
            body = await self._search(self.question, 0, room)
            yield self._insert(tags.information(body), n_prompt, rid)
        used = 0
        reserve = min(cfg.answer_max_tokens, sampling.max_tokens // 2)  # for the fallback
        for turn_no in range(1, cfg.max_turns + 1):
            ids = await self._context(engine, prompt_ids)
            budget = min(cfg.turn_max_tokens, sampling.max_tokens - reserve - used)
            budget = min(budget, engine.max_model_len - len(ids))
            if budget <= 0:
                break
            self.state.stats.turns += 1
            turn = Turn()
            s = replace(
                turn_sampling, max_tokens=budget, seed=derive_seed(sampling.seed, "turn", turn_no)
            )
            turn_stream = self._generate(engine, ids, s, f"{rid}-t{turn_no}", n_prompt, turn)
            async with contextlib.aclosing(turn_stream) as outputs:
                async for out in outputs:
                    yield out
            self.state.segments.append(Segment(turn.text, generated=True))
            used += turn.tokens
            action = tags.next_action(turn.text)
            room = self._room_chars(len(ids) + budget, engine)
            if action.kind == "search":
                body = await self._search(action.argument, turn_no, room)
                yield self._insert(tags.information(body), n_prompt, rid)
            elif action.kind == "read" and cfg.read:
                body = await self._read(action.argument, turn_no, room)
                yield self._insert(tags.information(body), n_prompt, rid)
            elif action.kind == "answer":  # the stated confidence, if any, is in this turn
                answer = self._answer(action.argument, turn, turn.text)
                if cfg.confidence == "agreement" and answer.text:
                    # resample this answering turn from the same context: a sample that
                    # searches again, or answers otherwise, disagrees. Each sample gets the
                    # turn's own length and an answer's more, not the whole turn budget, so
                    # `samples` multiplies a short turn, not the request's max_tokens
                    room = min(s.max_tokens, turn.tokens + cfg.answer_max_tokens)
                    again = replace(s, max_tokens=room)
                    answer = await self._agreement(engine, ids, again, rid, answer, _turn_answer)
                yield answer
                return
            else:
                break  # no action: the model ignored the protocol or ran out of room
        self.state.stats.fallback = True
        async with contextlib.aclosing(self._fallback(engine, sampling, rid, n_prompt, used)) as fb:
            async for out in fb:
                yield out

    async def _fallback(
        self, engine: Engine, sampling: SamplingConfig, rid: str, n_prompt: int, used: int
    ) -> AsyncIterator[EngineOutput | Answer]:
        """Retrieve (if nothing was searched), read the best document, then answer from the
        gathered information in a plain prompt (no protocol to follow); the last item is the
        answer."""
        room = self.config.info_max_chars + self.config.read_max_chars
        if not self.state.stats.searches:
            body = await self._search(self.question, self.state.stats.turns, room)
            yield self._insert(tags.information(body), n_prompt, rid)
        unread = [r for r in self.state.last_results if r.id not in self.state.read_ids]
        if self.config.read and unread:
            body = await self._read(unread[0].id, self.state.stats.turns, room)
            yield self._insert(tags.information(body), n_prompt, rid)
        yield self._insert("<answer>", n_prompt, rid)
        messages = grounded_messages(self.messages, self.question, "\n\n".join(self.state.bodies))
        prompt = await engine.render_chat(messages)
        ids = await engine.tokenize(prompt)
        budget = min(self.config.answer_max_tokens, sampling.max_tokens - used)
        budget = min(budget, engine.max_model_len - len(ids))
        if budget <= 0:
            yield Answer("", None, None, None, "length")
            return
        s = replace(
            sampling,
            n=1,
            max_tokens=budget,
            seed=derive_seed(sampling.seed, "answer"),
            stop=["</answer>", *sampling.stop],
            include_stop_str_in_output=False,
            logprobs=0,
            structured=None,
        )
        turn = Turn()
        answer_stream = self._generate(engine, ids, s, f"{rid}-answer", n_prompt, turn)
        async with contextlib.aclosing(answer_stream) as outputs:
            async for out in outputs:
                yield out
        self.state.segments.append(Segment(turn.text, generated=True))
        reasoning, after = split_reasoning(turn.text, starts_in_reasoning(prompt))
        if reasoning is not None and not first_line(after):
            # A reasoning model answers after its reasoning, which the budget cut (or which it
            # closed with nothing after): the server closes it and asks for the answer itself.
            close = "\n\n" if CLOSE_TAG in turn.text else f"\n{CLOSE_TAG}\n\n"
            yield self._insert(close, n_prompt, rid)
            ids = await engine.tokenize(prompt + turn.text + close)
            room = min(
                self.config.answer_max_tokens,
                sampling.max_tokens - used - turn.tokens,
                engine.max_model_len - len(ids),
            )
            forced = Turn()
            if room > 0:
                s = replace(s, max_tokens=room, seed=derive_seed(sampling.seed, "answer", 2))
                stream = self._generate(engine, ids, s, f"{rid}-answer-2", n_prompt, forced)
                async with contextlib.aclosing(stream) as outputs:
                    async for out in outputs:
                        yield out
                self.state.segments.append(Segment(forced.text, generated=True))
            turn, after = forced, forced.text
        yield self._insert("</answer>", n_prompt, rid)
        answer = self._answer(first_line(after), turn, None)
        if self.config.confidence == "agreement" and answer.text:
            answer = await self._agreement(engine, ids, s, rid, answer, tags.strip_tags)
        yield answer

    def _answer(self, text: str, turn: Turn, stated_text: str | None) -> Answer:
        return make_answer(text, turn, stated_text, self.config.confidence, self.calibration)

    async def _agreement(
        self,
        engine: Engine,
        ids: list[int],
        s: SamplingConfig,
        rid: str,
        answer: Answer,
        answer_of: Callable[[str], str],
    ) -> Answer:
        """Confidence = the share of sampled answers that agree with the given one: ``s``
        sampled ``samples`` times from ``ids`` (the context ``answer`` was written in), each
        sample's answer read by ``answer_of``."""
        n = self.config.samples
        # a seed of its own: the answer's would draw the answer itself again as sample 0
        seed = derive_seed(s.seed, "agree")
        sampled = replace(s, n=n, temperature=max(s.temperature, 0.7), logprobs=None, seed=seed)
        texts = [""] * n
        async with contextlib.aclosing(engine.generate(ids, sampled, f"{rid}-agree")) as steps:
            async for step in steps:
                for d in step.choices:
                    texts[d.index] += d.text
                    self.state.stats.generated_tokens += len(d.token_ids)
        share = sum(answers_agree(answer.text, answer_of(t)) for t in texts) / n
        calibrated = self.calibration.calibrate("agreement", share) if self.calibration else None
        return replace(
            answer,
            raw_confidence=round(share, 4),
            source="agreement",
            calibrated=calibrated,
            candidates={"agreement": round(share, 4)},
        )

    def _final(self, rid: str, n_prompt: int, answer: Answer, prior: str | None) -> EngineOutput:
        notes = []
        sources_text = "\n".join(s.text for s in self.state.segments if not s.generated)
        note = contradiction_note(prior, answer.text, sources_text)
        if note:
            notes.append(note)
        if self.state.stats.neutralised:
            notes.append(
                f"{self.state.stats.neutralised} instruction-like passage(s) in the sources were "
                "treated as data and removed."
            )
        verbal = None
        if self.config.verbal_confidence:
            verbal = verbalize(answer.raw_confidence, answer.calibrated, answer.reasoning)
        content = phrase(verbal.wording, answer.text) if verbal is not None else answer.text
        if self.state.failures:
            content += "\n\n(Search problem: " + "; ".join(self.state.failures) + ")"
        event = SearchAnswer(
            answer=answer.text,
            confidence=Confidence(
                raw=answer.raw_confidence,
                source=answer.source,
                calibrated=answer.calibrated,
                candidates=answer.candidates,
            ),
            turns=self.state.stats.turns,
            protocol="fallback" if self.state.stats.fallback else "model",
            prior_answer=prior,
            notes=tuple(notes),
            errors=tuple(self.state.failures),
            wording=None if verbal is None else verbal.to_json(),
        )
        self.state.events.append(event)
        delta = ChoiceDelta(
            index=0,
            text="\n</think>\n\n" + content,
            token_ids=[],
            finish_reason=answer.finish_reason,
        )
        return EngineOutput(rid, n_prompt, [delta], True, events=[event])

    def summary(self) -> dict[str, Any]:
        """The response's ``safework.search`` object."""
        events = self.state.events
        answer = next((e for e in events[::-1] if isinstance(e, SearchAnswer)), None)
        out: dict[str, Any] = {
            "backend": self.backend.name,
            "queries": [e.query for e in events if isinstance(e, SearchQuery)],
            "sources": [
                {"id": r.id, "title": r.title, "url": r.url, "snippet": r.snippet}
                for r in self.state.sources.values()
            ],
            "confidence": answer.confidence.to_json() if answer else None,
            "trace": [e.to_json() for e in events if not isinstance(e, SearchAnswer)],
        }
        if answer is not None:
            reported = answer.to_json()
            out.update({k: reported[k] for k in ("answer", "turns", "protocol", "notes", "errors")})
            if "wording" in reported:
                out["wording"] = reported["wording"]
        return out


def _turn_answer(text: str) -> str:
    """The answer a sampled model turn gives ("" when it searches or reads instead)."""
    action = tags.next_action(text)
    return action.argument if action.kind == "answer" else ""


def _neutralise_all(*fields: str) -> tuple[list[str], int]:
    """Every field the model will read (title, id, text) through ``neutralise``; the total
    number of cuts."""
    out, removed = [], 0
    for text in fields:
        cleaned, n = neutralise(text)
        out.append(cleaned)
        removed += n
    return out, removed
