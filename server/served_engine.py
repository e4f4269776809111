"""The engine as the server uses it: each request's engine work is tracked, and death noticed.

Every service of the app (chat, completions, the strategies, ``judge:served``, search
sessions) holds a ``ServedEngine`` around the configured engine, so for every engine request,
whoever starts it:

- it is recorded in the HTTP request's ``RequestScope`` (``disconnect.py``) from its first step
  until its stream ends, so a client that disconnects leaves nothing running in the engine;
  the stream is closed shielded from cancellation, since closing is what aborts it;
- an ``EngineDeadError`` from the engine tells the ``EngineMonitor`` (``lifecycle.py``),
  and once the engine is dead a new request is refused at once with that error (503).

Everything else (attributes such as ``model_id``, tokenizing, chat templates) passes through
unchanged. It is registered as a virtual ``Engine`` rather than a subclass so that no class
default of ``Engine`` can hide the wrapped engine's own value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from safework.engine.base import Engine, EngineOutput, SamplingConfig
from safework.errors import EngineDeadError, RequestError

from .disconnect import current_scope
from .lifecycle import EngineMonitor


@Engine.register
class ServedEngine:
    """``engine`` with its requests tracked per HTTP request and its death reported."""

    def __init__(self, engine: Engine, monitor: EngineMonitor) -> None:
        self.inner = engine
        self.monitor = monitor

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def is_dead(self) -> bool:
        return self.monitor.dead or self.inner.is_dead

    async def generate(
        self,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
        *,
        images: Sequence[Any] = (),
    ) -> AsyncIterator[EngineOutput]:
        self.monitor.ensure_alive()
        scope = current_scope()
        given = list(images) or (scope.images if scope is not None else [])
        images = self._images_for(prompt_token_ids, given)
        if scope is not None:
            scope.opened(self.inner, request_id)
        extra = {"images": images} if images else {}
        stream = self.inner.generate(prompt_token_ids, sampling, request_id, **extra)
        try:
            async for out in stream:
                if images and scope is not None and not scope.image_tokens_added:
                    scope.image_tokens_added = out.prompt_tokens - len(prompt_token_ids)
                yield out
        except EngineDeadError:
            self.monitor.report("a request found the engine dead")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _close(stream)
            if scope is not None:
                scope.ended(request_id)

    def _images_for(self, prompt_token_ids: list[int], images: list[Any]) -> list[Any]:
        """The request's images if this prompt holds their placeholders, none if it holds no
        placeholder (a judge's own prompt); a 400 for any other count."""
        token = self.inner.image_token_id
        if not images or token is None:
            return []
        found = prompt_token_ids.count(token)
        if found == 0:
            return []
        if found != len(images):
            raise RequestError(
                f"the prompt holds {found} image placeholders for {len(images)} images",
                param="messages",
            )
        return images

    async def abort(self, request_id: str) -> None:
        try:
            await self.inner.abort(request_id)
        finally:
            scope = current_scope()
            if scope is not None:
                scope.ended(request_id)

    async def check_health(self) -> None:
        await self.monitor.check()


async def _close(stream: AsyncIterator[EngineOutput]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
