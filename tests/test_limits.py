"""Issue 17, finding 10: what one request or one key may make the server do.

- per-key concurrency: the request past ``max_concurrent_per_key`` is a 429 with
  ``Retry-After`` while another key is still served; the slot comes back when a stream ends and
  when its client disconnects;
- the correction memory's per-tenant quota (records, bytes) refuses before anything is
  generated and leaves the store as it was; stored fields have sizes checked up front;
- ``/v1/completions`` prompts × n, the server-wide ``max_tokens`` cap (strategies' sub-requests
  included), and ``ignore_eos`` only with ``--allow-ignore-eos``.

Concurrent requests are driven as raw ASGI calls (as in ``test_disconnect.py``) so that the
test decides when each client goes away; the rest uses Starlette's ``TestClient``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from safework.errors import ConfigError
from safework.server import ServerConfig, create_app
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.value_models import registry

from .conftest import serve
from .fakes import BagOfWordsEncoder, FakeEngine, ScriptEngine, StepEngine
from .sse import sse_payloads

ALICE_KEY, BOB_KEY = "sk-alice-0001", "sk-bob-000002"
KEYS = {ALICE_KEY: "alice", BOB_KEY: "bob"}
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"messages": MESSAGES}
QUESTION = "What is the atomic number of tungsten?"
EDIT = {
    "messages": [{"role": "user", "content": QUESTION}],
    "reasoning": "Tungsten is W, and W is number 79.",
    "edited_reasoning": "Tungsten is W; 79 is gold. Tungsten's atomic number is 74.",
    "answer": "79",
}


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)
    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")


# --------------------------------------------------------------------------- raw ASGI calls


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        return json.loads(self.body)["error"]


async def call(
    app: FastAPI, path: str, body: dict[str, Any], key: str, leave: asyncio.Event | None = None
) -> Reply:
    """One POST as a server would deliver it; the client disconnects when ``leave`` is set
    (never, without one)."""
    raw = json.dumps(body).encode()
    delivered = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await (leave or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_bytes = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body_bytes)


async def until(condition: Any) -> None:
    """Wait for ``condition()`` to hold, polling the event loop (5 s at most)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def slow_engine() -> FakeEngine:
    return FakeEngine(" ".join(["word"] * 300), step_delay=0.01, max_model_len=4096)


# --------------------------------------------------------------------------- concurrency


async def test_the_request_past_the_limit_is_429_with_retry_after_and_others_go_on() -> None:
    app = create_app(
        ServerConfig(api_keys=KEYS, max_concurrent_per_key=2, memory=None),
        engine_factory=lambda _: slow_engine(),
    )
    active = app.state.limiter.active
    async with app.router.lifespan_context(app):
        leave = asyncio.Event()
        stream = {**CHAT, "stream": True}
        streams = [asyncio.create_task(call(app, "/v1/chat/completions", stream, ALICE_KEY, leave))]
        streams.append(asyncio.create_task(call(app, "/v1/chat/completions", stream, ALICE_KEY)))
        await until(lambda: active["alice"] == 2)

        refused = await call(app, "/v1/chat/completions", CHAT, ALICE_KEY)
        assert refused.status == 429
        assert refused.headers["retry-after"] == "1"
        error = refused.error()
        assert error["type"] == "requests"
        assert error["code"] == "rate_limit_exceeded"
        assert set(error) == {"message", "type", "param", "code"}
        other = await call(app, "/v1/chat/completions", {**CHAT, "max_tokens": 4}, BOB_KEY)
        assert other.status == 200, other.body

        leave.set()  # the first client disconnects: its slot comes back at once
        assert b"[DONE]" not in (await streams[0]).body
        await until(lambda: active["alice"] == 1)
        again = await call(app, "/v1/chat/completions", {**CHAT, "max_tokens": 4}, ALICE_KEY)
        assert again.status == 200, again.body
        streams[1].cancel()
        await asyncio.gather(streams[1], return_exceptions=True)
    assert not active  # every slot released, the cancelled one included


