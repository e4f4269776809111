"""Recall by the model's own reasoning: a draft step that repeats a corrected mistake is replaced.

``MistakeWatch`` wraps plain decoding for a tenant whose memory holds mistake keys
(``memory/mistakes.py``). The first ``steps`` steps of the answer (sentences or lines) are held
back until each is complete and checked: the step is compared with the tenant's mistaken steps
(``MemoryStore.search_mistakes``), and

- below ``min_similarity`` it is released to the client as it was generated (tokens, logprobs);
- at or above it, the generation is stopped, the step is dropped, the correction's own step is
  put in its place, and the model continues from there: the text before the step, then the
  correction, as an open prefix (what ``/cot/edit`` does with a user's edited reasoning). The
  record is reported in ``safework.memory.hits`` with ``kind: "mistake"``.

A record corrects one draft at most once, and at most ``max_hits`` steps are replaced. After
``steps`` checked steps everything streams as it comes. The client never sees a dropped step:
only checked text is released; a step still unfinished after ``HOLD_CHARS`` characters is
checked as it stands.

Cost (bench/memory_mistakes.py): the first tokens wait until the first step is complete, plus one
embedding and one index search per checked step; nothing for a tenant without mistake keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, SamplingConfig
from safework.memory.mistakes import mistake_step, split_steps, step_ends
from safework.memory.records import MemoryHit

__all__ = ["HOLD_CHARS", "MIN_STEP_WORDS", "FindMistake", "MistakeWatch"]

MIN_STEP_WORDS = 3
"""Shorter steps ("Yes.", "1.") are released unchecked: too little to resemble a mistake."""
HOLD_CHARS = 240
"""The most text held back unchecked: a run-on step is checked (and released) at this length,
so a model that never ends a sentence cannot hold the stream, or its first byte, for long."""

FindMistake = Callable[[str, frozenset[str]], Awaitable[MemoryHit | None]]
"""``(step, record ids already used) -> the closest mistake at the threshold, or None``."""


@dataclass
class _Segment:
    """One generation: its text, how much of it is checked and released, its held deltas."""

    text: str = ""
    checked: int = 0
    """Characters of ``text`` that are complete, checked steps (or released unchecked)."""
    released: int = 0
    held: list[tuple[int, ChoiceDelta]] = field(default_factory=list)
    """Deltas not sent yet, each with the offset in ``text`` where it ends."""


class MistakeWatch:
    """A strategy: plain decoding whose first steps are checked against the tenant's mistakes."""

    def __init__(self, find: FindMistake, *, steps: int = 4, max_hits: int = 2) -> None:
        self.find = find
        self.steps = steps
        self.max_hits = max_hits
        self.hits: list[MemoryHit] = []
        """The mistakes found and corrected in this answer, in order."""
        self.checked = 0

    @property
    def watching(self) -> bool:
        return self.checked < self.steps and len(self.hits) < self.max_hits

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        n_prompt = len(prompt_ids)
        written = ""  # what the client has been sent of earlier segments, corrections included
        context, budget, part = prompt_ids, sampling.max_tokens, 0
        while True:
            seg = _Segment()
            replaced: tuple[int, int, MemoryHit] | None = None
            rid = request_id if part == 0 else f"{request_id}-mistake{part}"
            stream = engine.generate(context, replace(sampling, max_tokens=budget), rid)
            async with contextlib.aclosing(stream) as outputs:  # closed (aborted) on a hit
                async for out in outputs:
                    for d in out.choices:
                        seg.text += d.text
                        seg.held.append((len(seg.text), d))
                        finished = d.finish_reason is not None
                        if self.watching:
                            replaced = await self._check(seg, final=finished)
                            if replaced is not None:
                                break
                        else:
                            seg.checked = len(seg.text)
                        for released in self._release(seg):
                            last = released.finish_reason is not None
                            yield EngineOutput(request_id, n_prompt, [released], last)
                    if replaced is not None:
                        break
            if replaced is None:
                return
            start, end, hit = replaced
            step = mistake_step(hit.record.reasoning, hit.record.corrected_reasoning)
            assert step is not None  # only records with a mistake step have a mistake key
            dropped = seg.text[start:end]
            lead = dropped[: len(dropped) - len(dropped.lstrip())]  # the step's own spacing
            inserted = seg.text[seg.released : start] + lead + step.correction
            delta = ChoiceDelta(index=0, text=inserted, token_ids=[])
            yield EngineOutput(request_id, n_prompt, [delta], False)
            written += seg.text[:start] + lead + step.correction
            context = prompt_ids + await engine.tokenize(written)
            budget = min(
                sampling.max_tokens - (len(context) - n_prompt),
                engine.max_model_len - len(context),
            )
            if budget <= 0:
                delta = ChoiceDelta(index=0, text="", token_ids=[], finish_reason="length")
                yield EngineOutput(request_id, n_prompt, [delta], True)
                return
            part += 1

    async def _check(self, seg: _Segment, *, final: bool) -> tuple[int, int, MemoryHit] | None:
        """Check each step completed in ``seg`` (the unfinished tail too when ``final``):
        ``(start, end, hit)`` of the first that repeats a mistake, else None."""
        ends = [seg.checked + e for e in step_ends(seg.text[seg.checked :])]
        last = ends[-1] if ends else seg.checked
        if (final and last < len(seg.text)) or len(seg.text) - last >= HOLD_CHARS:
            ends.append(len(seg.text))
        for end in ends:
            if not self.watching:
                seg.checked = len(seg.text) if final else end
                break
            start, seg.checked = seg.checked, end
            text = " ".join(split_steps(seg.text[start:end]))
            if len(text.split()) < MIN_STEP_WORDS:
                continue
            self.checked += 1
            used = frozenset(h.record.id for h in self.hits)
            hit = await self.find(text, used)
            if hit is not None:
                self.hits.append(hit)
                return start, end, hit
        return None

    @staticmethod
    def _release(seg: _Segment) -> list[ChoiceDelta]:
        """The held deltas that end within checked text, in order."""
        out = []
        while seg.held and seg.held[0][0] <= seg.checked:
            end, delta = seg.held.pop(0)
            out.append(delta)
            seg.released = end
        return out
