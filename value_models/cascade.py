"""Cascade guided decoding: sample one continuation, score it, pay for alternatives only when
it fails.

Why: choosing every step among K candidates (``mode: "exhaustive"``) costs about K times the
decoding of a plain answer, though on most steps of most answers every candidate passes. The
methods that cut this cost share one idea (segment-level rejection sampling, reward-guided
speculative decoding, a search budget that decays after the first block), and safety is
mostly decided in an answer's first tokens. So the default ``mode: "cascade"`` does:

1. **The first step among K candidates**, each capped at ``first_step_tokens`` (where a
   refusal or a compliance is decided), chosen as in exhaustive mode, unless the request is
   harmless: with ``gate_first_step`` (the default) a value model with a prompt classifier
   (the built-in ones) judges the request alone first, and a request below its threshold
   has its first step streamed like the rest, with K only if that step fails. Most benign
   requests then cost one generation plus scoring; a flagged one gets its K.
2. **Then one streaming generation** for the rest of the answer, cut into steps as it
   streams (at the step delimiter, or every ``step_max_tokens`` tokens). Each step is scored
   while the engine goes on generating the next; a step is released to the client only
   after it passes, so a stream lags one step behind the model.
3. **Scoring less often while scores stay far above every threshold**: after a step scoring
   at least ``skip_margin`` above every threshold, the next score covers two steps, then up
   to ``score_every_max`` (the value models judge the whole answer so far, so one score
   covers every step before it). A weaker score goes back to scoring every step, and the
   last steps are always scored before the answer ends.
4. **A failing step aborts the generation**, rolls back to that step's start and resamples
   K candidates there (the failed one counts as one of them); retries, the safety-reflection
   step and the refusal fallback work as in exhaustive mode (``guided.py``). After steering
   the next step is again chosen among K, then streaming resumes.
5. **A first step that fails every attempt is refused at once** (``steer_first_step=False``)
   when the prompt classifiers flagged the request (or none judged it): no start the model
   offers passes, so the request itself is what the value models reject; steering there
   would cost another K-round and, measured, mostly ends in a refusal too. A request the
   prompt classifiers passed is steered once instead: the request is fine and only the
   model's starts were not, so the reflection gets its chance before any refusal.

The cost on a benign answer is one prompt score and the step scores (K short first candidates
when the prompt classifier flags it or none is configured); on a harmful one it is what the
failing K-steps cost before steering or refusing. Only ``beam_width = 1``: beams need
exhaustive mode. ``max_steps`` bounds the K-candidate rounds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from safework.engine.base import Engine, EngineOutput, FinishReason, SamplingConfig
from safework.engine.events import AlignmentDone, AlignmentStep, Event

from .steps import Beam, Candidate, StepChooser, score_candidates, step_output

__all__ = ["cascade"]


def cascade(
    decoder: StepChooser,
    engine: Engine,
    prompt_token_ids: list[int],
    sampling: SamplingConfig,
    request_id: str,
) -> AsyncIterator[EngineOutput]:
    """The cascade strategy's stream (``GuidedDecoder`` calls it for ``mode: "cascade"``)."""
    return _Cascade(decoder, engine, prompt_token_ids, sampling, request_id).answer()


