"""``/v1/moderations``: request and response models in the OpenAI shape, with one extension.

OpenAI's ``input`` (a string, a list of strings, or a list of ``{"type": "text", "text": ...}``
objects) is judged as what a user sends: each text as a prompt. A list of parts that holds
``{"type": "image_url", ...}`` parts is one input, as in OpenAI's API: its texts joined, judged
with its images by the value models that read them. SafeWork's extension
``messages`` judges chat turns in context, one conversation (a list of ``{"role", "content"}``)
or a list of them: the last turn of each is judged, an ``assistant`` turn as a response to the
``user`` turn before it, a ``user`` turn as a prompt. Results come in order: ``input`` first,
then ``messages``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..images import ImagePart
from ..protocol import OpenAIBaseModel, random_id

__all__ = [
    "ChatTurn",
    "JudgedItem",
    "ModerationRequest",
    "ModerationResponse",
    "ModerationResult",
    "TextInput",
]


class TextInput(BaseModel):
    """OpenAI's text input object."""

    type: Literal["text"]
    text: str


InputPart = Annotated[TextInput | ImagePart, Field(discriminator="type")]


class ChatTurn(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class JudgedItem(BaseModel):
    """One thing to classify: a prompt alone (``response is None``) or a response in context."""

    prompt: str
    response: str | None = None
    param: str = "input"
    """Where the item came from (``input[0]``, ``messages[1]``), for errors."""
    images: list[tuple[str, ImagePart]] = Field(default_factory=list)
    """Image parts sent with the prompt, each with its name (``input[1]``)."""


class ModerationRequest(OpenAIBaseModel):
    input: str | list[str] | list[InputPart] | None = Field(
        default=None,
        description="Text, or a list of texts, to classify as user prompts; a list of parts "
        "with images is one input.",
    )
    model: str | None = None
    # --- SafeWork extension ---
    messages: list[ChatTurn] | list[list[ChatTurn]] | None = Field(
        default=None,
        description="A conversation, or a list of them: the last turn of each is classified, "
        "an assistant turn as a response to the user turn before it, a user turn as a prompt.",
    )

    @model_validator(mode="after")
    def _something_to_judge(self) -> ModerationRequest:
        if self.input is None and self.messages is None:
            raise ValueError("give `input` (texts) or `messages` (conversations)")
        if self.messages is not None and (
            not self.messages or any(isinstance(c, list) and not c for c in self.messages)
        ):
            raise ValueError("a conversation in `messages` is empty")
        return self

    @property
    def items(self) -> list[JudgedItem]:
        """What to classify, in the order of the results."""
        texts: list[Any] = []
        parts = self.input if isinstance(self.input, list) else []
        images = [(f"input[{i}]", p) for i, p in enumerate(parts) if isinstance(p, ImagePart)]
        if images:  # text and images together: one input
            text = "\n".join(p.text for p in parts if isinstance(p, TextInput))
            items = [JudgedItem(prompt=text, param="input", images=images)]
        else:
            if isinstance(self.input, str):
                texts = [self.input]
            elif self.input is not None:
                texts = [t.text if isinstance(t, TextInput) else t for t in self.input]
            one = isinstance(self.input, str)
            items = [
                JudgedItem(prompt=t, param="input" if one else f"input[{i}]")
                for i, t in enumerate(texts)
            ]
        if self.messages:
            first = self.messages[0]
            if isinstance(first, ChatTurn):
                items.append(_judged(self.messages, "messages"))  # type: ignore[arg-type]
            else:
                conversations: list[list[ChatTurn]] = self.messages  # type: ignore[assignment]
                items += [_judged(c, f"messages[{i}]") for i, c in enumerate(conversations)]
        return items


def _judged(conversation: list[ChatTurn], param: str) -> JudgedItem:
    """The last turn: a response to the user turn before it, or a prompt."""
    last = conversation[-1]
    if last.role != "assistant":
        return JudgedItem(prompt=last.content, param=param)
    users = [t.content for t in conversation[:-1] if t.role == "user"]
    return JudgedItem(prompt=users[-1] if users else "", response=last.content, param=param)


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    # --- SafeWork extension ---
    safework: dict[str, Any] | None = Field(
        default=None,
        description="How it was judged: `judged` (prompt or response), the overall `risk` and "
        "`threshold` of the built-in classifier, and each custom value model's risk.",
    )


class ModerationResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("modr"))
    object: Literal["moderation"] = "moderation"
    model: str
    results: list[ModerationResult]
