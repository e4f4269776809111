"""A disconnect stops every engine request of the strategies within 1 s: guided decoding
(cascade and exhaustive), deliberative search, fan-out (``n > 1``) and ``/cot/edit``.

Each strategy runs sub-requests with ids of its own (``-k1-b0-0``, ``-s1``, ``-t1``,
``-prior``, ``-c0``, ``-reason``...), some concurrently and some left suspended while the
strategy scores or searches. The harness (``test_disconnect.disconnect_during``) disconnects
mid-answer and checks that the fake engine runs none of them within ``LIMIT_S`` and that
each was finished, aborted or closed; the handler itself must have returned by then too.
"""

from __future__ import annotations

from typing import Any

import pytest

from safework.search import base as search_base
from safework.server import search as server_search
from safework.server.search import SearchSettings
from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .fakes import BagOfWordsEncoder
from .test_disconnect import MESSAGES, check_stopped, long_engine, run_case


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
    monkeypatch.setitem(registry.LOADERS, "slow", "tests.fakes:load_slow_value_model")
    monkeypatch.setitem(search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
    monkeypatch.setattr(server_search, "default_encoder", lambda cache: BagOfWordsEncoder())


def value_models(mode: str) -> ValueModelsConfig:
    """A keyword model and one scoring 0.1 s per text in a worker thread."""
    return ValueModelsConfig(
        {
            "safety": ValueModelEntry("fake:unsafe", weight=0.5, threshold=0.5),
            "values": ValueModelEntry("slow:0.1", weight=0.5, threshold=0.0),
        },
        {"candidates": 2, "mode": mode},
    )


def search_settings(backend: str = "fake:docs", retrieve_first: bool = False) -> SearchSettings:
    return SearchSettings(
        backends={"fake": backend},
        defaults={"prior_check": True, "retrieve_first": retrieve_first},
        timeout_s=30.0,
    )


def body(model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 4000, **extra}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("mode", ["cascade", "exhaustive"])
@pytest.mark.parametrize("n", [1, 2])
async def test_aligned(stream: bool, mode: str, n: int) -> None:
    """Cascade: disconnected while it streams after the first step (0.5 s); exhaustive: while
    the first step's candidates (96 tokens, 1 s) are sampled, the only time it has engine
    requests."""
    engine = long_engine(0.05)
    request = body("fake-model:aligned", stream, n=n)
    after = 1.5 if mode == "cascade" else 0.5
    out = await run_case(engine, request, after=after, value_models=value_models(mode))
    check_stopped(engine, out)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("n", [1, 2])
async def test_search(stream: bool, n: int) -> None:
    engine = long_engine(0.02)
    out = await run_case(engine, body("fake-model:search", stream, n=n), search=search_settings())
    check_stopped(engine, out)
    assert any(rid.endswith("-prior") for rid in engine.started)


@pytest.mark.parametrize("stream", [True, False])
async def test_search_waiting_on_a_hung_backend(stream: bool) -> None:
    """The session waits on the backend (30 s) while its closed-book check runs."""
    engine = long_engine(0.1)
    settings = search_settings("fake:slow", retrieve_first=True)
    out = await run_case(engine, body("fake-model:search", stream), search=settings)
    check_stopped(engine, out)
    assert [rid.rsplit("-", 1)[-1] for rid in engine.started] == ["prior"]


@pytest.mark.parametrize("stream", [True, False])
async def test_cot_edit(stream: bool) -> None:
    engine = long_engine()
    request = {
        "messages": MESSAGES,
        "edited_reasoning": "Let me think again.",
        "remember": False,
        "stream": stream,
        "max_tokens": 4000,
    }
    out = await run_case(engine, request, "/cot/edit")
    check_stopped(engine, out)
    assert [rid.rsplit("-", 1)[-1] for rid in engine.started] == ["reason"]
