"""``FanOut``: n copies of a one-choice strategy as one n-choice stream; ``merge``'s failure
and early-exit behaviour (every copy closed, so every engine request ends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, Event, SamplingConfig
from safework.errors import EngineError
from safework.server.fanout import FanOut, copy_sampling, copy_seed, merge

from .fakes import FakeEngine


@dataclass(frozen=True, kw_only=True)
class Step(Event):
    """A test event: the copy's ``k``-th step."""

    type: ClassVar[str] = "step"
    k: int

    def _fields(self) -> dict[str, Any]:
        return {"k": self.k}


class Copy:
    """A one-choice strategy: ``words`` one per step (with a ``step`` event each), ``delay``
    seconds apart; records what it was called with and whether its stream was closed."""

    def __init__(self, words: list[str], delay: float = 0.0, fail: bool = False) -> None:
        self.words, self.delay, self.fail = words, delay, fail
        self.calls: list[tuple[SamplingConfig, str]] = []
        self.closed = False

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        self.calls.append((sampling, request_id))
        try:
            for k, word in enumerate(self.words):
                await asyncio.sleep(self.delay)
                if self.fail and k == 1:
                    raise EngineError("copy failed")
                last = k == len(self.words) - 1
                finish = "stop" if last else None
                delta = ChoiceDelta(index=0, text=word, token_ids=[1], finish_reason=finish)
                event = Step(k=k)
                yield EngineOutput(request_id, len(prompt_ids), [delta], last, events=[event])
        finally:
            self.closed = True


async def _run(fan: FanOut, sampling: SamplingConfig) -> list[EngineOutput]:
    return [out async for out in fan(FakeEngine(), [1, 2, 3], sampling, "req")]


async def test_copies_become_choices_with_tagged_events() -> None:
    copies = [Copy(["a", "b"]), Copy(["x", "y", "z"], delay=0.01)]
    outs = await _run(FanOut(copies), SamplingConfig(n=2, temperature=0.8))
    assert all(o.request_id == "req" and o.prompt_tokens == 3 for o in outs)
    texts = ["", ""]
    for o in outs:
        for d in o.choices:
            texts[d.index] += d.text
        assert [e.to_json()["choice"] for e in o.events] == [d.index for d in o.choices]
    assert texts == ["ab", "xyz"]
    # finished once, on the last step, although copy 0 finished first
    assert [o.finished for o in outs] == [False] * (len(outs) - 1) + [True]
    finishes = [(d.index, d.finish_reason) for o in outs for d in o.choices if d.finish_reason]
    assert sorted(finishes) == [(0, "stop"), (1, "stop")]
    assert [rid for c in copies for _, rid in c.calls] == ["req-c0", "req-c1"]
    assert all(s.n == 1 for c in copies for s, _ in c.calls)


@pytest.mark.parametrize(
    ("temperature", "seed", "expected"),
    [
        (0.8, 7, [7, copy_seed(7, 1), copy_seed(7, 2)]),  # sampled: one seed per copy
        (0.0, 7, [7, 7, 7]),  # greedy: nothing to vary, the copies are the same decoding
        (0.8, None, [None, None, None]),  # unseeded: each copy is random on its own
    ],
)
async def test_copy_seeds(temperature: float, seed: int | None, expected: list) -> None:
    copies = [Copy(["a"]) for _ in range(3)]
    await _run(FanOut(copies), SamplingConfig(n=3, temperature=temperature, seed=seed))
    assert [c.calls[0][0].seed for c in copies] == expected


def test_copy_seeds_are_distinct_reproducible_and_in_range() -> None:
    seeds = [copy_seed(2**63 - 1, i) for i in range(1, 200)] + [copy_seed(-5, 1)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**56 for s in seeds)
    assert copy_seed(2**63 - 1, 3) == copy_seed(2**63 - 1, 3)
    assert copy_sampling(SamplingConfig(n=4, seed=1), 0).seed == 1


async def test_a_failing_copy_fails_the_request_and_closes_the_others() -> None:
    slow = Copy(["a"] * 50, delay=0.01)
    fan = FanOut([Copy(["x", "y"], fail=True), slow])
    with pytest.raises(EngineError, match="copy failed"):
        await _run(fan, SamplingConfig(n=2))
    assert slow.closed


async def test_closing_the_stream_closes_every_copy() -> None:
    copies = [Copy(["a"] * 50, delay=0.01), Copy(["b"] * 50, delay=0.02)]
    stream = FanOut(copies)(FakeEngine(), [1], SamplingConfig(n=2), "req")
    async with contextlib.aclosing(stream):
        await anext(stream)
    assert all(c.closed for c in copies)


async def test_cancelling_the_consumer_closes_every_stream() -> None:
    copies = [Copy(["a"] * 50, delay=0.01), Copy(["b"] * 50, delay=0.01)]
    streams = [c(FakeEngine(), [1], SamplingConfig(), f"r{i}") for i, c in enumerate(copies)]

    async def consume() -> None:
        async with contextlib.aclosing(merge(streams)) as merged:
            async for _ in merged:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(c.closed for c in copies)
