"""One request as the serving layer sees it: started, metered, aborted when dropped.

A ``Strategy`` produces the outputs: ``plain`` is the engine's own stream; guided decoding
and deliberative search are strategies too, with the same signature.

``Generation.start()`` waits for the first engine step, so a request the engine refuses
becomes an HTTP error before any byte of a stream is sent. Iterating ``outputs()`` records
token counts, time to first token and latency; leaving it before the engine finished (a
client that disconnected, a cancelled task) aborts the request in the engine.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

from safework.engine.base import Engine, EngineOutput, SamplingConfig

from .disconnect import current_scope
from .metrics import ServerMetrics

Strategy = Callable[[Engine, list[int], SamplingConfig, str], AsyncIterator[EngineOutput]]
"""How a request is answered: ``(engine, prompt_ids, sampling, request_id) -> outputs``."""


def plain(
    engine: Engine, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
) -> AsyncIterator[EngineOutput]:
    """Ordinary decoding: the engine's own stream."""
    return engine.generate(prompt_token_ids, sampling, request_id)


@dataclass
class Generation:
    engine: Engine
    metrics: ServerMetrics
    route: str
    prompt_token_ids: list[int]
    sampling: SamplingConfig
    request_id: str
    strategy: Strategy = plain
    started_at: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    finished: bool = False
    _stream: AsyncIterator[EngineOutput] | None = None
    _first: EngineOutput | None = None
    _seen_token: bool = False

    async def start(self) -> None:
        """Submit to the engine and wait for its first step (raises if it refuses)."""
        self.prompt_tokens = len(self.prompt_token_ids)
        self._stream = aiter(
            self.strategy(self.engine, self.prompt_token_ids, self.sampling, self.request_id)
        )
        try:
            self._first = await anext(self._stream)
        except StopAsyncIteration:
            self._first = None
        except BaseException:
            self.finished = True  # refused or failed at once: nothing to abort or to count
            self.prompt_tokens = 0
            await self.aclose()
            raise

    async def outputs(self) -> AsyncIterator[EngineOutput]:
        assert self._stream is not None, "call start() first"
        try:
            if self._first is not None:
                first, self._first = self._first, None
                self._observe(first)
                yield first
            async for out in self._stream:
                self._observe(out)
                yield out
        finally:
            await self.aclose()

    def _observe(self, out: EngineOutput) -> None:
        self.prompt_tokens = out.prompt_tokens
        scope = current_scope()
        if scope is not None and out.prompt_tokens == len(self.prompt_token_ids):
            # a strategy that writes its own outputs (guided, search, a continuation) counts
            # the prompt as its ids, one per image: add what the engine counted for the images
            self.prompt_tokens += scope.image_tokens_added
        self.cached_tokens = max(self.cached_tokens, out.cached_tokens)
        new = sum(len(c.token_ids) for c in out.choices)
        if new and not self._seen_token:
            self._seen_token = True
            self.metrics.ttft.labels(self.route).observe(time.perf_counter() - self.started_at)
        self.completion_tokens += new
        self.finished = self.finished or out.finished

    async def aclose(self) -> None:
        # Shielded: this runs while the task is being cancelled (client disconnect), and
        # anyio re-raises cancellation at every unshielded await inside a cancelled scope.
        with anyio.CancelScope(shield=True):
            await self._release()

    async def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if not self.finished:
            self.metrics.aborted.labels(self.route).inc()
            await self.engine.abort(self.request_id)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        m = self.metrics
        m.prompt_tokens.labels(self.route).inc(self.prompt_tokens)
        m.completion_tokens.labels(self.route).inc(self.completion_tokens)
        m.latency.labels(self.route).observe(time.perf_counter() - self.started_at)
