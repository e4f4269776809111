"""A client that goes away stops its work: within 1 s no engine request of it still runs.

The app is called as a raw ASGI application so the test controls exactly when the client
disconnects: every ``receive()`` after the body returns ``http.disconnect`` at that moment,
whether or not the server is listening. ``disconnect_during`` then measures, from that
moment, how long until the fake engine runs nothing and the app call has returned, and checks
that every engine request started was finished, aborted or closed (closing an engine stream
aborts it, by the ``Engine`` contract). Strategies (aligned, search, fan-out, /cot/edit) are in
``test_disconnect_strategies.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from safework.server import ServerConfig, create_app
from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .fakes import FakeEngine

LIMIT_S = 1.0
"""The promise: this long after a disconnect, nothing of the client's runs any more."""


SEND_S = 0.1
"""Time each body message takes to send: long enough that a disconnect may come while the
server is sending, not only while it waits for the engine."""


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(
    app: Any, body: dict, disconnect_after: float, path: str = "/v1/chat/completions"
) -> list[dict]:
    """POST ``body``; the client disconnects ``disconnect_after`` seconds after sending it."""
    sent: list[dict] = []
    raw = json.dumps(body).encode()
    loop = asyncio.get_running_loop()
    gone_at: float | None = None

    async def receive() -> dict:
        nonlocal gone_at
        if gone_at is None:
            gone_at = loop.time() + disconnect_after
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(max(0.0, gone_at - loop.time()))
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.sleep(SEND_S)  # a slow reader: the server waits in send too

    await asyncio.wait_for(app(_scope(path), receive, send), timeout=30)
    return sent


@dataclass
class Outcome:
    sent: list[dict]
    running_at_disconnect: set[str]
    left: set[str]
    """Still running 5 s after the disconnect."""
    settle_s: float
    """From the disconnect until the engine ran none of the client's requests."""
    handler_s: float
    """From the disconnect until the app call returned."""

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def disconnect_during(
    app: Any,
    engine: FakeEngine,
    body: dict,
    path: str = "/v1/chat/completions",
    after: float = 0.3,
) -> Outcome:
    """Send ``body``, disconnect ``after`` seconds later, measure what still runs."""
    loop = asyncio.get_running_loop()
    call = asyncio.create_task(_call(app, body, after, path))
    gone_at = loop.time() + after
    await asyncio.sleep(after)
    running = set(engine.running)
    while engine.running and loop.time() - gone_at < 5:  # noqa: ASYNC110 - measuring
        await asyncio.sleep(0.002)
    settle, left = loop.time() - gone_at, set(engine.running)
    await asyncio.wait({call}, timeout=max(0.0, 5 - (loop.time() - gone_at)))
    handler = loop.time() - gone_at
    sent = await call
    return Outcome(sent, running, left, settle, handler)


def check_stopped(engine: FakeEngine, out: Outcome) -> None:
    """The promise, and that the case tested something (requests ran at the disconnect)."""
    assert out.running_at_disconnect, "nothing ran at the disconnect: the case tests nothing"
    assert out.settle_s < LIMIT_S, f"{out.left or 'requests'} ran {out.settle_s:.2f} s after it"
    assert out.handler_s < LIMIT_S, f"the request went on {out.handler_s:.2f} s"
    assert engine.unended() == []
    assert b"[DONE]" not in out.body  # cut, not finished


def long_engine(step_delay: float = 0.01) -> FakeEngine:
    """Streams 1,000 different words (no loop for the search to cut), one a step: ten
    seconds at the default ``step_delay`` unless stopped."""
    words = " ".join(f"w{i}" for i in range(1000))
    return FakeEngine(words, step_delay=step_delay, max_model_len=8192)


@contextlib.asynccontextmanager
async def without_gc_finalisers() -> AsyncIterator[None]:
    """Async generators dropped without being closed stay suspended (as when a reference
    cycle keeps them until a later garbage collection), so nothing relies on the garbage
    collector to abort an engine request; they are closed at the end."""
    hooks = sys.get_asyncgen_hooks()
    kept: list[Any] = []
    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=kept.append)
    try:
        yield
    finally:
        sys.set_asyncgen_hooks(*hooks)
        for agen in kept:
            with contextlib.suppress(BaseException):
                await agen.aclose()


async def run_case(
    engine: FakeEngine,
    body: dict,
    path: str = "/v1/chat/completions",
    after: float = 0.3,
    **config: Any,
) -> Outcome:
    config.setdefault("memory", None)
    app = create_app(ServerConfig(**config), engine_factory=lambda _: engine)
    async with app.router.lifespan_context(app), without_gc_finalisers():
        return await disconnect_during(app, engine, body, path, after)


MESSAGES = [{"role": "user", "content": "go"}]


@pytest.mark.parametrize("stream", [True, False])
async def test_plain_chat(stream: bool) -> None:
    engine = long_engine()
    body = {"messages": MESSAGES, "stream": stream, "max_tokens": 4000}
    out = await run_case(engine, body)
    check_stopped(engine, out)
    assert engine.aborted == engine.started  # the plain request, explicitly


@pytest.mark.parametrize("stream", [True, False])
async def test_completions_of_several_prompts(stream: bool) -> None:
    engine = long_engine()
    body = {"prompt": ["a", "b"], "n": 2, "stream": stream, "max_tokens": 4000}
    out = await run_case(engine, body, "/v1/completions")
    check_stopped(engine, out)
    assert len(engine.started) == 2


async def test_finished_request_is_not_aborted() -> None:
    engine = FakeEngine()
    app = create_app(ServerConfig(memory=None), engine_factory=lambda _: engine)
    async with app.router.lifespan_context(app):
        body = {"messages": MESSAGES}
        sent = await _call(app, body, disconnect_after=5)
    assert sent[0]["status"] == 200
    assert engine.aborted == []
    assert engine.finished == set(engine.started)


# --------------------------------------------------------------------------- moderations


@pytest.fixture
def slow_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOADERS, "slow", "tests.fakes:load_slow_value_model")


async def test_moderation_with_a_judge_on_the_engine_is_aborted(slow_models: None) -> None:
    engine = FakeEngine("safe safe safe safe safe", step_delay=0.5)  # each verdict 1.5 s
    models = ValueModelsConfig({"judge": ValueModelEntry("judge:served")})
    body = {"input": [f"text {i}" for i in range(8)]}
    out = await run_case(engine, body, "/v1/moderations", value_models=models)
    check_stopped(engine, out)


async def test_moderation_in_worker_threads_is_abandoned(slow_models: None) -> None:
    engine = FakeEngine()
    models = ValueModelsConfig({"slow": ValueModelEntry("slow:0.05")})  # 64 texts: 3.2 s
    app = create_app(ServerConfig(value_models=models, memory=None), lambda _: engine)
    async with app.router.lifespan_context(app):
        model = app.state.alignment.models["slow"]
        body = {"input": [f"text {i}" for i in range(64)]}
        gone_at = time.monotonic() + 0.3
        await asyncio.wait_for(_call(app, body, 0.3, "/v1/moderations"), 0.3 + LIMIT_S)
        handler_s = time.monotonic() - gone_at
        await asyncio.sleep(1.5)  # a worker thread left running would go on scoring
    assert handler_s < LIMIT_S
    assert len(model.scored_at) < 64, "every text was scored: the work was not abandoned"
    assert max(model.scored_at) < gone_at + LIMIT_S
