"""Step-wise guided decoding: value models choose each reasoning step among K candidates.

Per step the engine samples ``candidates`` continuations in one request (``n=K``), each
ending at the step delimiter (a stop string) or at end-of-sequence; the shared prefix is
served from vLLM's prefix cache. Every configured value model scores all candidates in one
batch. A candidate below any model's hard ``threshold`` is rejected; among the rest the
highest weighted score wins (with ``beam_width > 1`` the best B partial answers are kept and
each is extended). When every candidate fails ``retries + 1`` times in a row, the decoder
*steers*: it inserts a safety-reflection step and goes on; if the step after that still
fails, it answers with a safe refusal. A greedy request (temperature 0) is answered too, and
deterministically: the greedy step is one candidate and the others are sampled with a seed
fixed by the request (see ``GuidedDecoder._requests``).

``GuidedDecoder`` is a server strategy: it yields ``EngineOutput`` steps (the chosen text as
deltas of choice 0) with an ``alignment.step`` event attached to each, so streams show each
step as soon as it is chosen. Settings: ``GuidanceConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, SamplingConfig

from .base import ValueModel, ValueScore

STEER_TEXT = (
    "Let me think about safety before going on: the rest of this answer must not help anyone "
    "cause harm, so I will keep to safe, helpful information.\n"
)
MODES = ("cascade", "exhaustive")
REFUSAL_TEXT = (
    "I can't help with that, because it could cause harm. If you tell me more about what "
    "you need, I'm glad to help with a safe alternative."
)


@dataclass(frozen=True)
class WeightedModel:
    model: ValueModel
    weight: float = 1.0
    threshold: float = 0.0
    """Hard constraint: a candidate scoring below it is rejected."""


@dataclass(frozen=True)
class GuidanceConfig:
    models: tuple[WeightedModel, ...]
    candidates: int = 4
    beam_width: int = 1
    step_delimiter: str = "\n"
    max_steps: int = 32
    retries: int = 1
    step_max_tokens: int = 96
    steer_text: str = STEER_TEXT
    refusal_text: str = REFUSAL_TEXT
    mode: str = "cascade"
    """``cascade`` (default): K candidates for the first step, then one stream whose steps are
    scored as they come and resampled only when one fails (``cascade.py``); ``exhaustive``:
    K candidates at every step (needed for ``beam_width > 1``)."""
    first_step_tokens: int = 32
    """Cascade: the K candidates of the first step (and after steering) end at the step
    delimiter or after this many tokens, whichever comes first."""
    score_every_max: int = 4
    """Cascade: while scores stay at least ``skip_margin`` above every threshold, the stream is
    scored every 1, 2, then up to this many steps (always before the end)."""
    skip_margin: float = 0.3
    gate_first_step: bool = True
    """Cascade: when a value model with a prompt classifier (``ValueModel.prompt_risk``) finds
    the request harmless, the first step is streamed like the rest, one candidate, with K
    only if it fails; a request any such model flags, or no model can judge alone, gets K
    for its first step. ``False``: K for every first step."""
    steer_first_step: bool = False
    """Cascade: when every candidate of the answer's first step fails, refuse at once (the
    default: the value models reject any start the model gives, so the request itself is
    what they object to; steering costs another K-round and mostly ends in a refusal
    anyway). ``True`` steers there too, as exhaustive mode does."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("guided decoding needs at least one value model")
        if self.beam_width > self.candidates:
            raise ValueError("beam_width cannot exceed the number of candidates")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (got {self.mode!r})")
        if self.mode == "cascade" and self.beam_width > 1:
            raise ValueError('beam_width > 1 needs mode "exhaustive"')
        if self.first_step_tokens < 1 or self.score_every_max < 1:
            raise ValueError("first_step_tokens and score_every_max must be at least 1")


@dataclass(frozen=True)
class Draw:
    """How one step's candidates are drawn: how many, their token cap, and whether a greedy
    request's greedy continuation is one of them."""

    n: int
    cap: int
    greedy: bool = True


@dataclass
class Candidate:
    text: str
    token_ids: list[int]
    finished: bool
    """Ended at end-of-sequence (not at the step delimiter)."""
    scores: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    rejected_by: list[str] = field(default_factory=list)
    filler: bool = False
    """Whitespace only (a paragraph break): passes without scoring."""

    def as_event(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "scores": self.scores, "total": self.total}
        if self.rejected_by:
            out["rejected_by"] = self.rejected_by
        return out


@dataclass
class Beam:
    """One partial answer: its text, tokens, and the steps that built it."""

    token_ids: list[int]
    text: str = ""
    score: float = 0.0
    finished: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GuidanceStats:
    """Counts for metrics, filled while decoding."""

    candidates: int = 0
    rejected: int = 0
    steered: int = 0
    refused: int = 0
    generated_tokens: int = 0
    prompt_risk: float | None = None
    """Cascade: the highest P(harmful request) of the prompt classifiers the gate asked."""
    model_seconds: list[tuple[str, float]] = field(default_factory=list)
    """(value model, seconds) for every scoring batch."""


