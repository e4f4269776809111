"""Typed views of SafeWork's extensions: the request's ``safework`` options and the
response's ``safework`` block, correction-memory records and ``/cot/edit`` results.

The models mirror the server's JSON but are the client's own (clients speak HTTP and never
import the server). Response models allow unknown fields, so a newer server never breaks an
older client; request options forbid them, so a typo fails here instead of in a 400.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from openai import BaseModel
from openai.types.chat import ChatCompletion

# --- request options (the ``safework`` request block) -----------------------------------


class _Options(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ValueModelSetting(_Options):
    weight: float = pydantic.Field(default=1.0, ge=0.0, le=1.0)
    threshold: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    """Hard constraint: candidate steps scoring below are dropped."""


class AlignmentOptions(_Options):
    """Guided decoding: value models score candidate reasoning steps (unset = server's)."""

    value_models: dict[str, ValueModelSetting] | None = None
    candidates: int | None = pydantic.Field(default=None, ge=1)
    beam_width: int | None = pydantic.Field(default=None, ge=1)
    step_delimiter: str | None = None
    max_steps: int | None = pydantic.Field(default=None, ge=1)
    retries: int | None = pydantic.Field(default=None, ge=0)


class SearchOptions(_Options):
    """Deliberative search: search, read and reflect before answering (unset = server's)."""

    backend: str | None = None
    max_turns: int | None = pydantic.Field(default=None, ge=1)
    top_k: int | None = pydantic.Field(default=None, ge=1)
    read: bool | None = None
    retrieve_first: bool | None = None
    min_similarity: float | None = None
    confidence: Literal["auto", "stated", "logprob", "agreement"] | None = None
    samples: int | None = pydantic.Field(default=None, ge=2)
    prior_check: bool | None = None


class MemoryOptions(_Options):
    """Past corrections given to the model (unset = server's)."""

    enabled: bool | None = None
    top_k: int | None = pydantic.Field(default=None, ge=1)
    min_similarity: float | None = None


# --- the response's ``safework`` block ---------------------------------------------------


class ScoredText(BaseModel):
    """A candidate reasoning step and what each value model gave it (0..1)."""

    text: str = ""
    scores: dict[str, float] = pydantic.Field(default_factory=dict)
    total: float = 0.0
    rejected_by: list[str] = pydantic.Field(default_factory=list)


class AlignmentStep(ScoredText):
    """One step of an aligned answer: the chosen candidate (``action="choose"``), a steer
    nudge, or the refusal that replaced the answer, with the candidates it beat."""

    step: int = 0
    action: str = "choose"
    rejected: list[ScoredText] = pydantic.Field(default_factory=list)


class AlignmentInfo(BaseModel):
    mode: str = "cascade"
    """``cascade`` or ``exhaustive`` (the decoding mode that wrote the answer)."""
    steps: list[AlignmentStep] = pydantic.Field(default_factory=list)
    candidates: int = 0
    rejected: int = 0
    steered: int = 0
    refused: int = 0
    generated_tokens: int = 0


class Source(BaseModel):
    id: str
    title: str = ""
    url: str | None = None
    snippet: str = ""
    score: float | None = None
    similarity: float | None = None


class Confidence(BaseModel):
    raw: float | None = None
    source: str | None = None
    calibrated: float | None = None

    @property
    def value(self) -> float | None:
        """The calibrated confidence when the server has a calibration, else the raw one."""
        return self.calibrated if self.calibrated is not None else self.raw


class SearchInfo(BaseModel):
    backend: str | None = None
    queries: list[str] = pydantic.Field(default_factory=list)
    sources: list[Source] = pydantic.Field(default_factory=list)
    confidence: Confidence | None = None
    trace: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    turns: int | None = None
    protocol: str | None = None
    notes: list[str] = pydantic.Field(default_factory=list)
    errors: list[str] = pydantic.Field(default_factory=list)


class MemoryHit(BaseModel):
    id: str
    similarity: float
    kind: str = "question"
    """What matched: the question (``question``)."""


class MemoryInfo(BaseModel):
    hits: list[MemoryHit] = pydantic.Field(default_factory=list)
    preferences: list[str] = pydantic.Field(default_factory=list)
    """The ids of the tenant's standing preferences given to the model."""


class SafeWorkInfo(BaseModel):
    """What SafeWork did for an answer: the aligned steps and their value scores, the search
    queries, sources and confidence, the past corrections used, and (streams) the raw events."""

    strategy: str | None = None
    alignment: AlignmentInfo | None = None
    search: SearchInfo | None = None
    memory: MemoryInfo | None = None
    events: list[dict[str, Any]] = pydantic.Field(default_factory=list)

    @classmethod
    def of(cls, obj: Any) -> SafeWorkInfo | None:
        """From a ``ChatCompletion`` (or a chunk): ``None`` when it has no ``safework`` block."""
        block = obj.get("safework") if isinstance(obj, dict) else getattr(obj, "safework", None)
        if block is None:
            return None
        return cls.model_validate(block)

    @property
    def steps(self) -> list[AlignmentStep]:
        """The aligned answer's steps (from the summary, or the events of a stream)."""
        if self.alignment is not None and self.alignment.steps:
            return self.alignment.steps
        steps = [e for e in self.events if e.get("type") == "alignment.step"]
        return [AlignmentStep.model_validate(e) for e in steps]

    @property
    def sources(self) -> list[Source]:
        return self.search.sources if self.search else []

    @property
    def confidence(self) -> float | None:
        if self.search is None or self.search.confidence is None:
            return None
        return self.search.confidence.value

    @property
    def memory_hits(self) -> list[MemoryHit]:
        return self.memory.hits if self.memory else []


# --- memory records and /cot/edit --------------------------------------------------------


class MemoryRecord(BaseModel):
    """A stored correction or standing preference (``GET /v1/memory/{id}``)."""

    id: str
    object: str = "memory"
    question: str
    reasoning: str
    corrected_reasoning: str
    answer: str | None = None
    feedback: str | None = None
    model: str
    created_at: int
    kind: str = "correction"
    text: str | None = None
    """A preference's text."""


class MemoryDeleted(BaseModel):
    id: str
    object: str = "memory.deleted"
    deleted: bool


class SafeWorkCompletion(ChatCompletion):
    """A chat completion with SafeWork's block typed: ``safework`` (steps, sources,
    confidence, memory hits) and, from ``/cot/edit``, the stored correction's id."""

    safework: SafeWorkInfo | None = None
    memory_id: str | None = None
    """``/cot/edit``: the stored correction (``None`` when ``remember=False``)."""

    @property
    def reasoning(self) -> str | None:
        """Choice 0's reasoning."""
        return reasoning_of(self.choices[0].message) if self.choices else None

    @property
    def content(self) -> str | None:
        """Choice 0's answer."""
        return self.choices[0].message.content if self.choices else None


def reasoning_of(message: Any) -> str | None:
    """The reasoning on a message or a stream delta (``reasoning_content``, or ``reasoning``)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if value:
            return value
    return None
