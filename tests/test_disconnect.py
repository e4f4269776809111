"""A client that goes away mid-generation aborts its engine request (stream and non-stream).

The app is called as a raw ASGI application so the test controls exactly when the client
disconnects.
"""

from __future__ import annotations

import asyncio
import json

from safework.server import ServerConfig, create_app

from .fakes import FakeEngine


async def _call(app, body: dict, disconnect_after: float) -> list[dict]:
    sent: list[dict] = []
    raw = json.dumps(body).encode()
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


async def _run(stream: bool) -> tuple[FakeEngine, list[dict]]:
    engine = FakeEngine(" ".join(["word"] * 200), step_delay=0.01)
    app = create_app(ServerConfig(), engine_factory=lambda _: engine)
    async with app.router.lifespan_context(app):
        body = {"messages": [{"role": "user", "content": "go"}], "stream": stream}
        sent = await _call(app, body, disconnect_after=0.2)
        await asyncio.sleep(0.05)
    return engine, sent


async def test_stream_disconnect_aborts_generation() -> None:
    engine, sent = await _run(stream=True)
    assert len(engine.aborted) == 1
    assert engine.running == set()
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"[DONE]" not in body  # the stream was cut, not finished


async def test_non_stream_disconnect_aborts_generation() -> None:
    engine, _ = await _run(stream=False)
    assert len(engine.aborted) == 1
    assert engine.running == set()


async def test_finished_request_is_not_aborted() -> None:
    engine = FakeEngine()
    app = create_app(ServerConfig(), engine_factory=lambda _: engine)
    async with app.router.lifespan_context(app):
        body = {"messages": [{"role": "user", "content": "go"}]}
        sent = await _call(app, body, disconnect_after=5)
    assert sent[0]["status"] == 200
    assert engine.aborted == []
