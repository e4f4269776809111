"""``/v1/memory``: the record as clients see it, the paged list, the deletion receipt."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

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

    @classmethod
    def of(cls, record: CorrectionRecord) -> MemoryRecordOut:
        data = record.to_json()
        data["created_at"] = int(data["created_at"])
        return cls.model_validate(data)


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
