"""The pieces both modes of guided decoding share: settings, candidates, beams, scoring.

``guided.py`` (exhaustive mode and the ``GuidedDecoder`` strategy) and ``cascade.py`` (the
default mode) both build on these, so neither imports the other's internals: the guided decoder
imports the cascade, and the cascade talks to the decoder through ``StepChooser``, the part of
it a K-candidate round needs. ``step_output`` makes the ``EngineOutput`` of one released step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, FinishReason, SamplingConfig
from safework.engine.events import CandidateReport, Event

from .base import ValueModel, ValueScore

__all__ = [
    "MODES",
    "REFUSAL_TEXT",
    "STEER_TEXT",
    "Beam",
    "Candidate",
    "Draw",
    "GuidanceConfig",
    "GuidanceStats",
    "StepChooser",
    "WeightedModel",
    "score_candidates",
    "step_output",
]

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
    """Cascade: when every candidate of the answer's first step fails and a prompt classifier
    flagged the request (or none judged it), refuse at once (the default: the value models
    reject any start the model gives, so the request itself is what they object to; steering
    costs another K-round and mostly ends in a refusal anyway). ``True`` steers there too, as
    exhaustive mode does. A request the prompt classifiers passed is always steered once."""

    images: tuple[Any, ...] = ()
    """The images the user sent with the request: given to the value models that read them
    (``ValueModel.reads_images``) with every pair they score."""

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

    def report(self) -> CandidateReport:
        """The candidate as events report it (``AlignmentStep.text``/``rejected``)."""
        return CandidateReport(
            text=self.text,
            scores=self.scores,
            total=self.total,
            rejected_by=tuple(self.rejected_by),
        )


@dataclass
class Beam:
    """One partial answer: its text, tokens, and the steps that built it."""

    token_ids: list[int]
    text: str = ""
    score: float = 0.0
    finished: bool = False
    steps: list[Event] = field(default_factory=list)


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
        if config.images and wm.model.reads_images:
            images = [config.images] * len(responses)
            scores = await wm.model.score_with_images(prompts, responses, images)
        else:
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


def step_output(
    rid: str,
    prompt_tokens: int,
    text: str,
    ids: Sequence[int],
    finish: FinishReason | None,
    event: Event,
) -> EngineOutput:
    """One released step of a guided answer: its text as choice 0's delta, with its event."""
    delta = ChoiceDelta(index=0, text=text, token_ids=ids, finish_reason=finish)
    return EngineOutput(rid, prompt_tokens, [delta], finish is not None, events=[event])


class StepChooser(Protocol):
    """What a K-candidate round needs of the decoder (``GuidedDecoder`` is one)."""

    config: GuidanceConfig
    question: str
    stats: GuidanceStats

    def draw(self, n: int | None = None, cap: int | None = None, greedy: bool = True) -> Draw:
        """The default draw of a step, with overrides."""
        ...

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
        """Extend each beam; the passing (beam, candidate) pairs and the rejected."""
        ...
