"""Findings 12 and 13 of issue 17: the memory failing must not take answers down with it.

- A store that cannot save after the answer was generated (SQLite full or locked) is a 503
  in the OpenAI error shape; in a stream, an error event and then ``[DONE]`` (before the fix:
  a 500, or a stream cut with neither). Nothing is stored, so a retry stores exactly once.
- An index save that fails *after* the commit (``OSError``) is logged: the record is kept,
  the client gets its ``memory_id``, and a retry is never needed (before: a 500 for a record
  that was stored, which the client would store again).
- A recall that fails answers without past corrections, logged and counted.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.memory import upkeep as upkeep_module
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings

from .conftest import serve
from .fakes import BagOfWordsEncoder, FakeEngine, ScriptEngine
from .sse import sse_payloads

QUESTION = "What is the atomic number of tungsten?"
EDIT = {
    "messages": [{"role": "user", "content": QUESTION}],
    "reasoning": "Tungsten is W, and W is number 79.",
    "edited_reasoning": "Tungsten is W; 79 is gold. Tungsten's atomic number is 74.",
}


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    engine = ScriptEngine([" So the answer is 74.</think>", "74"])
    with serve(engine, memory=MemorySettings(folder=tmp_path)) as c:
        yield c


def _count(client: TestClient) -> int:
    return client.app.state.memory.store.count("default")  # type: ignore[attr-defined]


def _metric(client: TestClient, line_start: str) -> float:
    text = client.get("/metrics").text
    rows = [row for row in text.splitlines() if row.startswith(line_start)]
    return float(rows[0].rsplit(" ", 1)[1]) if rows else 0.0


def _disk_full(*_: Any, **__: Any) -> Any:
    raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize(
    "error", [sqlite3.OperationalError("database or disk is full"), OSError(errno.ENOSPC, "full")]
)
def test_a_store_failure_is_a_503_and_a_retry_stores_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    store = client.app.state.memory.store  # type: ignore[attr-defined]

    def failing(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(store, "add", failing)
    r = client.post("/cot/edit", json=EDIT)
    assert r.status_code == 503, r.text
    body = r.json()["error"]
    assert body["type"] == "server_error"
    assert body["code"] == "memory_unavailable"
    assert "Traceback" not in r.text
    assert _count(client) == 0
    assert _metric(client, 'safework_memory_failures_total{op="store"}') == 1
    monkeypatch.undo()
    retry = client.post("/cot/edit", json=EDIT)
    assert retry.status_code == 200, retry.text
    assert _count(client) == 1


def test_a_stream_whose_store_fails_ends_with_an_error_event_then_done(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.memory.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "add", _disk_full)
    r = client.post("/cot/edit", json={**EDIT, "stream": True})
    assert r.status_code == 200
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "memory_unavailable"
    assert not any("memory_id" in e for e in events if isinstance(e, dict))
    assert _count(client) == 0
    errors = 'safework_stream_errors_total{route="/cot/edit",type="server_error"}'
    assert _metric(client, errors) == 1


def test_an_index_save_failing_after_the_commit_keeps_the_answer_and_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_: Any, **__: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(upkeep_module, "save_index", no_space)
    engine = ScriptEngine([" So the answer is 74.</think>", "74"])
    with serve(engine, memory=MemorySettings(folder=tmp_path)) as client:
        client.app.state.memory.store.persist_every = 1  # type: ignore[attr-defined]
        r = client.post("/cot/edit", json=EDIT)
        assert r.status_code == 200, r.text
        memory_id = r.json()["memory_id"]
        assert _count(client) == 1
        assert client.get(f"/v1/memory/{memory_id}").status_code == 200
        monkeypatch.undo()  # the disk has room again: closing saves the index


def test_a_failing_recall_answers_without_corrections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    with serve(engine, memory=MemorySettings(folder=tmp_path)) as client:
        store = client.app.state.memory.store  # type: ignore[attr-defined]
        monkeypatch.setattr(store, "search", _disk_full)
        body = {"messages": [{"role": "user", "content": QUESTION}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == engine.reply
        assert "memory" not in (r.json().get("safework") or {})
        r = client.post("/v1/chat/completions", json={**body, "stream": True})
        assert r.status_code == 200
        assert sse_payloads(r.text)[-1] == "[DONE]"
        assert _metric(client, 'safework_memory_failures_total{op="recall"}') == 2