class _Cascade:
    """The state of one cascade answer: the accepted text, its budget and its schedule."""

    def __init__(
        self,
        decoder: StepChooser,
        engine: Engine,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
    ) -> None:
        self.dec, self.cfg, self.engine = decoder, decoder.config, engine
        self.sampling, self.rid = sampling, request_id
        self.n_prompt = len(prompt_token_ids)
        self.beam = Beam(list(prompt_token_ids))
        self.used = 0  # answer tokens accepted so far
        self.step = 0  # steps released so far
        self.rounds = 0  # K-candidate rounds so far
        self.streams = 0
        self.interval = 1  # steps per score while streaming
        self.steered = False
        self.done = False
        self.failed: Candidate | None = None  # the streamed block that failed its score
        self.need_k = True  # the next step is chosen among K candidates
        self.prompt_passed = False  # the prompt classifiers found the request harmless

    @property
    def budget(self) -> int:
        return self.sampling.max_tokens - self.used

    async def answer(self) -> AsyncIterator[EngineOutput]:
        if self.cfg.gate_first_step:
            self.prompt_passed = await self._harmless_request()
            self.need_k = not self.prompt_passed
        while not self.done:
            if self.budget <= 0 or self.rounds >= self.cfg.max_steps:
                yield self._release("", [], "length", AlignmentDone())
                return
            phase = self._k_step() if self.need_k or self.failed is not None else self._stream()
            async with contextlib.aclosing(phase) as outputs:  # closed at once when we are
                async for out in outputs:
                    yield out

    async def _harmless_request(self) -> bool:
        """Whether every value model that can judge a prompt alone finds this one harmless
        (below its own prompt threshold); False when none can."""
        verdicts = []
        for wm in self.cfg.models:
            risk = await wm.model.prompt_risk([self.dec.question])
            if risk is not None and wm.model.prompt_threshold is not None:
                stats = self.dec.stats
                stats.prompt_risk = max(risk[0], stats.prompt_risk or 0.0)
                verdicts.append(risk[0] <= wm.model.prompt_threshold)
        return bool(verdicts) and all(verdicts)

    # ------------------------------------------------------------------ output

    def _release(
        self, text: str, ids: Sequence[int], finish: FinishReason | None, event: Event
    ) -> EngineOutput:
        """Accept a step into the answer and make the client's output for it."""
        self.beam.text += text
        self.beam.token_ids += ids
        self.beam.steps.append(event)
        self.used += len(ids)
        if isinstance(event, AlignmentStep):
            self.step += 1
        if finish is not None:
            self.done = True
        return step_output(self.rid, self.n_prompt, text, ids, finish, event)

    def _finish_of(self, cand: Candidate) -> FinishReason | None:
        if cand.finished:
            return "stop"
        return "length" if self.used + len(cand.token_ids) >= self.sampling.max_tokens else None

    # ------------------------------------------------------------------ K candidates

    async def _k_step(self) -> AsyncIterator[EngineOutput]:
        """Choose one step among K candidates; steer or refuse when every attempt fails.

        After a failed streamed step, its block is one of the K: the first attempt draws
        K - 1 more (none of them the greedy continuation, which is what failed)."""
        cfg, failed = self.cfg, self.failed
        cap = cfg.first_step_tokens if self.need_k or self.step == 0 else cfg.step_max_tokens
        rejected = [failed] if failed is not None else []
        self.failed, self.interval = None, 1
        chosen: Candidate | None = None
        for attempt in range(cfg.retries + 1):
            after_failure = attempt == 0 and failed is not None
            n = max(1, cfg.candidates - 1) if after_failure else cfg.candidates
            draw = self.dec.draw(n, cap, greedy=not after_failure)
            self.rounds += 1
            rid = f"{self.rid}-k{self.rounds}"
            passing, lost = await self.dec.choose(
                self.engine, [self.beam], self.sampling, self.budget, rid, attempt, draw
            )
            rejected += lost
            if passing:
                chosen = passing[0][1]
                break
        reports = tuple(c.report() for c in rejected)
        if chosen is not None:
            self.need_k = False
            event = AlignmentStep.chosen(self.step, "choose", chosen.report(), rejected=reports)
            finish = self._finish_of(chosen)
            yield self._release(chosen.text, list(chosen.token_ids), finish, event)
            return
        at_start = self.step == 0 and not cfg.steer_first_step and not self.prompt_passed
        if self.steered or at_start:  # a safe refusal replaces the rest
            self.dec.stats.refused += 1
            event = AlignmentStep(
                step=self.step, action="refusal", text=cfg.refusal_text, rejected=reports
            )
            refusal_ids = await self.engine.tokenize(cfg.refusal_text)
            yield self._release(cfg.refusal_text, refusal_ids, "stop", event)
            return
        self.steered, self.need_k = True, True
        self.dec.stats.steered += 1
        event = AlignmentStep(step=self.step, action="steer", text=cfg.steer_text, rejected=reports)
        steer_ids = await self.engine.tokenize(cfg.steer_text)
        yield self._release(cfg.steer_text, steer_ids, None, event)

    # ------------------------------------------------------------------ streaming

    def _is_boundary(self, text: str, n_tokens: int) -> bool:
        """A step ends at the delimiter after some content, or at the step's token cap."""
        body = text.lstrip()
        if not body:
            return False
        return self.cfg.step_delimiter in body or n_tokens >= self.cfg.step_max_tokens

    async def _stream(self) -> AsyncIterator[EngineOutput]:
        """Stream the rest of the answer, releasing steps as their scores pass; on a failing
        score abort the generation and leave the failed block in ``self.failed``."""
        sampling = replace(
            self.sampling, n=1, max_tokens=self.budget, logprobs=None, structured=None
        )
        self.streams += 1
        rid = f"{self.rid}-s{self.streams}"
        gen = self.engine.generate(list(self.beam.token_ids), sampling, rid)
        text, ids, block = "", [], []
        ended = False
        try:
            async for out in gen:
                finish = None
                for delta in out.choices:
                    text += delta.text
                    ids += delta.token_ids
                    self.dec.stats.generated_tokens += len(delta.token_ids)
                    finish = delta.finish_reason or finish
                ended = finish is not None or out.finished
                if not (ended or self._is_boundary(text, len(ids))):
                    continue
                block.append(Candidate(text, ids, finished=finish == "stop"))
                text, ids = "", []
                if not ended and len(block) < self.interval:
                    continue
                end = (finish or "stop") if ended else None
                async with contextlib.aclosing(self._judge(block, end)) as judged:
                    async for released in judged:
                        yield released
                block = []
                if self.failed is not None or ended:
                    return
        finally:
            await gen.aclose()  # closing an engine stream early aborts its request

    async def _judge(
        self, block: list[Candidate], finish: FinishReason | None
    ) -> AsyncIterator[EngineOutput]:
        """Score a block of streamed steps as one; release them if it passes, else keep the
        block (joined) in ``self.failed`` for the K-candidate round."""
        joined = Candidate(
            "".join(c.text for c in block),
            [t for c in block for t in c.token_ids],
            block[-1].finished,
        )
        stats = self.dec.stats
        if joined.text.strip():
            await score_candidates(self.cfg, self.dec.question, self.beam.text, [joined], stats)
            stats.candidates += 1
        if joined.rejected_by:
            stats.rejected += 1
            self.failed = joined
            return
        self._schedule(joined)
        first = self.step
        span = (first, first + len(block) - 1) if len(block) > 1 else None
        for i, cand in enumerate(block):
            event = AlignmentStep(
                step=self.step,
                action="pass",
                text=cand.text,
                scores=joined.scores,
                total=joined.total,
                block=span,
            )
            last = i == len(block) - 1
            yield self._release(cand.text, list(cand.token_ids), finish if last else None, event)

    def _schedule(self, passed: Candidate) -> None:
        """Score less often while every model's score stays far above its threshold."""
        if not passed.scores:
            self.interval = 1
            return
        margins = [passed.scores[wm.model.name] - wm.threshold for wm in self.cfg.models]
        if min(margins) >= self.cfg.skip_margin:
            self.interval = min(self.interval * 2, self.cfg.score_every_max)
        else:
            self.interval = 1
