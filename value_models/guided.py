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
step as soon as it is chosen. Settings: ``GuidanceConfig``; the settings, candidates, beams
and scoring both modes use live in ``steps.py`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, FinishReason, SamplingConfig
from safework.engine.events import AlignmentBeam, AlignmentDone, AlignmentStep

from .cascade import cascade
from .steps import (
    MODES,
    REFUSAL_TEXT,
    STEER_TEXT,
    Beam,
    Candidate,
    Draw,
    GuidanceConfig,
    GuidanceStats,
    WeightedModel,
    score_candidates,
    step_output,
)

__all__ = [
    "MODES",
    "REFUSAL_TEXT",
    "STEER_TEXT",
    "Beam",
    "Candidate",
    "Draw",
    "GuidanceConfig",
    "GuidanceStats",
    "GuidedDecoder",
    "WeightedModel",
    "score_candidates",
]


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

    async def choose(
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

    async def _steer(self, engine: Engine, beams: list[Beam], event: AlignmentStep) -> list[int]:
        """Append the safety-reflection step (``event``) to every beam; its token ids."""
        self.stats.steered += 1
        steer_ids = await engine.tokenize(self.config.steer_text)
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
        reports = tuple(c.report() for c in rejected)
        for beam, cand in chosen:
            event = AlignmentStep.chosen(step, "choose", cand.report(), rejected=reports)
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
                chosen, failed = await self.choose(engine, beams, sampling, budget, rid, attempt)
                rejected += failed
                if chosen:
                    break
            if not chosen:
                reports = tuple(c.report() for c in rejected)
                if steered:  # steering did not help: a safe refusal replaces the answer
                    self.stats.refused += 1
                    event = AlignmentStep(
                        step=step, action="refusal", text=cfg.refusal_text, rejected=reports
                    )
                    ids = await engine.tokenize(cfg.refusal_text)  # counted as output: it is
                    yield step_output(request_id, n_prompt, cfg.refusal_text, ids, "stop", event)
                    return
                steered = True
                event = AlignmentStep(
                    step=step, action="steer", text=cfg.steer_text, rejected=reports
                )
                steer_ids = await self._steer(engine, beams, event)
                used += len(steer_ids)
                if stream:
                    yield step_output(request_id, n_prompt, cfg.steer_text, steer_ids, None, event)
                continue
            beams = self._extend(chosen, rejected, step)
            used += max(len(c.token_ids) for _, c in chosen)
            if stream:
                cand, best = chosen[0][1], beams[0]
                done = best.finished or used >= sampling.max_tokens
                finish: FinishReason | None = None
                if done:
                    finish = "stop" if best.finished else "length"
                yield step_output(
                    request_id, n_prompt, cand.text, cand.token_ids, finish, best.steps[-1]
                )
                if done:
                    return
        best = max(beams, key=lambda b: b.score)
        finish = "stop" if best.finished else "length"
        if stream:
            yield step_output(request_id, n_prompt, "", [], finish, AlignmentDone())
            return
        summary = AlignmentBeam(steps=tuple(best.steps))
        answer_ids = best.token_ids[n_prompt:]
        yield step_output(request_id, n_prompt, best.text, answer_ids, finish, summary)