async def score_candidates(
    config: GuidanceConfig,
    question: str,
    prefix: str,
    candidates: Sequence[Candidate],
    stats: GuidanceStats,
) -> None:
    """Score every candidate with every model (one batch per model), in place."""
    responses = [prefix + c.text for c in candidates]
    prompts = [question] * len(responses)

    async def run(wm: WeightedModel) -> list[ValueScore]:
        start = time.perf_counter()
        scores = await wm.model.score(prompts, responses)
        stats.model_seconds.append((wm.model.name, time.perf_counter() - start))
        return scores

    results = await asyncio.gather(*(run(wm) for wm in config.models))
    weight_sum = sum(wm.weight for wm in config.models) or 1.0
    for i, cand in enumerate(candidates):
        total = 0.0
        for wm, scores in zip(config.models, results, strict=True):
            value = scores[i].score
            cand.scores[wm.model.name] = round(value, 4)
            total += wm.weight * value
            if value < wm.threshold:
                cand.rejected_by.append(wm.model.name)
        cand.total = round(total / weight_sum, 4)


async def _collect(
    engine: Engine, prompt: list[int], sampling: SamplingConfig, rid: str
) -> list[tuple[str, list[int], ChoiceDelta | None]]:
    """Run one engine request to the end: per choice, its text, token ids and final delta."""
    texts = [""] * sampling.n
    ids: list[list[int]] = [[] for _ in range(sampling.n)]
    ends: list[ChoiceDelta | None] = [None] * sampling.n
    async with contextlib.aclosing(engine.generate(prompt, sampling, rid)) as stream:
        async for out in stream:
            for d in out.choices:
                texts[d.index] += d.text
                ids[d.index].extend(d.token_ids)
                if d.finish_reason is not None:
                    ends[d.index] = d
    return list(zip(texts, ids, ends, strict=True))


