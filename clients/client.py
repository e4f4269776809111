"""``SafeWork`` and ``AsyncSafeWork``: the official ``openai`` client, plus SafeWork's extensions.

They *are* ``openai.OpenAI`` / ``openai.AsyncOpenAI``: every SDK call, option and exception
works unchanged. What they add:

- ``chat.completions.create(..., alignment=, search=, memory=, strategy=)`` fill the request's
  ``safework`` block; the result is a ``SafeWorkCompletion`` (``.safework`` typed: steps with
  value scores, sources, confidence, memory hits), or with ``stream=True`` a ``ChatStream``
  that yields the SDK's chunks and gathers the same information;
- ``cot_edit(...)`` posts a corrected chain of thought to ``/cot/edit``;
- ``memory.list() / retrieve(id) / delete(id)`` manage the tenant's stored corrections and
  preferences (``list`` pages with the SDK's cursor paginator); ``memory.prefer(text)`` stores
  a standing preference.

Errors are the SDK's: ``openai.AuthenticationError`` for a refused key,
``openai.BadRequestError`` for a bad setting, ``openai.NotFoundError`` for an unknown
correction, ``openai.APIError`` for an error sent mid-stream.

    from safework.clients import SafeWork

    client = SafeWork(base_url="http://127.0.0.1:8000/v1", api_key="sk-...")
    reply = client.chat.completions.create(
        messages=[{"role": "user", "content": "How do I store bleach safely?"}], alignment=True
    )
    for step in reply.safework.steps:
        print(step.scores, step.text)
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import openai
from openai import AsyncStream, Stream
from openai._resource import AsyncAPIResource, SyncAPIResource
from openai.pagination import AsyncCursorPage, SyncCursorPage
from openai.resources.chat import AsyncChat, Chat
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .options import cot_edit_body, memory_query, with_safework
from .stream import AsyncChatStream, ChatStream
from .types import MemoryDeleted, MemoryRecord, SafeWorkCompletion

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _settings(base_url: str | None, api_key: str | None) -> dict[str, str]:
    """Arguments from the environment: ``SAFEWORK_BASE_URL`` and ``SAFEWORK_API_KEY``
    (a server without keys accepts any, so the key defaults to a placeholder)."""
    return {
        "base_url": base_url or os.environ.get("SAFEWORK_BASE_URL") or DEFAULT_BASE_URL,
        "api_key": api_key or os.environ.get("SAFEWORK_API_KEY") or "no-key",
    }


def _root(client: openai.OpenAI | openai.AsyncOpenAI) -> str:
    """The server's root URL (``/cot/edit`` is not under ``/v1``)."""
    return str(client.base_url).rstrip("/").removesuffix("/v1")


def _typed(completion: ChatCompletion) -> SafeWorkCompletion:
    return SafeWorkCompletion.model_validate(completion.model_dump())


# --- sync --------------------------------------------------------------------------------