async def test_a_slot_comes_back_when_a_stream_ends_and_after_errors() -> None:
    app = create_app(
        ServerConfig(api_keys=KEYS, max_concurrent_per_key=1, memory=None),
        engine_factory=lambda _: FakeEngine(),
    )
    async with app.router.lifespan_context(app):
        for _ in range(3):  # one at a time: each needs the slot the last one gave back
            r = await call(app, "/v1/chat/completions", {**CHAT, "stream": True}, ALICE_KEY)
            assert r.status == 200
            assert r.body.rstrip().endswith(b"data: [DONE]")
        bad = await call(app, "/v1/chat/completions", {"messages": []}, ALICE_KEY)
        assert bad.status == 400
        missing = await call(app, "/v1/chat/completions", {**CHAT, "model": "nope"}, ALICE_KEY)
        assert missing.status == 404
        assert (await call(app, "/v1/chat/completions", CHAT, ALICE_KEY)).status == 200
        assert not app.state.limiter.active


def test_health_metrics_and_the_page_are_never_limited() -> None:
    with serve(api_keys=KEYS, max_concurrent_per_key=1) as client:
        client.app.state.limiter.active["alice"] = 1  # type: ignore[attr-defined]
        assert client.get("/health").status_code == 200
        assert client.get("/metrics", headers=ALICE).status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/v1/models", headers=ALICE).status_code == 429
        assert client.get("/v1/models", headers=BOB).status_code == 200


def test_zero_means_no_concurrency_limit() -> None:
    with serve(max_concurrent_per_key=0) as client:
        client.app.state.limiter.active["default"] = 10_000  # type: ignore[attr-defined]
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


# --------------------------------------------------------------------------- memory quota


@pytest.fixture
def memory_client(tmp_path: Path) -> Iterator[TestClient]:
    engine = ScriptEngine([" So the answer is 74.</think>", "74"])
    memory = MemorySettings(folder=tmp_path, max_records=1)
    with serve(engine, api_keys=KEYS, memory=memory) as client:
        yield client


def _stored(client: TestClient, headers: dict[str, str] = ALICE) -> list[str]:
    return [r["id"] for r in client.get("/v1/memory", headers=headers).json()["data"]]


def _engine_calls(client: TestClient) -> int:
    return len(client.app.state.engine.requests)  # type: ignore[attr-defined]


@pytest.mark.parametrize("stream", [False, True])
def test_a_full_memory_refuses_before_generating_and_changes_nothing(
    memory_client: TestClient, stream: bool
) -> None:
    first = memory_client.post("/cot/edit", json=EDIT, headers=ALICE)
    assert first.status_code == 200, first.text
    kept, calls = _stored(memory_client), _engine_calls(memory_client)

    r = memory_client.post("/cot/edit", json={**EDIT, "stream": stream}, headers=ALICE)
    assert r.status_code == 429, r.text
    assert r.headers["x-should-retry"] == "false"  # the OpenAI SDKs do not retry it
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "insufficient_quota",
        "memory_quota_exceeded",
        "remember",
    )
    assert "1 of 1 records" in error["message"]
    assert _engine_calls(memory_client) == calls  # nothing was generated
    assert _stored(memory_client) == kept  # nothing was stored
    # Another tenant has its own quota; remember=false needs none; deleting frees room.
    assert memory_client.post("/cot/edit", json=EDIT, headers=BOB).status_code == 200
    plain = memory_client.post("/cot/edit", json={**EDIT, "remember": False}, headers=ALICE)
    assert plain.status_code == 200
    assert memory_client.delete(f"/v1/memory/{kept[0]}", headers=ALICE).status_code == 200
    assert memory_client.post("/cot/edit", json=EDIT, headers=ALICE).status_code == 200


