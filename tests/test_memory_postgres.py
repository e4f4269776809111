"""The correction memory on PostgreSQL: one database shared by several stores (replicas).

Every test runs a real PostgreSQL (``tests/postgres.py``: initdb in a temporary folder, a free
port); the record-level behaviour of both databases is covered by ``test_memory_store.py``
(its ``store`` fixture runs each test on SQLite and on PostgreSQL). Here: what only a shared
database has: changes seen by the other replicas, a new replica built from the database,
schema versions, a replica killed while writing, the database restarted under a replica.

Run: ``pytest tests/test_memory_postgres.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from safework.errors import ConfigError
from safework.memory import MemoryStore
from safework.memory.db import SCHEMA_VERSION

from .postgres import PostgresServer, eventually
from .test_memory_store import HashEncoder, add

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture
def replicas(tmp_path: Path, url: str) -> Iterator[tuple[MemoryStore, MemoryStore]]:
    a = MemoryStore(tmp_path / "a", HashEncoder(), database=url)
    b = MemoryStore(tmp_path / "b", HashEncoder(), database=url)
    yield a, b
    a.close()
    b.close()


def _found(store: MemoryStore, tenant: str, question: str, record_id: str) -> bool:
    return any(h.record.id == record_id for h in store.search(tenant, question, k=5))


def test_a_change_on_one_replica_reaches_the_other_within_a_second(
    replicas: tuple[MemoryStore, MemoryStore],
) -> None:
    a, b = replicas
    first = add(a, "acme", "how do pin tumbler locks work")
    eventually(lambda: _found(b, "acme", "how do pin tumbler locks work", first.id))
    assert b.get("acme", first.id) == first
    second = add(b, "acme", "what is the boiling point of water")  # and back
    eventually(lambda: _found(a, "acme", "boiling point of water", second.id))
    assert a.delete("acme", first.id)
    eventually(lambda: not _found(b, "acme", "how do pin tumbler locks work", first.id))
    assert b.get("acme", first.id) is None
    assert b.count("acme") == a.count("acme") == 1


def test_tenants_stay_apart_across_replicas(replicas: tuple[MemoryStore, MemoryStore]) -> None:
    a, b = replicas
    theirs = add(a, "acme", "the secret recipe question")
    mine = add(b, "globex", "an unrelated question")
    eventually(lambda: _found(b, "acme", "the secret recipe question", theirs.id))
    assert b.get("globex", theirs.id) is None
    assert not b.delete("globex", theirs.id)
    assert a.get("acme", theirs.id) == theirs  # the failed delete changed nothing
    hits = b.search("globex", "the secret recipe question", k=10)
    assert [h.record.id for h in hits] == [mine.id]
    assert [r.id for r in b.list("globex")[0]] == [mine.id]
    assert not b.list("globex", contains="secret")[0]
    assert {row["id"] for row in b.export("globex")} == {mine.id}


def test_a_new_replica_builds_its_indexes_from_the_database(tmp_path: Path, url: str) -> None:
    with MemoryStore(tmp_path / "a", HashEncoder(), database=url) as a:
        records = [add(a, "acme", f"question number {i}") for i in range(25)]
        a.delete("acme", records[0].id)
    with MemoryStore(tmp_path / "fresh", HashEncoder(), database=url) as fresh:
        assert fresh.count("acme") == 24
        for i, record in enumerate(records[1:], 1):
            assert fresh.search("acme", f"question number {i}", k=1)[0].record == record
        assert fresh.stats()["acme"]["index"]["vectors"] == 24


def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path, url: str) -> None:
    MemoryStore(tmp_path, HashEncoder(), database=url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema 99"):
        MemoryStore(tmp_path, HashEncoder(), database=url)


def test_a_replica_killed_while_writing_loses_nothing_acknowledged(
    tmp_path: Path, url: str
) -> None:
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from safework.memory import MemoryStore
from tests.test_memory_store import HashEncoder, add
store = MemoryStore({str(tmp_path / "killed")!r}, HashEncoder(), database={url!r})
i = 0
while True:
    print(add(store, "acme", f"durable question {{i}}").id, flush=True)
    i += 1
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = [child.stdout.readline().strip() for _ in range(30)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with MemoryStore(tmp_path / "survivor", HashEncoder(), database=url) as s:
        assert s.count("acme") >= 30
        for i, record_id in enumerate(acknowledged):
            assert s.get("acme", record_id) is not None
            assert s.search("acme", f"durable question {i}", k=1)[0].record.id == record_id


def test_a_restarted_database_is_reconnected_to(tmp_path: Path, postgres: PostgresServer) -> None:
    server = PostgresServer()  # its own (the session's stays up): this test stops it
    try:
        url = server.new_database()
        a = MemoryStore(tmp_path / "a", HashEncoder(), database=url)
        b = MemoryStore(tmp_path / "b", HashEncoder(), database=url)
        before = add(a, "acme", "stored before the restart")
        eventually(lambda: _found(b, "acme", "stored before the restart", before.id))
        server.stop()
        started = time.monotonic()
        with pytest.raises(a.db.errors):
            add(a, "acme", "stored while the database is down")
        assert time.monotonic() - started < 5  # a call fails within the pool's timeout
        with pytest.raises(a.db.errors):
            a.get("acme", before.id)
        server.start()
        stored: list[str] = []

        def retried_add() -> bool:  # what a client does after a 503
            try:
                stored.append(add(a, "acme", "stored after the restart").id)
            except a.db.errors:
                return False
            return True

        # the same store, no reopening: its pool reconnects in the background
        eventually(retried_add, timeout=20)
        assert a.get("acme", before.id) == before
        # b's feed was cut: it resynchronises once it is back, missing no change
        eventually(lambda: _found(b, "acme", "stored after the restart", stored[0]), timeout=20)
        assert b.count("acme") == 2
        a.close()
        b.close()
    finally:
        server.close()


def test_notices_carry_rows_as_runs_up_to_a_bound() -> None:
    from safework.memory.db import Change

    small = Change("acme", "a1", added=(1, 2), removed=(7,))
    assert Change.parse(small.payload()) == small
    batch = Change("acme", "a1", added=(*range(1000, 1500), 1502))  # an import batch
    assert '"added": [[1000, 1499], 1502]' in batch.payload()
    assert Change.parse(batch.payload()) == batch
    scattered = Change("acme", "a1", added=tuple(range(0, 4000, 2)))  # no runs: too many
    assert Change.parse(scattered.payload()) == Change("acme", "a1", None, None)  # reconcile
    assert len(scattered.payload()) < 8000
    assert Change.parse("not json") is None
    assert Change.parse('{"origin": "x"}') is None
    for bad in ("[[5, 1]]", "[[1, 2, 3]]", "[[0, 10000000]]", '["x"]'):
        text = f'{{"tenant": "acme", "origin": "x", "added": {bad}, "removed": []}}'
        assert Change.parse(text) is None


def test_a_large_import_on_one_replica_reaches_the_other(
    replicas: tuple[MemoryStore, MemoryStore],
) -> None:
    """500 rows in one transaction: the notice carries them as one run, the other replica
    reads just those."""
    a, b = replicas
    add(b, "acme", "an earlier question")  # b has an index for the tenant already
    rows = [
        {"question": f"imported question {i}", "corrected_reasoning": "c", "tenant": "acme"}
        for i in range(500)
    ]
    assert a.import_records(rows) == 500
    eventually(lambda: b.count("acme") == 501 and b.stats()["acme"]["index"]["vectors"] == 501)
    hits = b.search("acme", "imported question 321", k=5, min_similarity=0.999)
    assert "imported question 321" in {h.record.question for h in hits}  # hashed words may tie


def test_a_large_import_is_followed_by_vacuum_analyze(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.memory import transfer

    def vacuumed() -> tuple[object, object]:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables "
                "WHERE relname = 'corrections'"
            ).fetchone()
        assert row is not None
        return row[0], row[1]

    monkeypatch.setattr(transfer, "SETTLE_AFTER", 20)
    store = MemoryStore(tmp_path / "a", HashEncoder(), database=url)
    try:
        rows = [
            {"question": f"q {i}", "corrected_reasoning": "c", "tenant": "acme"} for i in range(19)
        ]
        store.import_records(rows)
        assert vacuumed() == (None, None)  # a small import leaves it to autovacuum
        store.import_records({**r, "question": f"more {r['question']}"} for r in rows + rows[:1])
        last_vacuum, last_analyze = vacuumed()
        assert last_vacuum is not None
        assert last_analyze is not None
        assert store.count("acme") == 39
    finally:
        store.close()
