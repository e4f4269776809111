"""Tests for ``safework.memory.index`` and the index life cycle in ``safework.memory.upkeep``:
flat and HNSW search, tombstones, the flat -> HNSW switch, files, reconciliation, rebuilds.

Vectors are random unit rows (seeded); HNSW on a few hundred of them with the default efSearch
finds the exact neighbours, which the tests compare against brute force.

Run: ``pytest tests/test_memory_index.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from safework.memory import IndexParams, MemoryStore, TenantIndex
from safework.memory.index import FLAT, HNSW, index_paths, load_index, safe_name, save_index

from .test_memory_store import HashEncoder, add


def unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(vectors @ query))[:k]].tolist()


def test_flat_index_is_exact_and_removes() -> None:
    vectors, ids = unit_rows(50), np.arange(100, 150)
    index = TenantIndex.build(ids, vectors, IndexParams(hnsw_threshold=1000))
    assert index.kind == FLAT
    scores, found = index.search(vectors[:3], 5)
    for q in range(3):
        assert found[q].tolist() == exact_top(vectors, ids, vectors[q], 5)
    assert scores[0][0] == pytest.approx(1.0)
    assert index.has(np.array([100, 149, 99, 150])).tolist() == [True, True, False, False]
    assert index.remove([100, 101]) == 2
    assert index.has(np.array([100, 102])).tolist() == [False, True]
    assert index.ntotal == 48
    assert not index.tombstones
    _, found = index.search(vectors[:1], 1)
    assert found[0][0] != 100
    assert index.search(vectors[:1], 100)[1].shape == (1, 48)


def test_hnsw_index_tombstones_and_rebuild_signal() -> None:
    vectors, ids = unit_rows(400), np.arange(1, 401)
    params = IndexParams(hnsw_threshold=100, hnsw_m=16, ef_search=64)
    index = TenantIndex.build(ids, vectors, params)
    assert index.kind == HNSW
    queries = unit_rows(20, seed=1)
    _, found = index.search(queries, 10)
    for q in range(20):
        assert found[q].tolist() == exact_top(vectors, ids, queries[q], 10)
    nearest = [int(found[q][0]) for q in range(20)]
    assert index.remove(nearest) == len(set(nearest))
    assert index.remove(nearest) == 0  # already tombstoned
    assert index.has(np.array([nearest[0], 0])).tolist() == [True, False]  # tombstones too
    assert index.ntotal == 400
    assert index.live == 400 - len(set(nearest))
    _, after = index.search(queries, 10)
    for q in range(20):
        assert not set(after[q].tolist()) & set(nearest)
        assert (after[q] >= 0).all()  # still 10 live neighbours
    assert not index.needs_rebuild()
    index.remove(list(range(100, 140)))
    assert index.needs_rebuild()  # > 10% tombstones


def test_index_files_round_trip_and_refuse_foreign(tmp_path: Path) -> None:
    vectors, ids = unit_rows(30), np.arange(1, 31)
    params = IndexParams(hnsw_threshold=10)
    index = TenantIndex.build(ids, vectors, params)
    index.note_changes(30, generation=7)
    save_index(tmp_path, "acme/../x", index, {"store_id": "s1"})
    index_file, manifest_file = index_paths(tmp_path, "acme/../x")
    assert index_file.parent == tmp_path
    assert "/" not in safe_name("acme/../x")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["kind"] == HNSW
    assert manifest["vectors"] == 30
    assert manifest["max_id"] == 30
    assert manifest["generation"] == 7
    assert manifest["tenant"] == "acme/../x"
    loaded = load_index(tmp_path, "acme/../x", params, {"store_id": "s1", "dim": 32})
    assert loaded is not None
    again, _ = loaded
    assert again.kind == HNSW
    assert again.ntotal == 30
    assert again.generation == 7
    assert sorted(again.ids().tolist()) == list(range(1, 31))
    assert load_index(tmp_path, "acme/../x", params, {"store_id": "s2", "dim": 32}) is None
    assert load_index(tmp_path, "other", params, {"store_id": "s1", "dim": 32}) is None
    manifest["vectors"] = 29  # a torn save: new index, old manifest
    manifest_file.write_text(json.dumps(manifest))
    assert load_index(tmp_path, "acme/../x", params, {"store_id": "s1", "dim": 32}) is None
    assert safe_name("a b") != safe_name("a_b")


def test_store_switches_to_hnsw_and_stays_exact(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=40) as s:
        records = [add(s, "acme", f"topic t{i % 9} detail d{i}") for i in range(60)]
        s.wait_idle()
        assert s.stats()["acme"]["index"]["kind"] == HNSW
        assert add(s, "globex", "small tenant").id  # another tenant stays flat
        assert s.stats()["globex"]["index"]["kind"] == FLAT
        vectors = HashEncoder().encode([r.question for r in records])
        for q in ["topic t3 detail d12", "topic t5", "detail d59"]:
            sims = vectors @ HashEncoder().encode([q])[0]
            best = {records[i].id for i in np.flatnonzero(np.isclose(sims, sims.max(), atol=1e-5))}
            hits = s.search("acme", q, k=5)
            assert [h.similarity for h in hits] == pytest.approx(sorted(sims)[::-1][:5], abs=1e-5)
            assert hits[0].record.id in best  # one of the closest (hashed words tie often)
        gone = records[12]
        assert s.delete("acme", gone.id)
        assert s.stats()["acme"]["index"]["tombstones"] == 1
        assert gone.id not in {h.record.id for h in s.search("acme", gone.question, k=10)}


def test_many_deletions_rebuild_the_hnsw_index(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=30, background=False) as s:
        records = [add(s, "acme", f"question q{i}") for i in range(50)]
        for r in records[:6]:
            s.delete("acme", r.id)
        index = s.stats()["acme"]["index"]
        assert index["kind"] == HNSW
        assert index["tombstones"] == 0
        assert index["vectors"] == 44
        for r in records[6:]:
            assert s.search("acme", r.question, k=1)[0].record == r
        for r in records[6:30]:  # 20 live -> below the threshold: flat again at the rebuild
            s.delete("acme", r.id)
        assert s.stats()["acme"]["index"]["kind"] == FLAT


def test_reopen_restores_tombstones_from_the_database(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=30, background=False) as s:
        records = [add(s, "acme", f"question q{i}") for i in range(40)]
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=30, persist_every=1000) as s:
        s.delete("acme", records[0].id)  # the saved index still holds it
    with MemoryStore(tmp_path, HashEncoder(), hnsw_threshold=30) as s:
        assert s.stats()["acme"]["index"]["tombstones"] in (0, 1)
        hits = s.search("acme", records[0].question, k=40)
        assert records[0].id not in {h.record.id for h in hits}
        assert len(hits) == 39


def test_restored_database_backup_rebuilds_newer_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        add(s, "acme", "before the backup")
    shutil.copy(tmp_path / "memory.sqlite3", tmp_path / "backup.sqlite3")
    with MemoryStore(tmp_path, HashEncoder()) as s:
        later = add(s, "acme", "after the backup")
    shutil.copy(tmp_path / "backup.sqlite3", tmp_path / "memory.sqlite3")
    caplog.set_level(logging.INFO, logger="safework.memory")
    with MemoryStore(tmp_path, HashEncoder()) as s:
        assert "never issued" in caplog.text
        reused = add(s, "acme", "a new record")
        found = {h.record.id for h in s.search("acme", "after", k=5, min_similarity=-1)}
        assert later.id not in found
        assert reused.id in found
        assert len(found) == 2


def test_index_files_of_vanished_tenants_are_removed(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        gone = add(s, "gone", "q")
        add(s, "kept", "q")
    assert len(list((tmp_path / "index").glob("*.faiss"))) == 2
    with MemoryStore(tmp_path, HashEncoder()) as s:
        s.delete("gone", gone.id)
    with MemoryStore(tmp_path, HashEncoder()) as s:
        assert s.stats()["gone"]["index"]["state"] == "missing"
    assert [p.name for p in (tmp_path / "index").glob("*.faiss")] == [
        index_paths(tmp_path, "kept")[0].name
    ]
