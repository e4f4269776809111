"""``/v1/memory``: the record as clients see it, a new preference, the paged list, the
deletion receipt."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from safework.memory.records import PREFERENCE_CHARS
from safework.memory.store import CorrectionRecord


class MemoryRecordOut(BaseModel):
    id: str
    object: Literal["memory"] = "memory"
    question: str
    reasoning: str
    corrected_reasoning: str
    answer: str | None = None
    feedback: str | None = None
    model: str
    created_at: int
    kind: Literal["correction", "preference"] = "correction"
    text: str | None = None
    """A preference's text (what guides every answer); None for a correction."""

    @classmethod
    def of(cls, record: CorrectionRecord) -> MemoryRecordOut:
        data = record.to_json()
        data["created_at"] = int(data["created_at"])
        data["text"] = record.text if record.kind == "preference" else None
        return cls.model_validate(data)


class MemoryCreate(BaseModel):
    """``POST /v1/memory``: a standing preference of this API key's tenant."""

    model_config = {"extra": "forbid"}

    kind: Literal["preference"] = Field(
        description="Only preferences are created here; corrections come from /cot/edit."
    )
    text: str = Field(
        min_length=1,
        max_length=PREFERENCE_CHARS,
        description="What every answer should follow, e.g. 'Answer in metric units.'",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be empty or whitespace")
        if "\x00" in v:
            raise ValueError("text must not contain NUL characters")
        return v.strip()


class MemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryRecordOut]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class MemoryDeleted(BaseModel):
    id: str
    object: Literal["memory.deleted"] = "memory.deleted"
    deleted: bool = True