class SafeWorkCompletions(Completions):
    def create(  # type: ignore[override]
        self,
        *,
        messages: Any,
        model: str | None = None,
        stream: bool = False,
        alignment: Any = None,
        search: Any = None,
        memory: Any = None,
        strategy: str | None = None,
        extra_body: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SafeWorkCompletion | ChatStream:
        """The SDK's ``create`` with SafeWork's options; ``model`` defaults to the served one.

        ``alignment=True`` / ``search=True`` pick that strategy with the server's settings;
        ``AlignmentOptions(...)`` / ``SearchOptions(...)`` (or dicts) set them;
        ``memory=False`` answers without past corrections, ``MemoryOptions(...)`` tunes it.
        """
        body = with_safework(extra_body, strategy, alignment, search, memory)
        assert isinstance(self._client, SafeWork)
        result = super().create(
            messages=messages,
            model=model or self._client.served_model(),
            stream=stream,
            extra_body=body,
            **kwargs,
        )
        if isinstance(result, Stream):
            return ChatStream(result)
        return _typed(result)


class SafeWorkChat(Chat):
    @cached_property
    def completions(self) -> SafeWorkCompletions:  # type: ignore[override]
        return SafeWorkCompletions(self._client)


class Memory(SyncAPIResource):
    """The tenant's stored corrections (``/v1/memory``)."""

    def list(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        q: str | None = None,
        kind: str | None = None,
    ) -> SyncCursorPage[MemoryRecord]:
        """Newest first; iterate the page to walk every record (it fetches the next pages).
        ``kind``: only ``"correction"`` or only ``"preference"`` records."""
        return self._get_api_list(
            "/memory",
            page=SyncCursorPage[MemoryRecord],
            options={"params": memory_query(limit, after, q, kind)},
            model=MemoryRecord,
        )

    def prefer(self, text: str) -> MemoryRecord:
        """Store a standing preference ("Answer in metric units."): it guides every later
        answer of this API key's tenant."""
        body = {"kind": "preference", "text": text}
        return self._post("/memory", body=body, cast_to=MemoryRecord)

    def retrieve(self, memory_id: str) -> MemoryRecord:
        return self._get(f"/memory/{_checked(memory_id)}", cast_to=MemoryRecord)

    def delete(self, memory_id: str) -> MemoryDeleted:
        return self._delete(f"/memory/{_checked(memory_id)}", cast_to=MemoryDeleted)


class SafeWork(openai.OpenAI):
    """``openai.OpenAI`` for a SafeWork server (see the module docstring)."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, **kw: Any):
        super().__init__(**_settings(base_url, api_key), **kw)
        self._served_model: str | None = None

    @cached_property
    def chat(self) -> SafeWorkChat:  # type: ignore[override]
        return SafeWorkChat(self)

    @cached_property
    def memory(self) -> Memory:
        return Memory(self)

    def served_model(self) -> str:
        """The served model: the first id ``/v1/models`` lists (asked once)."""
        if self._served_model is None:
            self._served_model = self.models.list().data[0].id
        return self._served_model

    def cot_edit(
        self,
        messages: Any,
        edited_reasoning: str,
        *,
        reasoning: str = "",
        answer: str | None = None,
        feedback: str | None = None,
        remember: bool = True,
        scope: str = "question",
        model: str | None = None,
        stream: bool = False,
        **sampling: Any,
    ) -> SafeWorkCompletion | ChatStream:
        """Continue from a corrected chain of thought and (``remember``) store the correction.

        ``messages`` ends with the user's question; ``edited_reasoning`` is the reasoning the
        model continues from (typically the right part of its own, then the fix).
        ``scope="always"`` stores ``feedback`` as a standing preference instead.
        """
        body = cot_edit_body(
            messages, edited_reasoning, reasoning, answer, feedback, remember, stream, sampling
        )
        if scope != "question":
            body["scope"] = scope
        body["model"] = model or self.served_model()
        result = self.post(
            f"{_root(self)}/cot/edit",
            body=body,
            cast_to=SafeWorkCompletion,
            stream=stream,
            stream_cls=Stream[ChatCompletionChunk],
        )
        return ChatStream(result) if isinstance(result, Stream) else result


# --- async -------------------------------------------------------------------------------


class AsyncSafeWorkCompletions(AsyncCompletions):
    async def create(  # type: ignore[override]
        self,
        *,
        messages: Any,
        model: str | None = None,
        stream: bool = False,
        alignment: Any = None,
        search: Any = None,
        memory: Any = None,
        strategy: str | None = None,
        extra_body: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SafeWorkCompletion | AsyncChatStream:
        """``SafeWorkCompletions.create`` for ``AsyncSafeWork``."""
        body = with_safework(extra_body, strategy, alignment, search, memory)
        assert isinstance(self._client, AsyncSafeWork)
        result = await super().create(
            messages=messages,
            model=model or await self._client.served_model(),
            stream=stream,
            extra_body=body,
            **kwargs,
        )
        if isinstance(result, AsyncStream):
            return AsyncChatStream(result)
        return _typed(result)


class AsyncSafeWorkChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncSafeWorkCompletions:  # type: ignore[override]
        return AsyncSafeWorkCompletions(self._client)


class AsyncMemory(AsyncAPIResource):
    def list(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        q: str | None = None,
        kind: str | None = None,
    ) -> Any:  # an AsyncPaginator: await it for a page, or ``async for`` every record
        return self._get_api_list(
            "/memory",
            page=AsyncCursorPage[MemoryRecord],
            options={"params": memory_query(limit, after, q, kind)},
            model=MemoryRecord,
        )

    async def prefer(self, text: str) -> MemoryRecord:
        body = {"kind": "preference", "text": text}
        return await self._post("/memory", body=body, cast_to=MemoryRecord)

    async def retrieve(self, memory_id: str) -> MemoryRecord:
        return await self._get(f"/memory/{_checked(memory_id)}", cast_to=MemoryRecord)

    async def delete(self, memory_id: str) -> MemoryDeleted:
        return await self._delete(f"/memory/{_checked(memory_id)}", cast_to=MemoryDeleted)


class AsyncSafeWork(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` for a SafeWork server: the same additions as ``SafeWork``."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, **kw: Any):
        super().__init__(**_settings(base_url, api_key), **kw)
        self._served_model: str | None = None

    @cached_property
    def chat(self) -> AsyncSafeWorkChat:  # type: ignore[override]
        return AsyncSafeWorkChat(self)

    @cached_property
    def memory(self) -> AsyncMemory:
        return AsyncMemory(self)

    async def served_model(self) -> str:
        """The served model: the first id ``/v1/models`` lists (asked once)."""
        if self._served_model is None:
            page = await self.models.list()
            self._served_model = page.data[0].id
        return self._served_model

    async def cot_edit(
        self,
        messages: Any,
        edited_reasoning: str,
        *,
        reasoning: str = "",
        answer: str | None = None,
        feedback: str | None = None,
        remember: bool = True,
        scope: str = "question",
        model: str | None = None,
        stream: bool = False,
        **sampling: Any,
    ) -> SafeWorkCompletion | AsyncChatStream:
        body = cot_edit_body(
            messages, edited_reasoning, reasoning, answer, feedback, remember, stream, sampling
        )
        if scope != "question":
            body["scope"] = scope
        body["model"] = model or await self.served_model()
        result = await self.post(
            f"{_root(self)}/cot/edit",
            body=body,
            cast_to=SafeWorkCompletion,
            stream=stream,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )
        return AsyncChatStream(result) if isinstance(result, AsyncStream) else result


def _checked(memory_id: str) -> str:
    if not memory_id or "/" in memory_id:
        raise ValueError(f"not a memory id: {memory_id!r}")
    return memory_id
