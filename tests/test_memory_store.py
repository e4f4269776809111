"""Tests for ``safework.memory.store``: records, paging, tenants, search, durability, transfer.

The encoder is a fake at the edge: ``HashEncoder`` hashes words into 64 signed buckets and
normalises, so texts sharing words are close and the tests run in milliseconds. One test uses
the real all-MiniLM-L6-v2 (cached by ``make test``) to check that a paraphrase ranks first.

Run: ``pytest tests/test_memory_store.py``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safework.errors import ConfigError
from safework.memory import CorrectionRecord, MemoryStore

ROOT = Path(__file__).resolve().parent.parent


class HashEncoder:
    """Hashed bag of words: each word adds +-1 to three of ``dim`` buckets; rows have norm 1."""

    name = "hashed-bag-of-words"

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                for seed in (b"a", b"b", b"c"):
                    h = zlib.crc32(seed + word.encode())
                    out[row, h % self.dim] += 1.0 if h & 1 << 20 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def add(store: MemoryStore, tenant: str, question: str, **fields: str | None) -> CorrectionRecord:
    values: dict[str, str | None] = {
        "reasoning": "the model's reasoning",
        "corrected_reasoning": "the corrected reasoning",
        "answer": None,
        "feedback": None,
        "model": "fake-model",
    }
    values.update(fields)
    return store.add(tenant, question=question, **values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    """A store on each database: SQLite in its folder, or a fresh PostgreSQL database."""
    url = request.getfixturevalue("postgres").new_database() if request.param != "sqlite" else None
    with MemoryStore(tmp_path / "mem", HashEncoder(), background=False, database=url) as s:
        yield s


def test_add_and_get(store: MemoryStore) -> None:
    rec = add(store, "acme", "How do pin tumbler locks work?", answer="springs", feedback="ok")
    assert re.fullmatch(r"mem_[0-9a-f]{24}", rec.id)
    assert store.get("acme", rec.id) == rec
    data = rec.to_json()
    assert "tenant" not in data
    assert data["question"] == "How do pin tumbler locks work?"
    assert data["answer"] == "springs"
    assert store.count("acme") == 1
    assert store.counts() == {"acme": 1}
    assert add(store, "acme", "another").id != rec.id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"question": "  "}, "question must not be empty"),
        ({"corrected_reasoning": ""}, "corrected_reasoning must not be empty"),
        ({"question": "x" * 8001}, "question is longer than 8000"),
        ({"reasoning": None}, "reasoning must be a string"),
        ({"answer": 3}, "answer must be a string"),
    ],
)
def test_add_rejects_bad_fields(store: MemoryStore, fields: dict, message: str) -> None:
    values = {"question": "q", "reasoning": "r", "corrected_reasoning": "c", "model": "m"}
    with pytest.raises(ValueError, match=message):
        store.add("acme", **{**values, **fields})
    with pytest.raises(ValueError, match="tenant"):
        store.add("", **values)
    assert store.counts() == {}


def test_ids_are_checked_before_sql(store: MemoryStore) -> None:
    rec = add(store, "acme", "q")
    for bad in ["mem_123", "mem_" + "G" * 24, "x' OR 1=1 --", rec.id + "0", rec.id.upper(), 7]:
        assert store.get("acme", bad) is None  # type: ignore[arg-type]
        assert store.delete("acme", bad) is False  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="invalid memory id"):
            store.list("acme", after=bad)  # type: ignore[arg-type]
    assert store.get("acme", "mem_" + "0" * 24) is None
    assert store.delete("acme", "mem_" + "0" * 24) is False
    assert store.get("acme", rec.id) == rec


def test_delete(store: MemoryStore) -> None:
    keep = add(store, "acme", "keep this question")
    gone = add(store, "acme", "delete this question")
    assert store.delete("acme", gone.id) is True
    assert store.delete("acme", gone.id) is False
    assert store.get("acme", gone.id) is None
    assert store.count("acme") == 1
    hits = store.search("acme", "delete this question", k=5)
    assert [h.record.id for h in hits] == [keep.id]


def test_list_pages_newest_first(store: MemoryStore) -> None:
    records = [add(store, "acme", f"question {i}") for i in range(7)]
    newest_first = [r.id for r in reversed(records)]
    page, more = store.list("acme", limit=3)
    assert [r.id for r in page] == newest_first[:3]
    assert more
    page2, more2 = store.list("acme", limit=3, after=page[-1].id)
    assert [r.id for r in page2] == newest_first[3:6]
    assert more2
    page3, more3 = store.list("acme", limit=3, after=page2[-1].id)
    assert [r.id for r in page3] == newest_first[6:]
    assert not more3
    assert store.list("acme", limit=7) == (store.list("acme", limit=100)[0], False)
    with pytest.raises(ValueError, match="limit"):
        store.list("acme", limit=0)
    with pytest.raises(ValueError, match="after: no memory"):
        store.list("acme", after="mem_" + "1" * 24)


def test_list_contains_is_case_insensitive_on_every_text_field(store: MemoryStore) -> None:
    a = add(store, "acme", "About STRASSE names")
    b = add(store, "acme", "plain", feedback="Mentions Straße here")
    c = add(store, "acme", "plain", answer="the answer is STRASSE")
    d = add(store, "acme", "plain", corrected_reasoning="lowercase strasse")
    add(store, "acme", "unrelated")
    page, more = store.list("acme", contains="straße")
    assert {r.id for r in page} == {a.id, b.id, c.id, d.id}
    assert not more
    page, more = store.list("acme", contains="STRASSE", limit=2)
    assert [r.id for r in page] == [d.id, c.id]
    assert more
    page, _ = store.list("acme", contains="strasse", after=c.id)
    assert [r.id for r in page] == [b.id, a.id]
    assert store.list("acme", contains="100%_") == ([], False)  # no LIKE wildcards


def test_tenants_never_see_each_other(store: MemoryStore) -> None:
    mine = add(store, "acme", "how do locks work")
    theirs = add(store, "globex", "how do locks work")
    assert store.get("acme", theirs.id) is None
    assert store.delete("acme", theirs.id) is False
    assert store.get("globex", theirs.id) == theirs
    assert [r.id for r in store.list("acme")[0]] == [mine.id]
    assert [h.record.id for h in store.search("acme", "how do locks work", k=10)] == [mine.id]
    assert store.search("initech", "how do locks work") == []
    assert store.count("acme") == 1
    assert store.count("initech") == 0
    assert [row["id"] for row in store.export("acme")] == [mine.id]
    missing = "mem_" + "f" * 24
    with pytest.raises(ValueError, match="after: no memory") as other:
        store.list("acme", after=theirs.id)
    with pytest.raises(ValueError, match="after: no memory") as unknown:
        store.list("acme", after=missing)
    assert str(other.value).replace(theirs.id, missing) == str(unknown.value)


def test_search_ranks_and_thresholds(store: MemoryStore) -> None:
    locks = add(store, "acme", "how do pin tumbler locks work")
    add(store, "acme", "what is the boiling point of water")
    add(store, "acme", "which locks are hardest to pick")
    hits = store.search("acme", "how do pin tumbler locks work", k=3)
    assert hits[0].record == locks
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in sims)
    strict = store.search("acme", "how do pin tumbler locks work", k=3, min_similarity=0.9)
    assert [h.record for h in strict] == [locks]
    assert store.search("acme", "how do pin tumbler locks work", k=1) == hits[:1]
    bad_values = [({"text": " "}, "empty"), ({"k": 0}, "k must"), ({"k": 101}, "k must")]
    for bad, message in [*bad_values, ({"min_similarity": 1.5}, "min_similarity")]:
        with pytest.raises(ValueError, match=message):
            store.search("acme", **{"text": "locks", **bad})  # type: ignore[arg-type]


def test_reopen_without_close_finds_everything(tmp_path: Path) -> None:
    first = MemoryStore(tmp_path, HashEncoder(), persist_every=1000)
    ids = [add(first, "acme", f"question number {i}").id for i in range(30)]
    # no close(): no index was ever saved; the database has every record
    with MemoryStore(tmp_path, HashEncoder()) as second:
        for i, record_id in enumerate(ids):
            assert second.search("acme", f"question number {i}", k=1)[0].record.id == record_id
    first._close_connections()


def test_stale_index_is_brought_up_to_date(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        old = [add(s, "acme", f"old question {i}") for i in range(10)]
    crashed = MemoryStore(tmp_path, HashEncoder(), persist_every=1000)
    new = [add(crashed, "acme", f"new question {i}") for i in range(5)]
    crashed.delete("acme", old[0].id)
    crashed._close_connections()  # as if killed: the saved index misses 5 adds and a delete
    caplog.set_level(logging.INFO, logger="safework.memory")
    with MemoryStore(tmp_path, HashEncoder()) as s:
        assert "added 5 and removed 1 vectors" in caplog.text
        assert s.search("acme", "new question 3", k=1)[0].record == new[3]
        found = {h.record.id for h in s.search("acme", "old question 0", k=20)}
        assert old[0].id not in found
        assert len(found) == 14


def test_missing_index_folder_rebuilds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        rec = add(s, "acme", "how do locks work")
        add(s, "globex", "something else")
    shutil.rmtree(tmp_path / "index")
    caplog.set_level(logging.INFO, logger="safework.memory")
    with MemoryStore(tmp_path, HashEncoder()) as s:
        assert s.search("acme", "how do locks work", k=1)[0].record == rec
    assert caplog.text.count("built the memory index of tenant") == 2
    assert len(list((tmp_path / "index").glob("*.faiss"))) == 2


def test_other_encoder_is_refused(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        add(s, "acme", "q")
    other = HashEncoder()
    other.name = "another-model"
    with pytest.raises(ConfigError, match="hashed-bag-of-words"):
        MemoryStore(tmp_path, other)
    with pytest.raises(ConfigError, match="128-d"):
        MemoryStore(tmp_path, HashEncoder(dim=32))


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path, HashEncoder())
    s.close()
    s.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        add(s, "acme", "q")
    with pytest.raises(RuntimeError, match="closed"):
        s.count("acme")


def test_concurrent_adds_and_reads(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=60) as s:
        errors: list[BaseException] = []
        added: list[CorrectionRecord] = []

        def writer(w: int) -> None:
            try:
                for i in range(25):
                    added.append(add(s, f"tenant{w % 2}", f"writer w{w} question q{i}"))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        def reader() -> None:
            try:
                for _ in range(50):
                    s.search("tenant0", "writer w0 question q1", k=3)
                    s.list("tenant1", limit=5, contains="question")
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        s.wait_idle()
        assert s.counts() == {"tenant0": 50, "tenant1": 50}
        assert len({r.id for r in added}) == 100
        for r in added:
            assert s.search(r.tenant, r.question, k=1)[0].record == r


CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from safework.memory import MemoryStore
from tests.test_memory_store import HashEncoder
store = MemoryStore(Path(sys.argv[1]), HashEncoder(), persist_every=7)
for i in range(100000):
    rec = store.add("acme", question=f"durable question {i}", reasoning="r",
                    corrected_reasoning="c", answer=None, feedback=None, model="m")
    print(rec.id, flush=True)
"""


