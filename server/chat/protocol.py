"""``/v1/chat/completions``: request, response and stream-chunk models (OpenAI's field order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from safework.engine.base import StructuredOutput, hide_placeholder

from ..images import ImagePart
from ..protocol import (
    OpenAIBaseModel,
    ResponseFormat,
    UsageInfo,
    now,
    random_id,
)
from ..sampling import SamplingRequest


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(OpenAIBaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    reasoning_content: str | None = None

    @model_validator(mode="after")
    def _images_from_the_user(self) -> ChatMessage:
        if self.role != "user" and self.images:
            raise ValueError("image parts are accepted in user messages only")
        return self

    @property
    def text(self) -> str:
        """The message's text parts, joined (images left out: memory keys and judges read
        this)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""

    @property
    def images(self) -> list[tuple[int, ImagePart]]:
        """The image parts, with their index in ``content``."""
        if not isinstance(self.content, list):
            return []
        return [(i, p) for i, p in enumerate(self.content) if isinstance(p, ImagePart)]

    def to_template(
        self, placeholder: str | None = None, markers: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The dict a chat template expects (``developer`` is a system turn to templates).
        For a model that reads images: each image part becomes ``placeholder``, in place, and
        no text may spell one of its ``markers`` (``hide_placeholder``)."""
        role = "system" if self.role == "developer" else self.role
        content = self.text
        if placeholder is not None:
            pieces = self.content if isinstance(self.content, list) else [content]
            content = "".join(
                placeholder if isinstance(p, ImagePart) else hide_placeholder(_text(p), markers)
                for p in pieces
            )
        message: dict[str, Any] = {"role": role, "content": content}
        if self.reasoning_content:
            message["reasoning_content"] = self.reasoning_content
        return message


def _text(part: TextPart | str) -> str:
    return part if isinstance(part, str) else part.text


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1, description="Deprecated alias.")
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="Accepted, never called: SafeWork answers in text, as a model may under "
        "`tool_choice: auto` (chat UIs offer their built-in tools with every message).",
    )
    tool_choice: str | dict[str, Any] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    # --- SafeWork and vLLM extensions -------------------------------------------------
    continue_final_message: bool = Field(
        default=False,
        description="Continue the final assistant message instead of starting a new turn.",
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None,
        description="Extra variables for the chat template: enable_thinking, thinking, "
        "reasoning_effort (any, special tokens too, only on a server that trusts request "
        "templates).",
    )
    chat_template: str | None = Field(
        default=None,
        max_length=65_536,
        description="A Jinja chat template to use instead of the model's: refused (400) unless "
        "the server runs with --trust-request-chat-template.",
    )

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.tools and self.tool_choice not in (None, "auto", "none"):
            raise ValueError(
                "this server does not call tools: `tool_choice` must be `auto` or `none` "
                "(the answer is text)"
            )
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs a final assistant message")
        return self

    @property
    def question(self) -> str:
        """The last user turn: what value models judge the answer against."""
        return next((m.text for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def image_parts(self) -> list[tuple[str, ImagePart]]:
        """Every image part, in order, with its name for errors (``messages[0].content[1]``)."""
        return [
            (f"messages[{i}].content[{j}]", part)
            for i, m in enumerate(self.messages)
            for j, part in m.images
        ]

    @property
    def completion_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def logprobs_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def structured_output(self) -> StructuredOutput | None:
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return StructuredOutput("json_object")
        assert fmt.json_schema is not None
        return StructuredOutput("json_schema", fmt.json_schema.schema_)


# --- responses ------------------------------------------------------------------------


class TopLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprobOut):
    top_logprobs: list[TopLogprobOut] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None
    safework: dict[str, Any] | None = None
    memory_id: str | None = None
    """``/cot/edit``: the id of the stored correction."""


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageInfo | None = None
    safework: dict[str, Any] | None = None
    memory_id: str | None = None
