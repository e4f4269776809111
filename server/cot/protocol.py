"""``POST /cot/edit``: the request (a conversation, the model's reasoning, the user's
corrected reasoning) and the chat request it becomes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from safework.errors import RequestError
from safework.memory.records import PREFERENCE_CHARS, TEXT_LIMITS

from ..chat.protocol import ChatCompletionRequest, ChatMessage
from ..memory.quota import text_bytes
from ..sampling import SamplingRequest

MAX_REASONING_CHARS = 32_000
"""``reasoning`` and ``edited_reasoning``: the page sends the reasoning it let the user edit."""
MAX_ANSWER_CHARS = 16_000
MAX_FEEDBACK_CHARS = 2_000
"""Stored, never given to a model whole (recall shows 300-character excerpts): kept small."""


class CotEditRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation up to and including the user's question."
    )
    reasoning: str = Field(
        default="", max_length=MAX_REASONING_CHARS, description="What the model reasoned."
    )
    edited_reasoning: str = Field(
        max_length=MAX_REASONING_CHARS,
        description="The user's corrected reasoning: a prefix the model continues from.",
    )
    answer: str | None = Field(
        default=None, max_length=MAX_ANSWER_CHARS, description="The answer the model gave."
    )
    feedback: str | None = Field(
        default=None, max_length=MAX_FEEDBACK_CHARS, description="What the user says was wrong."
    )
    remember: bool = Field(default=True, description="Store the correction in the memory.")
    scope: Literal["question", "always"] = Field(
        default="question",
        description="'question': the correction guides answers to similar questions; 'always': "
        "its feedback is stored as a standing preference that guides every answer of this "
        "API key (needs feedback, at most 1,000 characters).",
    )
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1, description="Deprecated alias.")

    @field_validator("edited_reasoning")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("edited_reasoning must not be empty or whitespace")
        if "<think>" in v or "</think>" in v:
            raise ValueError("edited_reasoning must not contain <think> tags")
        return v

    @field_validator("messages")
    @classmethod
    def _has_question(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text.strip() for m in v):
            raise ValueError("messages must contain a user turn with the question")
        if v[-1].role == "assistant":
            raise ValueError(
                "messages must end before the answer: the corrected reasoning replaces it"
            )
        return v

    @model_validator(mode="after")
    def _one_choice(self) -> CotEditRequest:
        if self.n != 1:
            raise ValueError("n must be 1 for /cot/edit")
        limit = TEXT_LIMITS["question"]
        if self.scope == "always":
            if not self.remember:
                raise ValueError("scope 'always' stores a preference: it needs remember=true")
            if not self.feedback or not self.feedback.strip():
                raise ValueError(
                    "scope 'always' needs feedback: the preference itself, e.g. 'Answer in "
                    "metric units.'"
                )
            if len(self.feedback) > PREFERENCE_CHARS:
                raise ValueError(
                    f"a preference (feedback) is at most {PREFERENCE_CHARS} characters"
                )
        if self.remember and len(self.question) > limit:
            raise ValueError(
                f"the question (the last user message) has {len(self.question)} characters; "
                f"the memory stores questions of at most {limit}: shorten it or send "
                "remember=false"
            )
        return self

    @property
    def question(self) -> str:
        return next(m.text for m in reversed(self.messages) if m.role == "user")

    @property
    def mistake(self) -> str:
        """What is stored as the record's ``reasoning``: the reasoning and the answer given."""
        if self.answer:
            return f"{self.reasoning}\nAnswer given: {self.answer}".strip()
        return self.reasoning

    def known_bytes(self, model: str) -> int:
        """The least the stored record will weigh: the text this request brings (the model's
        continuation and answer come on top)."""
        return text_bytes(self.question, self.mistake, self.edited_reasoning, self.feedback, model)

    def chat_request(self) -> ChatCompletionRequest:
        """The conversation with the corrected reasoning as an open final assistant message."""
        fields = self.model_dump(
            exclude={
                "messages",
                "reasoning",
                "edited_reasoning",
                "answer",
                "feedback",
                "remember",
                "scope",
            },
            exclude_none=True,
        )
        opened: dict[str, Any] = {
            "role": "assistant",
            "content": "<think>\n" + self.edited_reasoning,
        }
        try:
            return ChatCompletionRequest.model_validate(
                {
                    **fields,
                    "messages": [*(m.model_dump(exclude_none=True) for m in self.messages), opened],
                    "continue_final_message": True,
                }
            )
        except ValidationError as e:  # a chat field sent along (tools, top_logprobs...) is bad
            raise invalid_extra(e) from None


def invalid_extra(error: ValidationError) -> RequestError:
    """A 400 naming the first bad chat field of a ``/cot/edit`` body (no traceback, no 500)."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f"'{param}'" if param else "the request"
    return RequestError(f"Invalid value for {where}: {message}.", param=param)