def test_the_bytes_quota_counts_what_the_request_brings(tmp_path: Path) -> None:
    engine = ScriptEngine([" So the answer is 74.</think>", "74"])
    memory = MemorySettings(folder=tmp_path, max_bytes=1500)
    with serve(engine, api_keys=KEYS, memory=memory) as client:
        big = {**EDIT, "feedback": "é" * 800}  # 1,600 bytes of feedback alone
        r = client.post("/cot/edit", json=big, headers=ALICE)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "memory_quota_exceeded"
        assert engine.requests == []
        assert _stored(client) == []
        assert client.post("/cot/edit", json=EDIT, headers=ALICE).status_code == 200
        quota = client.app.state.memory.quota  # type: ignore[attr-defined]
        record = client.get("/v1/memory", headers=ALICE).json()["data"][0]
        fields = ("question", "reasoning", "corrected_reasoning", "answer", "feedback", "model")
        size = sum(len((record[f] or "").encode()) for f in fields)
        assert (quota.usage("alice").records, quota.usage("alice").bytes) == (1, size)
        assert not quota.pending  # the reservation became the record
        deleted = client.delete(f"/v1/memory/{record['id']}", headers=ALICE)
        assert deleted.status_code == 200
        assert (quota.usage("alice").records, quota.usage("alice").bytes) == (0, 0)


def test_quota_usage_is_read_back_at_startup(tmp_path: Path) -> None:
    memory = MemorySettings(folder=tmp_path, max_records=1)
    engine = ScriptEngine([" So the answer is 74.</think>", "74"])
    with serve(engine, api_keys=KEYS, memory=memory) as client:
        assert client.post("/cot/edit", json=EDIT, headers=ALICE).status_code == 200
    with serve(engine, api_keys=KEYS, memory=memory) as client:  # a restart
        r = client.post("/cot/edit", json=EDIT, headers=ALICE)
        assert r.status_code == 429
        assert client.app.state.memory.quota.usage("alice").records == 1  # type: ignore[attr-defined]


def test_a_refused_or_failed_edit_gives_its_reservation_back(memory_client: TestClient) -> None:
    quota = memory_client.app.state.memory.quota  # type: ignore[attr-defined]
    r = memory_client.post("/cot/edit", json={**EDIT, "ignore_eos": True}, headers=ALICE)
    assert r.status_code == 400
    assert not quota.pending
    r = memory_client.post("/cot/edit", json={**EDIT, "max_tokens": 10**6}, headers=ALICE)
    assert r.status_code == 400
    assert not quota.pending
    assert memory_client.post("/cot/edit", json=EDIT, headers=ALICE).status_code == 200


async def test_a_stream_that_disconnects_gives_its_reservation_back(tmp_path: Path) -> None:
    config = ServerConfig(api_keys=KEYS, memory=MemorySettings(folder=tmp_path, max_records=1))
    app = create_app(config, engine_factory=lambda _: slow_engine())
    async with app.router.lifespan_context(app):
        quota = app.state.memory.quota
        leave = asyncio.Event()
        body = {**EDIT, "stream": True}
        task = asyncio.create_task(call(app, "/cot/edit", body, ALICE_KEY, leave))
        await until(lambda: quota.pending.get("alice") is not None)
        blocked = await call(app, "/cot/edit", EDIT, ALICE_KEY)  # the one record is reserved
        assert blocked.status == 429
        leave.set()
        await task
        await until(lambda: not quota.pending)
        assert app.state.memory.store.count("alice") == 0
        assert not app.state.limiter.active


@pytest.mark.parametrize(
    ("field", "value"),
    [("answer", "x" * 16_001), ("feedback", "x" * 2_001), ("reasoning", "x" * 32_001)],
)
def test_stored_fields_have_sizes_checked_before_generating(
    memory_client: TestClient, field: str, value: str
) -> None:
    r = memory_client.post("/cot/edit", json={**EDIT, field: value}, headers=ALICE)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == field
    assert _engine_calls(memory_client) == 0


def test_a_question_too_long_to_store_is_refused_unless_not_remembered(
    memory_client: TestClient,
) -> None:
    long = {**EDIT, "messages": [{"role": "user", "content": "why " * 2001}]}
    r = memory_client.post("/cot/edit", json=long, headers=ALICE)
    assert r.status_code == 400
    assert "remember=false" in r.json()["error"]["message"]
    assert _engine_calls(memory_client) == 0
    r = memory_client.post("/cot/edit", json={**long, "remember": False}, headers=ALICE)
    assert r.status_code == 200


