"""The events a strategy attaches to its ``EngineOutput`` steps, as small frozen dataclasses.

Guided decoding reports each reasoning step it chose (with its value scores and the candidates
it rejected), the deliberative search each query, read and its answer. The server forwards them
to clients in the response's ``safework`` object (``events`` in a stream, ``steps`` or
``search.trace`` in JSON); ``to_json()`` is that wire form, a plain dict whose keys and their
order are part of the API, so clients and tests see exactly what the dict events gave before.

``choice`` is set by ``server.fanout.FanOut`` (``dataclasses.replace``) when one copy of a
strategy answers choice ``i`` of an ``n``-choice request; it is sent last, only when set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "AlignmentBeam",
    "AlignmentDone",
    "AlignmentStep",
    "CandidateReport",
    "Confidence",
    "Event",
    "SearchAnswer",
    "SearchQuery",
    "SearchRead",
    "StepAction",
]

StepAction = Literal["choose", "pass", "steer", "refusal"]


@dataclass(frozen=True, kw_only=True)
class Event:
    """One structured event; subclasses name their ``type`` and list their fields."""

    type: ClassVar[str]
    choice: int | None = None
    """The choice this event belongs to, when a fanned-out request has several."""

    def to_json(self) -> dict[str, Any]:
        """The event as clients receive it: ``type``, the fields, then ``choice`` if set."""
        out = {"type": self.type, **self._fields()}
        if self.choice is not None:
            out["choice"] = self.choice
        return out

    def _fields(self) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True, kw_only=True)
class CandidateReport:
    """A scored candidate step as reported: its text, each model's score, the weighted total,
    and the models whose threshold it missed (sent only when there are any)."""

    text: str
    scores: dict[str, float]
    total: float
    rejected_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "scores": self.scores, "total": self.total}
        if self.rejected_by:
            out["rejected_by"] = list(self.rejected_by)
        return out


_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "choose": ("action", "text", "scores", "total", "rejected"),
    "pass": ("action", "text", "scores", "total", "block"),
    "steer": ("rejected", "action", "text"),
    "refusal": ("rejected", "action", "text"),
}
"""Each action's keys after ``step``, in the order clients have always received them."""


@dataclass(frozen=True, kw_only=True)
class AlignmentStep(Event):
    """One step of a guided answer: chosen among candidates (``choose``), streamed and passed
    (``pass``, cascade), or an intervention when every candidate failed (``steer``,
    ``refusal``: ``text`` is the inserted reflection or the refusal)."""

    type: ClassVar[str] = "alignment.step"
    step: int
    action: StepAction
    text: str
    scores: dict[str, float] | None = None
    total: float | None = None
    rejected: tuple[CandidateReport, ...] = ()
    block: tuple[int, int] | None = None
    """Cascade: the first and last step one score covered, when it covered several."""

    @classmethod
    def chosen(
        cls, step: int, action: StepAction, report: CandidateReport, **extra: Any
    ) -> AlignmentStep:
        """A step whose text is a scored candidate (``choose`` or ``pass``)."""
        return cls(
            step=step,
            action=action,
            text=report.text,
            scores=report.scores,
            total=report.total,
            **extra,
        )

    def _fields(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "action": self.action,
            "text": self.text,
            "scores": self.scores,
            "total": self.total,
            "rejected": [c.to_json() for c in self.rejected],
            "block": None if self.block is None else list(self.block),
        }
        out: dict[str, Any] = {"step": self.step}
        for key in _STEP_KEYS[self.action]:
            if values[key] is not None:
                out[key] = values[key]
        return out


@dataclass(frozen=True, kw_only=True)
class AlignmentDone(Event):
    """A streamed guided answer ended without a step of its own (budget or steps spent)."""

    type: ClassVar[str] = "alignment.done"


@dataclass(frozen=True, kw_only=True)
class AlignmentBeam(Event):
    """The steps of the best beam, sent once with the whole answer (``beam_width > 1``)."""

    type: ClassVar[str] = "alignment.beam"
    steps: tuple[Event, ...]

    def _fields(self) -> dict[str, Any]:
        return {"steps": [s.to_json() for s in self.steps]}


# --------------------------------------------------------------------------- search


@dataclass(frozen=True, kw_only=True)
class SearchQuery(Event):
    """A search the loop ran: the results shown to the model and those dropped as irrelevant,
    or the backend's ``error``."""

    type: ClassVar[str] = "search.query"
    turn: int
    query: str
    backend: str
    error: str | None = None
    dropped: tuple[dict[str, Any], ...] = ()
    results: tuple[dict[str, Any], ...] = ()

    def _fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"turn": self.turn, "query": self.query, "backend": self.backend}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(dropped=list(self.dropped), results=list(self.results))
        return out


@dataclass(frozen=True, kw_only=True)
class SearchRead(Event):
    """A document the loop read: its excerpt's size and cuts, or the backend's ``error``."""

    type: ClassVar[str] = "search.read"
    turn: int
    id: str
    error: str | None = None
    title: str = ""
    url: str | None = None
    chars: int = 0
    neutralised: int = 0

    def _fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"turn": self.turn, "id": self.id}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(title=self.title, url=self.url, chars=self.chars)
            out["neutralised"] = self.neutralised
        return out


@dataclass(frozen=True, kw_only=True)
class Confidence:
    """An answer's confidence: as found (``raw``, from ``source``) and calibrated."""

    raw: float | None
    source: str | None
    calibrated: float | None
    candidates: Mapping[str, float] = field(default_factory=dict, compare=False)
    """Every raw confidence the answer had (``stated``, ``logprob``...), ``raw`` among them:
    what a calibration is fitted on. Not part of the response."""

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "source": self.source, "calibrated": self.calibrated}


@dataclass(frozen=True, kw_only=True)
class SearchAnswer(Event):
    """The search's answer, with its confidence and what the loop noticed on the way."""

    type: ClassVar[str] = "search.answer"
    answer: str
    confidence: Confidence
    turns: int
    protocol: Literal["model", "fallback"]
    prior_answer: str | None
    notes: Sequence[str] = ()
    errors: Sequence[str] = ()
    wording: Mapping[str, Any] | None = None
    """With ``verbal_confidence``: the wording the answer was given and the model's own
    (``safework.search.verbal.VerbalAnswer.to_json``)."""

    def _fields(self) -> dict[str, Any]:
        out = {
            "answer": self.answer,
            "confidence": self.confidence.to_json(),
            "turns": self.turns,
            "protocol": self.protocol,
            "prior_answer": self.prior_answer,
            "notes": list(self.notes),
            "errors": list(self.errors),
        }
        if self.wording is not None:
            out["wording"] = dict(self.wording)
        return out
