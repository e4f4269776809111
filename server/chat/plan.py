"""How one chat request is answered (``Plan``), and what it reports in ``safework``.

A ``Plan`` holds the request's strategy, the messages to render, and the objects that report
on the answer afterwards: a guided decoder or a search session per choice, the memory hits
used. ``strategies.py`` builds one per request from its registry; ``serving.py`` runs it and
puts ``Plan.block`` (JSON) or ``Plan.summary`` (a stream's last chunk) in ``safework``, the
typed events (``engine/events.py``) in their wire form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from safework.engine.events import AlignmentBeam, AlignmentStep, Event
from safework.memory.store import CorrectionRecord, MemoryHit
from safework.search.deliberative import DeliberativeSearch
from safework.value_models.guided import GuidedDecoder

from ..alignment import record_guidance
from ..generation import Strategy
from ..memory.watch import MistakeWatch
from ..metrics import ServerMetrics
from ..search import record_search

__all__ = ["ROUTE", "FinishHook", "Plan", "alignment_block"]

ROUTE = "/v1/chat/completions"


def alignment_block(decoder: GuidedDecoder, events: Sequence[Event]) -> dict[str, Any]:
    """The response's ``safework`` object for an aligned answer: its steps and counts."""
    steps = [e.to_json() for e in events if isinstance(e, AlignmentStep)]
    for e in events:
        if isinstance(e, AlignmentBeam):
            steps = [step.to_json() for step in e.steps]
    s = decoder.stats
    return {
        "strategy": "aligned",
        "alignment": {
            "mode": decoder.config.mode,
            "steps": steps,
            "candidates": s.candidates,
            "rejected": s.rejected,
            "steered": s.steered,
            "refused": s.refused,
            "generated_tokens": s.generated_tokens,
            "prompt_risk": None if s.prompt_risk is None else round(s.prompt_risk, 4),
        },
    }


FinishHook = Callable[[str, str], Awaitable[dict[str, Any]]]
"""``(reasoning, content) of the answer -> fields for the response`` (e.g. ``memory_id``)."""


@dataclass
class Plan:
    """How one request is answered: its strategy, the messages to render, and the objects
    that report on it afterwards (a guided decoder or search session per choice, memory hits).

    With ``n > 1`` the aligned and search strategies run one decoder or session per choice
    (``FanOut``); the ``safework`` object then reports each in ``choices``, by index."""

    strategy: Strategy
    messages: list[dict[str, Any]]
    decoders: list[GuidedDecoder] = field(default_factory=list)
    searches: list[DeliberativeSearch] = field(default_factory=list)
    memory_hits: list[MemoryHit] = field(default_factory=list)
    memory_preferences: list[CorrectionRecord] = field(default_factory=list)
    """The tenant's standing preferences given to the model."""
    mistakes: MistakeWatch | None = None
    """The watch over the answer's first steps (``memory/watch.py``): its hits are reported
    after the question's."""
    on_finish: FinishHook | None = None
    """Runs once the answer is complete, before the response (or the last chunk) is sent."""
    route: str = ROUTE

    def _choices(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """Each choice's report: ``{"strategy", "alignment" | "search"}``."""
        blocks = [
            alignment_block(d, [e for e in events if (e.choice or 0) == i])
            for i, d in enumerate(self.decoders)
        ]
        blocks += [{"strategy": "search", "search": s.summary()} for s in self.searches]
        return blocks

    def _memory(self) -> dict[str, Any]:
        # One entry per record: one the answer was rewritten with says "mistake" (in the place
        # of its question hit, if it was one too), so clients count corrections, not uses.
        by_id = {h.record.id: h for h in self.memory_hits}
        by_id |= {h.record.id: h for h in (self.mistakes.hits if self.mistakes else [])}
        if not by_id and not self.memory_preferences:
            return {}
        hits = [
            {"id": h.record.id, "similarity": round(h.similarity, 4), "kind": h.kind}
            for h in by_id.values()
        ]
        out: dict[str, Any] = {"hits": hits}
        if self.memory_preferences:
            out["preferences"] = [p.id for p in self.memory_preferences]
        return {"memory": out}

    def block(self, events: Sequence[Event]) -> dict[str, Any] | None:
        """The response's ``safework`` object: one choice's report at the top level (``n=1``),
        or ``strategy`` and the reports in ``choices`` (``n>1``); the memory hits used."""
        blocks = self._choices(events)
        out: dict[str, Any] = {}
        if len(blocks) == 1:
            out.update(blocks[0])
        elif blocks:
            out["strategy"] = blocks[0]["strategy"]
            out["choices"] = [
                {"index": i, **{k: v for k, v in b.items() if k != "strategy"}}
                for i, b in enumerate(blocks)
            ]
        out.update(self._memory())
        return out or None

    def summary(self, events: Sequence[Event]) -> dict[str, Any]:
        """What a stream's last chunk carries in ``safework``: with ``n>1`` the whole object,
        as in JSON; with one choice the search summary (aligned steps went out as events)."""
        if len(self.decoders) + len(self.searches) > 1:
            return self.block(events) or {}
        out: dict[str, Any] = {}
        if self.searches:
            out.update(strategy="search", search=self.searches[0].summary())
        out.update(self._memory())
        return out

    def record(self, metrics: ServerMetrics) -> None:
        for decoder in self.decoders:
            record_guidance(metrics, decoder.stats)
        for search in self.searches:
            record_search(metrics, search.backend.name, search.stats)