# --------------------------------------------------------------------------- amplification


def test_completions_prompts_times_n_is_capped() -> None:
    engine = FakeEngine()
    with serve(engine, max_n=4, max_prompts_times_n=4) as client:
        r = client.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 2})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["param"] == "prompt"
        assert "3 prompts × n=2" in error["message"]
        assert engine.requests == []
        ok = client.post("/v1/completions", json={"prompt": ["a", "b"], "n": 2})
        assert ok.status_code == 200
        assert len(ok.json()["choices"]) == 4


def test_max_prompts_times_n_below_max_n_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--max-prompts-times-n"):
        ServerConfig(max_n=16, max_prompts_times_n=8)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {**CHAT, "max_tokens": 9}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_completion_tokens": 9}, "max_completion_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 9}, "max_tokens"),
        ("/cot/edit", {**EDIT, "remember": False, "max_tokens": 9}, "max_tokens"),
    ],
)
def test_asking_past_the_max_tokens_cap_is_a_400(path: str, body: dict, param: str) -> None:
    engine = FakeEngine()
    with serve(engine, max_tokens_cap=8) as client:
        r = client.post(path, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
        assert engine.requests == []
        r = client.post(path, json={**body, param: 8})
        assert r.status_code == 200, r.text


def test_a_request_asking_nothing_gets_at_most_the_cap() -> None:
    engine = FakeEngine(" ".join(["word"] * 50))
    with serve(engine, max_tokens_cap=8) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200
        assert r.json()["usage"]["completion_tokens"] <= 8
        assert client.post("/v1/completions", json={"prompt": "hi"}).status_code == 200
    assert [s.max_tokens for _, s in engine.requests] == [8, 8]


def test_the_cap_bounds_every_sub_request_of_a_strategy() -> None:
    from .test_alignment_server import SCRIPT, value_models

    engine = StepEngine(SCRIPT)
    with serve(engine, value_models=value_models(), max_tokens_cap=8) as client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "fake-model:aligned"})
        assert r.status_code == 200, r.text
    assert engine.requests
    assert all(s.max_tokens <= 8 for _, s in engine.requests)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
        ("/v1/completions", {"prompt": "hi"}),
        ("/cot/edit", {**EDIT, "remember": False}),
    ],
)
def test_ignore_eos_needs_the_operators_flag(path: str, body: dict) -> None:
    engine = FakeEngine()
    with serve(engine) as client:
        r = client.post(path, json={**body, "ignore_eos": True})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "ignore_eos"
        assert "--allow-ignore-eos" in r.json()["error"]["message"]
        assert engine.requests == []
        assert client.post(path, json={**body, "ignore_eos": False}).status_code == 200
    with serve(engine, allow_ignore_eos=True) as client:
        r = client.post(path, json={**body, "ignore_eos": True})
        assert r.status_code == 200, r.text
        if body.get("stream"):
            assert sse_payloads(r.text)[-1] == "[DONE]"
    assert engine.requests[-1][1].ignore_eos is True


def test_serve_flags_reach_the_config() -> None:
    from safework.cli import build_parser
    from safework.server.cli import config_from_args

    argv = ["serve", "--api-key", f"{ALICE_KEY}:alice"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.max_concurrent_per_key, config.max_prompts_times_n) == (16, 64)
    assert (config.max_tokens_cap, config.allow_ignore_eos) == (None, False)
    assert config.memory is not None
    assert (config.memory.max_records, config.memory.max_bytes) == (10_000, 64 * 2**20)
    argv += [
        "--max-concurrent-per-key", "4", "--max-prompts-times-n", "32",
        "--max-tokens-cap", "2048", "--allow-ignore-eos",
        "--memory-max-records", "100", "--memory-max-bytes", "1000000",
    ]  # fmt: skip
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.max_concurrent_per_key, config.max_prompts_times_n) == (4, 32)
    assert (config.max_tokens_cap, config.allow_ignore_eos) == (2048, True)
    assert config.memory is not None
    assert (config.memory.max_records, config.memory.max_bytes) == (100, 1_000_000)
