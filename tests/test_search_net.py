"""Tests for ``safework.search.net``: the bounded LRU of seen results and the retry loop.

The sleeps of ``retry`` are recorded by a fake, so no test waits.

Run: ``pytest tests/test_search_net.py``.
"""

from __future__ import annotations

import pytest

from safework.search.net import SeenCache, retry


def test_seen_cache_keeps_the_most_recent_entries() -> None:
    cache: SeenCache[int] = SeenCache(2)
    cache.add("a", 1)
    cache.add("b", 2)
    cache.add("c", 3)  # evicts a, the oldest
    assert "a" not in cache
    assert cache.get("a") is None
    assert (cache.get("b"), cache.get("c"), len(cache)) == (2, 3, 2)


def test_seen_cache_get_and_add_make_an_entry_the_most_recent() -> None:
    cache: SeenCache[int] = SeenCache(2)
    cache.add("a", 1)
    cache.add("b", 2)
    assert cache.get("a") == 1  # a is now the most recent: b goes next
    cache.add("c", 3)
    assert "b" not in cache
    cache.add("a", 10)  # replacing refreshes too
    cache.add("d", 4)
    assert "c" not in cache
    assert (cache.get("a"), cache.get("d")) == (10, 4)


def test_seen_cache_of_size_zero_keeps_nothing() -> None:
    cache: SeenCache[int] = SeenCache(0)
    cache.add("a", 1)
    assert len(cache) == 0
    assert cache.get("a") is None


class Flaky:
    """Raises ``errors`` in turn, then returns ``"ok"``; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def test_retry_returns_the_first_success_after_exponential_backoff() -> None:
    call, sleeps = Flaky(TimeoutError(), ConnectionError()), Sleeps()
    result = await retry(call, 4, 0.5, retry_on=(TimeoutError, ConnectionError), sleep=sleeps)
    assert result == "ok"
    assert call.calls == 3
    assert sleeps == [0.5, 1.0]


async def test_retry_raises_the_last_error_once_attempts_run_out() -> None:
    call, sleeps = Flaky(TimeoutError("first"), TimeoutError("second")), Sleeps()
    with pytest.raises(TimeoutError, match="second") as info:
        await retry(call, 2, 0.2, retry_on=TimeoutError, sleep=sleeps)
    assert call.calls == 2
    assert sleeps == [0.2]
    assert info.value.__context__ is None  # earlier attempts' errors are not chained


async def test_retry_raises_other_errors_at_once() -> None:
    call, sleeps = Flaky(ValueError("bad"), TimeoutError()), Sleeps()
    with pytest.raises(ValueError, match="bad"):
        await retry(call, 5, 0.1, retry_on=TimeoutError, sleep=sleeps)
    assert (call.calls, sleeps) == (1, [])


async def test_retry_with_one_attempt_does_not_retry() -> None:
    call, sleeps = Flaky(TimeoutError()), Sleeps()
    with pytest.raises(TimeoutError):
        await retry(call, 1, 0.1, retry_on=TimeoutError, sleep=sleeps)
    assert (call.calls, sleeps) == (1, [])
    with pytest.raises(ValueError, match="attempts"):
        await retry(Flaky(), 0, 0.1, retry_on=TimeoutError)
