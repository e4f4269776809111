"""``/v1/moderations``: request and response models in the OpenAI shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..protocol import OpenAIBaseModel, random_id


class ModerationRequest(OpenAIBaseModel):
    input: str | list[str] = Field(description="Text, or a list of texts, to classify.")
    model: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]


class ModerationResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("modr"))
    object: Literal["moderation"] = "moderation"
    model: str
    results: list[ModerationResult]
