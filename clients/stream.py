"""Chat streams that keep what SafeWork sends beside the text: reasoning, events, summary.

``ChatStream`` (and ``AsyncChatStream``) wrap the SDK's ``Stream[ChatCompletionChunk]``:
iterating them yields the SDK's chunks unchanged, while ``StreamState`` gathers each
choice's reasoning and answer, the ``safework`` events (chosen steps with their scores,
search queries with their results), the summary on the last chunk (sources, confidence,
memory hits) and ``memory_id`` (``/cot/edit``). ``parts()`` yields the same stream as
``("reasoning" | "content", text)`` and ``("event", dict)`` pairs, the shape a UI renders.

A stream that ends before every choice finished (the server went away, a proxy cut it)
raises ``IncompleteStreamError``, an ``openai.APIConnectionError``, instead of passing off
half an answer as a whole one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import openai
from openai import AsyncStream, Stream
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from .types import SafeWorkInfo, reasoning_of

Part = tuple[Literal["reasoning", "content"], str] | tuple[Literal["event"], dict[str, Any]]
S = TypeVar("S", Stream[ChatCompletionChunk], AsyncStream[ChatCompletionChunk])


class IncompleteStreamError(openai.APIConnectionError):
    """The stream stopped before the answer finished."""


@dataclass
class ChoiceText:
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None


@dataclass
class StreamState:
    """Everything a chat stream said so far, gathered chunk by chunk."""

    choices: dict[int, ChoiceText] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    memory_id: str | None = None
    usage: CompletionUsage | None = None
    id: str | None = None
    model: str | None = None

    def add(self, chunk: ChatCompletionChunk) -> list[Part]:
        """Take one chunk in; return its parts in order (reasoning, content, events)."""
        self.id, self.model = chunk.id, chunk.model
        parts: list[Part] = []
        for choice in chunk.choices:
            state = self.choices.setdefault(choice.index, ChoiceText())
            reasoning, content = reasoning_of(choice.delta), choice.delta.content
            if reasoning:
                state.reasoning += reasoning
                if choice.index == 0:
                    parts.append(("reasoning", reasoning))
            if content:
                state.content += content
                if choice.index == 0:
                    parts.append(("content", content))
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
        block = getattr(chunk, "safework", None) or {}
        for event in block.get("events", []):
            self.events.append(event)
            parts.append(("event", event))
        self.summary.update({k: v for k, v in block.items() if k != "events"})
        self.memory_id = getattr(chunk, "memory_id", None) or self.memory_id
        if chunk.usage is not None:
            self.usage = chunk.usage
        return parts

    @property
    def finished(self) -> bool:
        return bool(self.choices) and all(c.finish_reason for c in self.choices.values())

    def info(self) -> SafeWorkInfo:
        return SafeWorkInfo.model_validate({**self.summary, "events": self.events})


class _BaseStream(Generic[S]):
    def __init__(self, stream: S) -> None:
        self.stream = stream
        """The SDK's stream: its ``response`` has the HTTP headers."""
        self.state = StreamState()

    def _incomplete(self) -> IncompleteStreamError:
        return IncompleteStreamError(
            message="The stream ended before the answer finished (did the server go away?).",
            request=self.stream.response.request,
        )

    def _check_finished(self) -> None:
        if not self.state.finished:
            raise self._incomplete()

    def choice(self, index: int = 0) -> ChoiceText:
        return self.state.choices.get(index, ChoiceText())

    @property
    def content(self) -> str:
        """Choice 0's answer so far."""
        return self.choice().content

    @property
    def reasoning(self) -> str:
        """Choice 0's reasoning so far."""
        return self.choice().reasoning

    @property
    def finish_reason(self) -> str | None:
        return self.choice().finish_reason

    @property
    def info(self) -> SafeWorkInfo:
        """The ``safework`` view of the stream so far (complete once it is consumed)."""
        return self.state.info()

    @property
    def memory_id(self) -> str | None:
        return self.state.memory_id

    @property
    def usage(self) -> CompletionUsage | None:
        return self.state.usage


class ChatStream(_BaseStream[Stream[ChatCompletionChunk]]):
    """A chat completion stream; iterate it for the SDK's chunks, or ``parts()``."""

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        for chunk in self.stream:
            self.state.add(chunk)
            yield chunk
        self._check_finished()

    def parts(self) -> Iterator[Part]:
        for chunk in self.stream:
            yield from self.state.add(chunk)
        self._check_finished()

    def until_done(self) -> ChatStream:
        """Consume the rest of the stream; return ``self`` with everything gathered."""
        for _ in self:
            pass
        return self

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(_BaseStream[AsyncStream[ChatCompletionChunk]]):
    """``ChatStream`` for ``AsyncSafeWork``: ``async for``, ``parts()``, ``until_done()``."""

    async def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        async for chunk in self.stream:
            self.state.add(chunk)
            yield chunk
        self._check_finished()

    async def parts(self) -> AsyncIterator[Part]:
        async for chunk in self.stream:
            for part in self.state.add(chunk):
                yield part
        self._check_finished()

    async def until_done(self) -> AsyncChatStream:
        async for _ in self:
            pass
        return self

    async def close(self) -> None:
        await self.stream.close()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