class GuidedDecoder:
    """A strategy: ``decoder(engine, prompt_ids, sampling, request_id)`` streams the answer."""

    def __init__(self, config: GuidanceConfig, question: str) -> None:
        self.config = config
        self.question = question
        self.stats = GuidanceStats()

    def draw(self, n: int | None = None, cap: int | None = None, greedy: bool = True) -> Draw:
        """The default draw of a step (K candidates, ``step_max_tokens``), with overrides."""
        return Draw(n or self.config.candidates, cap or self.config.step_max_tokens, greedy)

    def _requests(
        self, beam: Beam, sampling: SamplingConfig, budget: int, attempt: int, draw: Draw
    ) -> list[SamplingConfig]:
        """The engine requests that sample one step's candidates: one request of ``n``.

        For a greedy request, the greedy step plus ``n - 1`` alternatives sampled at
        temperature 1; a seeded or greedy request's samples get a seed fixed by the request's
        seed, the position and the attempt, so the same request gets the same answer and a
        retry draws new candidates."""
        step = replace(
            sampling,
            n=draw.n,
            max_tokens=min(draw.cap, budget),
            stop=[self.config.step_delimiter, *sampling.stop],
            include_stop_str_in_output=True,
            logprobs=None,
            structured=None,
        )
        greedy = sampling.temperature == 0
        if not greedy and sampling.seed is None:
            return [step]
        key = f"{sampling.seed or 0}:{len(beam.token_ids)}:{attempt}".encode()
        seeded = replace(step, seed=zlib.crc32(key))
        if not greedy:
            return [seeded]
        alternatives = replace(seeded, temperature=1.0, top_p=1.0)
        if not draw.greedy:
            return [alternatives]
        if step.n == 1:
            return [step]
        return [replace(step, n=1), replace(alternatives, n=step.n - 1)]

    async def _sample(
        self,
        engine: Engine,
        beam: Beam,
        sampling: SamplingConfig,
        budget: int,
        rid: str,
        attempt: int = 0,
        draw: Draw | None = None,
    ) -> list[Candidate]:
        requests = self._requests(beam, sampling, budget, attempt, draw or self.draw())
        drawn = await asyncio.gather(
            *(_collect(engine, beam.token_ids, s, f"{rid}-{i}") for i, s in enumerate(requests))
        )
        cands = []
        for text, token_ids, end in (choice for choices in drawn for choice in choices):
            at_delimiter = end is not None and end.stop_reason == self.config.step_delimiter
            at_user_stop = end is not None and end.stop_reason in sampling.stop
            finished = end is not None and end.finish_reason == "stop" and not at_delimiter
            if at_user_stop and isinstance(end.stop_reason, str):
                text = text.removesuffix(end.stop_reason)
            cands.append(Candidate(text, token_ids, finished))
            self.stats.generated_tokens += len(token_ids)
        self.stats.candidates += len(cands)
        steps = [c for c in cands if c.text.strip() or c.finished]
        # Only blank lines (a paragraph break): nothing to judge, keep one and move on.
        return steps or [replace(cands[0], filler=True)]

    async def _choose(
        self,
        engine: Engine,
        beams: list[Beam],
        sampling: SamplingConfig,
        budget: int,
        rid: str,
        attempt: int,
        draw: Draw | None = None,
    ) -> tuple[list[tuple[Beam, Candidate]], list[Candidate]]:
        """Extend each live beam; return the passing (beam, candidate) pairs and the rejected."""
        passing: list[tuple[Beam, Candidate]] = []
        rejected: list[Candidate] = []
        for b, beam in enumerate(beams):
            rid_b = f"{rid}-b{b}"
            cands = await self._sample(engine, beam, sampling, budget, rid_b, attempt, draw)
            if not cands[0].filler:
                await score_candidates(self.config, self.question, beam.text, cands, self.stats)
            for c in cands:
                if c.rejected_by:
                    rejected.append(c)
                else:
                    passing.append((beam, c))
        self.stats.rejected += len(rejected)
        passing.sort(key=lambda bc: bc[0].score + bc[1].total, reverse=True)
        return passing[: self.config.beam_width], rejected

    @staticmethod
    def _output(
        rid: str,
        prompt_tokens: int,
        text: str,
        ids: list[int],
        finish: str | None,
        event: dict[str, Any],
    ) -> EngineOutput:
        delta = ChoiceDelta(0, text, ids, None, finish)  # type: ignore[arg-type]
        return EngineOutput(rid, prompt_tokens, [delta], finish is not None, events=[event])

    async def _steer(self, engine: Engine, beams: list[Beam], event: dict[str, Any]) -> list[int]:
        """Append the safety-reflection step to every beam; its token ids."""
        self.stats.steered += 1
        steer_ids = await engine.tokenize(self.config.steer_text)
        event.update(action="steer", text=self.config.steer_text)
        for beam in beams:
            beam.text += self.config.steer_text
            beam.token_ids += steer_ids
            beam.steps.append(event)
        return steer_ids

    @staticmethod
    def _extend(
        chosen: list[tuple[Beam, Candidate]], rejected: list[Candidate], step: int
    ) -> list[Beam]:
        beams = []
        for beam, cand in chosen:
            event = {"type": "alignment.step", "step": step, "action": "choose"}
            event.update(cand.as_event(), rejected=[c.as_event() for c in rejected])
            beams.append(
                Beam(
                    beam.token_ids + cand.token_ids,
                    beam.text + cand.text,
                    beam.score + cand.total,
                    cand.finished,
                    [*beam.steps, event],
                )
            )
        return beams

    def __call__(
        self, engine: Engine, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        if self.config.mode == "cascade":
            from .cascade import cascade

            return cascade(self, engine, prompt_token_ids, sampling, request_id)
        return self._exhaustive(engine, prompt_token_ids, sampling, request_id)

    async def _exhaustive(
        self, engine: Engine, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        """K candidates at every step, B beams (``mode: "exhaustive"``)."""
        cfg = self.config
        n_prompt = len(prompt_token_ids)
        stream = cfg.beam_width == 1  # with one beam each chosen step is final: stream it
        beams = [Beam(list(prompt_token_ids))]
        used, steered = 0, False
        for step in range(cfg.max_steps):
            budget = sampling.max_tokens - used
            if budget <= 0 or all(b.finished for b in beams):
                break
            chosen: list[tuple[Beam, Candidate]] = []
            rejected: list[Candidate] = []
            for attempt in range(cfg.retries + 1):
                rid = f"{request_id}-s{step}a{attempt}"
                chosen, failed = await self._choose(engine, beams, sampling, budget, rid, attempt)
                rejected += failed
                if chosen:
                    break
            if not chosen:
                event = {"type": "alignment.step", "step": step}
                event["rejected"] = [c.as_event() for c in rejected]
                if steered:  # steering did not help: a safe refusal replaces the answer
                    self.stats.refused += 1
                    event.update(action="refusal", text=cfg.refusal_text)
                    ids = await engine.tokenize(cfg.refusal_text)  # counted as output: it is
                    yield self._output(request_id, n_prompt, cfg.refusal_text, ids, "stop", event)
                    return
                steered = True
                steer_ids = await self._steer(engine, beams, event)
                used += len(steer_ids)
                if stream:
                    yield self._output(request_id, n_prompt, cfg.steer_text, steer_ids, None, event)
                continue
            beams = self._extend(chosen, rejected, step)
            used += max(len(c.token_ids) for _, c in chosen)
            if stream:
                cand, best = chosen[0][1], beams[0]
                done = best.finished or used >= sampling.max_tokens
                finish = ("stop" if best.finished else "length") if done else None
                yield self._output(
                    request_id, n_prompt, cand.text, cand.token_ids, finish, best.steps[-1]
                )
                if done:
                    return
        best = max(beams, key=lambda b: b.score)
        finish = "stop" if best.finished else "length"
        if stream:
            yield self._output(request_id, n_prompt, "", [], finish, {"type": "alignment.done"})
            return
        summary = {"type": "alignment.beam", "steps": best.steps}
        answer_ids = best.token_ids[n_prompt:]
        yield self._output(request_id, n_prompt, best.text, answer_ids, finish, summary)
