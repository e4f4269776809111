"""Server replicas sharing one correction memory in PostgreSQL (``--memory-store``).

Each replica is the real app served by uvicorn on a socket (``web_server.LiveServer``, or a
process of its own: ``tests/replica.py``) on a scripted engine, with its own FAISS indexes in its
own folder and a real PostgreSQL (``tests/postgres.py``) as the shared truth. Through the HTTP
API only: a correction posted to one replica guides and is listed by the other within a second,
deletes too; tenants stay apart on every route across replicas; a replica SIGKILLed while
corrections are posted loses nothing it acknowledged; the database restarted under the replicas
is a 503 with an OpenAI error body for what needs it, chats still answer, and both recover
without a restart.

Run: ``pytest tests/test_memory_replicas.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from safework.server.memory.serving import MemorySettings

from .postgres import PostgresServer, eventually
from .web_server import (
    KEY,
    OTHER_KEY,
    LiveServer,
    WebEngine,
    fakes_installed,
    free_port,
    site_config,
)

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"Authorization": f"Bearer {KEY}"}
BOB = {"Authorization": f"Bearer {OTHER_KEY}"}
QUESTION = "What is the atomic number of tungsten?"
EDIT = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": QUESTION}],
    "reasoning": "Tungsten is W, and W is number 79.",
    "edited_reasoning": "Tungsten is W; 79 is gold. Tungsten's atomic number is 74.",
    "feedback": "79 is gold",
}


@contextmanager
def replicas(url: str, folder: Path, n: int = 2) -> Iterator[list[httpx.Client]]:
    """``n`` live replicas on the shared store ``url``; an HTTP client for each."""
    servers = []
    with fakes_installed():
        try:
            for i in range(n):
                memory = MemorySettings(folder=folder / f"replica{i}", store=url)
                config = site_config(None) | {"memory": memory}
                server = LiveServer(WebEngine(step_delay=0.0), **config)
                server.start()
                servers.append(server)
            clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
            yield clients
            for c in clients:
                c.close()
        finally:
            for server in servers:
                server.stop()


def ask(client: httpx.Client, headers: dict[str, str], question: str = QUESTION) -> Any:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": question}]}
    r = client.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def hits(client: httpx.Client, headers: dict[str, str]) -> list[str]:
    data = ask(client, headers)
    return [h["id"] for h in data.get("safework", {}).get("memory", {}).get("hits", [])]


def test_a_correction_on_one_replica_guides_the_other(postgres: PostgresServer, tmp_path: Path):
    with replicas(postgres.new_database(), tmp_path) as (a, b):
        r = a.post("/cot/edit", json=EDIT, headers=ALICE)
        assert r.status_code == 200, r.text
        memory_id = r.json()["memory_id"]
        eventually(lambda: memory_id in hits(b, ALICE))
        assert b.get(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 200
        listed = b.get("/v1/memory", headers=ALICE).json()["data"]
        assert [m["id"] for m in listed] == [memory_id]
        assert a.delete(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 200
        eventually(lambda: memory_id not in hits(b, ALICE))
        assert b.get(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 404


def test_tenants_stay_apart_across_replicas(postgres: PostgresServer, tmp_path: Path) -> None:
    with replicas(postgres.new_database(), tmp_path) as (a, b):
        memory_id = a.post("/cot/edit", json=EDIT, headers=ALICE).json()["memory_id"]
        eventually(lambda: memory_id in hits(b, ALICE))
        for r in (
            b.get(f"/v1/memory/{memory_id}", headers=BOB),
            b.delete(f"/v1/memory/{memory_id}", headers=BOB),
            a.delete(f"/v1/memory/{memory_id}", headers=BOB),
        ):
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "memory_not_found"
        assert b.get("/v1/memory", headers=BOB).json()["data"] == []
        found = b.get("/v1/memory", headers=BOB, params={"contains": "tungsten"})
        assert found.json()["data"] == []
        assert hits(b, BOB) == []
        assert b.get(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 200  # untouched


def test_a_replica_killed_while_storing_loses_nothing_acknowledged(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url, port = postgres.new_database(), free_port()
    command = [sys.executable, "-m", "tests.replica", "--port", str(port), "--store", url]
    child = subprocess.Popen([*command, "--folder", str(tmp_path / "killed")], cwd=ROOT)
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as victim:

            def up() -> bool:
                if child.poll() is not None:
                    pytest.fail(f"the replica exited with {child.returncode}")
                try:
                    return victim.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            eventually(up, timeout=60)
            for i in range(15):
                body = {**EDIT, "feedback": f"correction number {i}"}
                r = victim.post("/cot/edit", json=body, headers=ALICE)
                assert r.status_code == 200, r.text
                acknowledged.append(r.json()["memory_id"])
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    with replicas(url, tmp_path, n=1) as (survivor,):
        for memory_id in acknowledged:
            assert survivor.get(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 200
        assert len(survivor.get("/v1/memory", headers=ALICE).json()["data"]) == 15


def test_the_database_restarted_under_the_replicas(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    server = PostgresServer()  # its own (the session's stays up): this test stops it
    try:
        with replicas(server.new_database(), tmp_path) as (a, b):
            before = a.post("/cot/edit", json=EDIT, headers=ALICE).json()["memory_id"]
            eventually(lambda: before in hits(b, ALICE))
            server.stop()
            r = a.post("/cot/edit", json=EDIT, headers=ALICE)
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "memory_unavailable"
            assert error["type"] == "server_error"
            assert "nothing was stored" in error["message"]
            listed = b.get("/v1/memory", headers=ALICE)
            assert listed.status_code == 503
            assert listed.json()["error"]["code"] == "memory_unavailable"
            assert ask(b, ALICE)["choices"][0]["message"]["content"]  # chats still answer
            server.start()
            stored: list[str] = []

            def posted() -> bool:  # a client retrying after its 503
                r = a.post("/cot/edit", json=EDIT, headers=ALICE)
                if r.status_code == 200:
                    stored.append(r.json()["memory_id"])
                return bool(stored)

            eventually(posted, timeout=20)
            eventually(lambda: stored[0] in hits(b, ALICE), timeout=20)
            ids = {m["id"] for m in b.get("/v1/memory", headers=ALICE).json()["data"]}
            assert ids == {before, stored[0]}
    finally:
        server.close()
