"""``n`` choices from one-choice strategies: run ``n`` copies concurrently, merge their streams.

The guided decoder and the search session each write one answer. ``FanOut(copies)`` is a
strategy with the same signature that runs one copy per choice (engine request ids
``{request_id}-c{i}``) and merges their outputs as they arrive into one ``n``-choice stream:
copy ``i``'s choice becomes choice ``i``, its events are tagged ``choice=i``, and the
merged step is ``finished`` once every copy has finished. Closing the stream (a client that
disconnected) closes every copy, which aborts their engine requests.

Copies are independent but reproducible: each gets ``n=1`` and, for a seeded sampled
request, a seed derived from the request's seed and its index (copy 0 keeps the request's
seed, so choice 0 is the answer ``n=1`` gives). A greedy request (temperature 0) has nothing
to vary: its copies get the same settings and give the same answer, as in vLLM.

``merge`` (interleaving async streams as they produce) is shared with text completions,
whose prompts of a batch run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TypeVar

from safework.engine.base import Engine, EngineOutput, SamplingConfig

from .generation import Strategy

T = TypeVar("T")


async def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Interleave ``streams`` as they produce: ``(stream index, item)``. The first failure is
    re-raised; leaving early (or failing) cancels and closes every stream."""
    if len(streams) == 1:
        async with contextlib.aclosing(_indexed(streams[0])) as only:
            async for item in only:
                yield item
        return
    queue: asyncio.Queue[tuple[int, T | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((i, item))
            await queue.put((i, None))
        except BaseException as e:  # delivered to the consumer, which re-raises it
            await queue.put((i, e))
        finally:
            await _close(stream)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _indexed(stream: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    try:
        async for item in stream:
            yield 0, item
    finally:
        await _close(stream)


async def _close(stream: AsyncIterator[object]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def copy_seed(seed: int, index: int) -> int:
    """Copy ``index``'s seed: the request's for copy 0, else a 56-bit hash of both (unrelated
    to the seeds of other requests, unlike ``seed + index``).

    >>> copy_seed(7, 0), copy_seed(7, 1) == copy_seed(7, 1), copy_seed(7, 1) != copy_seed(8, 0)
    (7, True, True)
    """
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def copy_sampling(sampling: SamplingConfig, index: int) -> SamplingConfig:
    """One copy's settings: one choice; a seeded sampled request's seed derived per copy."""
    seed = sampling.seed
    if seed is not None and sampling.temperature != 0:
        seed = copy_seed(seed, index)
    return replace(sampling, n=1, seed=seed)


class FanOut:
    """A strategy: ``copies[i]`` (a one-choice strategy) answers choice ``i``, all at once."""

    def __init__(self, copies: Sequence[Strategy]) -> None:
        self.copies = list(copies)

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        streams = [
            copy(engine, prompt_ids, copy_sampling(sampling, i), f"{request_id}-c{i}")
            for i, copy in enumerate(self.copies)
        ]
        done = [False] * len(streams)
        async with contextlib.aclosing(merge(streams)) as merged:
            async for i, out in merged:
                done[i] = done[i] or out.finished
                yield EngineOutput(
                    request_id,
                    out.prompt_tokens,
                    [replace(d, index=i) for d in out.choices],
                    all(done),
                    out.cached_tokens,
                    [replace(e, choice=i) for e in out.events],
                )
