"""Engine death (issue 17, finding 15): ``/health`` and requests answer 503, the server stops
and ``safework serve``'s exit status is 1 (vLLM's side: ``test_vllm_errors.py``).

The fake engine "dies" with ``FakeEngine.die()``: running and new requests raise
``EngineDeadError`` and ``is_dead`` turns true.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from safework.engine.base import SamplingConfig
from safework.server import ServerConfig, create_app, lifecycle
from safework.server.lifecycle import EXIT_ENGINE_DEAD, Shutdown, build_server, exit_status
from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .conftest import serve
from .fakes import FakeEngine, KeywordValueModel
from .sse import sse_payloads

MESSAGES = [{"role": "user", "content": "hi"}]


def assert_engine_dead(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "engine_dead")
    assert "Traceback" not in r.text


def test_health_is_503_once_the_engine_died() -> None:
    engine = FakeEngine()
    with serve(engine) as client:
        assert client.get("/health").status_code == 200
        engine.die()
        assert_engine_dead(client.get("/health"))
        shutdown = client.app.state.shutdown  # type: ignore[attr-defined]
        assert shutdown.exit_code == EXIT_ENGINE_DEAD
        assert "engine" in shutdown.reason


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES}),
        ("/v1/chat/completions", {"messages": MESSAGES, "stream": True}),
        ("/v1/completions", {"prompt": "hi"}),
        ("/cot/edit", {"messages": MESSAGES, "edited_reasoning": "So.", "remember": False}),
        ("/v1/moderations", {"input": "hi"}),
    ],
)
def test_requests_to_a_dead_engine_are_503(path: str, body: dict[str, Any]) -> None:
    engine = FakeEngine()
    with serve(engine) as client:
        engine.die()
        assert_engine_dead(client.post(path, json=body))
        assert client.app.state.shutdown.exit_code == EXIT_ENGINE_DEAD  # type: ignore[attr-defined]
        assert engine.requests == []  # refused before the engine


class UnflaggedDeath(FakeEngine):
    """Raises ``EngineDeadError`` while ``is_dead`` still says alive (vLLM's flag is set by a
    monitor thread, possibly after a request saw the error)."""

    @property
    def is_dead(self) -> bool:
        return False


def test_a_request_finds_the_engine_dead_before_the_watchdog_does() -> None:
    engine = UnflaggedDeath()
    with serve(engine) as client:
        engine.dead = True
        assert_engine_dead(client.post("/v1/chat/completions", json={"messages": MESSAGES}))
        assert client.app.state.shutdown.exit_code == EXIT_ENGINE_DEAD  # type: ignore[attr-defined]
        assert_engine_dead(client.get("/health"))  # the server knows, whatever the flag says


class DyingEngine(FakeEngine):
    """Dies after its second step."""

    async def _steps(self, prompt: list[int], s: SamplingConfig, request_id: str) -> Any:
        step = 0
        async for out in super()._steps(prompt, s, request_id):
            step += 1
            if step == 3:
                self.die()
            yield out


def test_a_stream_cut_by_the_death_ends_with_an_error_event_and_done() -> None:
    engine = DyingEngine("one two three four five six")
    with serve(engine) as client:
        r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
        assert r.status_code == 200
        events = sse_payloads(r.text)
        assert events[-1] == "[DONE]"
        assert events[-2]["error"]["code"] == "engine_dead"
        assert client.app.state.shutdown.exit_code == EXIT_ENGINE_DEAD  # type: ignore[attr-defined]


def test_a_non_stream_answer_cut_by_the_death_is_503() -> None:
    with serve(DyingEngine("one two three four five six")) as client:
        assert_engine_dead(client.post("/v1/chat/completions", json={"messages": MESSAGES}))


def test_the_watchdog_stops_an_idle_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "WATCHDOG_INTERVAL_S", 0.02)
    engine = FakeEngine()
    stopped = threading.Event()
    shutdown = Shutdown()
    shutdown.attach(stopped.set)
    app = create_app(ServerConfig(memory=None), lambda _: engine, shutdown=shutdown)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            engine.die()  # no request comes
            for _ in range(100):
                if stopped.is_set():
                    return
                await asyncio.sleep(0.01)

    asyncio.run(run())
    assert stopped.is_set()
    assert shutdown.exit_code == EXIT_ENGINE_DEAD


def test_shutdown_stops_once() -> None:
    calls: list[int] = []
    shutdown = Shutdown()
    shutdown.attach(lambda: calls.append(1))
    shutdown.request(1, "first")
    shutdown.request(2, "second")
    assert (calls, shutdown.exit_code, shutdown.reason) == ([1], 1, "first")


async def test_uvicorn_stops_and_the_exit_status_is_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The serve path: uvicorn on the app stops by itself when the engine dies."""
    monkeypatch.setattr(lifecycle, "WATCHDOG_INTERVAL_S", 0.05)
    engine = FakeEngine()
    shutdown = Shutdown()
    app = create_app(ServerConfig(memory=None), lambda _: engine, shutdown=shutdown)
    server = build_server(app, shutdown, host="127.0.0.1", port=0, log_level="warning")
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
        await asyncio.sleep(0.01)
    assert exit_status(server, shutdown) == 0  # running: an ordinary stop would be 0
    engine.die()
    await asyncio.wait_for(serving, 5)
    assert exit_status(server, shutdown) == EXIT_ENGINE_DEAD


def test_safework_serve_exits_with_the_servers_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """``safework serve`` returns what ``run_server`` reports (1 after engine death), and the
    app it serves stops through the same ``Shutdown``."""
    from safework.cli import main

    served: dict[str, Any] = {}

    def fake_run_server(app: Any, shutdown: Shutdown, **options: Any) -> int:
        served.update(app=app, shutdown=shutdown, **options)
        shutdown.request(EXIT_ENGINE_DEAD, "the engine died")
        return exit_status(SimpleNamespace(started=True), shutdown)  # type: ignore[arg-type]

    monkeypatch.setattr(lifecycle, "run_server", fake_run_server)
    argv = ["serve", "--no-alignment", "--no-search", "--no-calibration", "--no-web-ui"]
    assert main(argv) == EXIT_ENGINE_DEAD
    assert served["app"].state.shutdown is served["shutdown"]
    assert (served["host"], served["port"]) == ("127.0.0.1", 8000)


class OwnEngineJudge(KeywordValueModel):
    """A value model running an engine of its own, as ``judge:MODEL`` does."""

    owns_engine = True

    def __init__(self, name: str, spec: str, keyword: str) -> None:
        super().__init__(name, spec, keyword)
        self.engine = FakeEngine()


def load_own_engine_judge(name: str, spec: str, arg: str, ctx: Any) -> OwnEngineJudge:
    return OwnEngineJudge(name, spec, arg)


def test_a_value_models_own_engine_dying_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "WATCHDOG_INTERVAL_S", 0.02)
    monkeypatch.setitem(registry.LOADERS, "own", f"{__name__}:load_own_engine_judge")
    models = ValueModelsConfig({"judge": ValueModelEntry("own:unsafe")})
    with serve(FakeEngine(), value_models=models) as client:
        assert client.get("/health").status_code == 200
        client.app.state.alignment.models["judge"].engine.die()  # type: ignore[attr-defined]
        shutdown = client.app.state.shutdown  # type: ignore[attr-defined]
        for _ in range(100):
            if shutdown.exit_code is not None:
                break
            time.sleep(0.01)
        assert shutdown.exit_code == EXIT_ENGINE_DEAD
        assert "value model" in shutdown.reason
        assert_engine_dead(client.post("/v1/chat/completions", json={"messages": MESSAGES}))