def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(ROOT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = [child.stdout.readline().strip() for _ in range(40)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with MemoryStore(tmp_path, HashEncoder()) as s:
        assert s.count("acme") >= 40
        for i, record_id in enumerate(acknowledged):
            assert s.get("acme", record_id) is not None
            assert s.search("acme", f"durable question {i}", k=1)[0].record.id == record_id


def test_export_import_round_trip(store: MemoryStore, tmp_path: Path) -> None:
    a = add(store, "acme", "how do locks work", answer="pins", feedback="good")
    b = add(store, "globex", "boiling point of water")
    rows = list(store.export())
    assert [(r["id"], r["tenant"]) for r in rows] == [(a.id, "acme"), (b.id, "globex")]
    with MemoryStore(tmp_path / "copy", HashEncoder()) as copy:
        assert copy.import_records(rows) == 2
        assert copy.get("acme", a.id) == a
        assert copy.get("globex", b.id) == b
        assert copy.search("acme", "how do locks work", k=1)[0].record == a
        assert copy.import_records(rows) == 0  # the same rows again: skipped
    assert store.import_records(rows, tenant="initech") == 2  # ids taken: new ids
    moved = store.list("initech")[0]
    assert {r.question for r in moved} == {a.question, b.question}
    assert not {r.id for r in moved} & {a.id, b.id}
    assert store.get("acme", a.id) == a
    assert store.counts() == {"acme": 1, "globex": 1, "initech": 2}


def test_import_embeds_rows_without_vectors_and_names_bad_rows(store: MemoryStore) -> None:
    rows = [
        {"question": "how do locks work", "corrected_reasoning": "c", "tenant": "acme"},
        {"question": "x", "corrected_reasoning": "c", "tenant": "acme", "created_at": 5},
        {"question": "y", "corrected_reasoning": "c", "embedding": "AAAA", "tenant": "acme"},
    ]
    rows[2]["embedding_model"] = "some-other-model"  # ignored: the row is embedded again
    assert store.import_records(rows) == 3
    assert store.search("acme", "how do locks work", k=1)[0].similarity == pytest.approx(1.0)
    assert store.list("acme", limit=3)[0][-1].created_at == 5.0
    bad = [{"question": "ok", "corrected_reasoning": "c", "tenant": "acme"}] * 2
    bad.append({"question": "", "corrected_reasoning": "c", "tenant": "acme"})
    with pytest.raises(ValueError, match="row 3: question must not be empty"):
        store.import_records(bad)
    with pytest.raises(ValueError, match="row 1: tenant"):
        store.import_records([{"question": "q", "corrected_reasoning": "c"}])
    with pytest.raises(ValueError, match="row 1: invalid memory id"):
        store.import_records([{"id": "nope", "question": "q", "corrected_reasoning": "c"}], "t")


def test_real_embedder_ranks_a_paraphrase_first(tmp_path: Path) -> None:
    from safework.engine.embedder import get_embedder

    with MemoryStore(tmp_path, get_embedder()) as s:
        target = add(s, "acme", "How can I tell if my smoke detector battery is dying?")
        for q in [
            "What is the capital of Australia?",
            "How do I bake sourdough bread at home?",
            "Explain how vaccines train the immune system.",
        ]:
            add(s, "acme", q)
        hits = s.search("acme", "signs that a smoke alarm needs a new battery", k=4)
    assert hits[0].record == target
    assert hits[0].similarity > 0.5 > hits[1].similarity


def test_preferences_are_listed_apart_and_never_search_hits(store: MemoryStore) -> None:
    from safework.memory.records import MAX_PREFERENCES, PreferenceLimitError

    correction = add(store, "acme", "answer in metric units please")
    pref = add(
        store, "acme", "answer in metric units", feedback="Use metric units.", kind="preference"
    )
    assert pref.kind == "preference"
    assert pref.text == "Use metric units."
    assert store.get("acme", pref.id) == pref
    assert store.preferences("acme") == [pref]
    assert store.preferences("globex") == []
    hits = store.search("acme", "answer in metric units", k=5)
    assert [h.record.id for h in hits] == [correction.id]
    assert [r.id for r in store.list("acme", kind="preference")[0]] == [pref.id]
    assert [r.id for r in store.list("acme", kind="correction")[0]] == [correction.id]
    with pytest.raises(ValueError, match="kind must be one of"):
        store.list("acme", kind="other")
    with pytest.raises(ValueError, match="kind must be one of"):
        add(store, "acme", "q", kind="rule")
    with pytest.raises(ValueError, match="at most 1000"):
        add(store, "acme", "q", feedback="x" * 1001, kind="preference")
    for i in range(MAX_PREFERENCES - 1):
        add(store, "acme", f"preference {i}", kind="preference")
    with pytest.raises(PreferenceLimitError):
        add(store, "acme", "one too many", kind="preference")
    assert len(store.preferences("acme")) == MAX_PREFERENCES
    add(store, "globex", "their own", kind="preference")  # the limit is per tenant
    assert store.delete("acme", pref.id)
    assert pref.id not in {r.id for r in store.preferences("acme")}
    rows = [r for r in store.export("acme") if r["kind"] == "preference"]
    assert len(rows) == MAX_PREFERENCES - 1


def test_a_search_reads_only_the_records_it_returns_unless_preferences_are_nearer(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is asked for k + MAX_PREFERENCES neighbours (it holds preferences too), but
    records are read best first: k of them, and more only to replace preferences."""
    corrections = [add(store, "acme", f"metric units question {i}") for i in range(6)]
    reads: list[list[int]] = []
    real = store._records_by_seq

    def counted(tenant: str, seqs: list[int]) -> dict[int, Any]:
        reads.append(seqs)
        return real(tenant, seqs)

    monkeypatch.setattr(store, "_records_by_seq", counted)
    hits = store.search("acme", "metric units question 1", k=2)
    assert [len(r) for r in reads] == [2]  # one read, of the two records returned
    assert hits[0].record == corrections[1]
    for i in range(3):  # nearer to the query than any correction
        add(store, "acme", "metric units question 1", feedback=f"rule {i}", kind="preference")
    reads.clear()
    hits = store.search("acme", "metric units question 1", k=2)
    assert [h.record.kind for h in hits] == ["correction", "correction"]
    assert hits[0].record == corrections[1]
    assert sum(len(r) for r in reads) <= 2 + 3  # at most the three preferences more
    assert len(reads) >= 2


def test_a_store_of_the_first_schema_is_migrated(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before records had a kind: opened, migrated, its rows corrections."""
    from safework.memory import db as memory_db

    for engine in ("sqlite", "postgresql"):
        url = request.getfixturevalue("postgres").new_database() if engine != "sqlite" else None
        with monkeypatch.context() as old:
            old.setattr(memory_db, "SCHEMA_VERSION", 1)
            (tmp_path / engine).mkdir()
            database = memory_db.open_database(tmp_path / engine, url)
            database.migrate()
            with database.transaction() as conn:
                meta = {"dim": "128", "encoder": HashEncoder.name, "store_id": "old"}
                database.set_meta(conn, meta)
                conn.execute("INSERT INTO tenants (name, records) VALUES ('acme', 1)")
                columns = "id, tenant, question, reasoning, corrected_reasoning, model, created_at"
                blob = HashEncoder().encode(["an old question"])[0].astype("<f4").tobytes()
                extra = ", folded" if database.stores_folded else ""
                marks = ", ?" if database.stores_folded else ""
                conn.execute(
                    f"INSERT INTO corrections ({columns}, embedding{extra}) "
                    f"VALUES (?, 'acme', 'an old question', 'r', 'c', 'm', 1.0, ?{marks})",
                    ("mem_" + "a" * 24, blob, *(("an old question",) if marks else ())),
                )
            database.close()
        with MemoryStore(tmp_path / engine, HashEncoder(), database=url) as s:
            old_record = s.get("acme", "mem_" + "a" * 24)
            assert old_record is not None
            assert old_record.kind == "correction"
            assert s.search("acme", "an old question", k=1)[0].record == old_record
            assert add(s, "acme", "new", kind="preference").kind == "preference"
