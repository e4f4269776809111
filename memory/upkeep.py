"""Keeping each tenant's FAISS index in step with the database: load, reconcile, rebuild.

A part of ``MemoryStore`` (a mixin, kept apart so ``store.py`` holds the records and this file
the index life cycle). The database is the truth; an index is correct when it holds the vector
of every row of its tenant and nothing else (deleted rows may linger in HNSW as tombstones).

- **Open**: a saved index (``index.load_index``) is reconciled with the database id by id:
  vectors of rows it lacks are read from their BLOBs and added (a crash after a commit leaves
  exactly such rows), ids of deleted rows are removed. An index holding ids the database never
  issued belongs to another copy of the database and is rebuilt, like a missing one.
- **Growth and deletions**: a flat index that reaches ``hnsw_threshold`` records, or an HNSW
  index whose tombstones pass ``tombstone_ratio``, is rebuilt. In the background by default: a
  thread reads a snapshot of the tenant's vectors and builds the new index without any lock while
  the old one keeps serving; then, under the write lock (so no write slips between), the new
  index is reconciled with the database and takes the old one's place.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .index import IndexParams, TenantIndex, load_index, read_manifests, remove_index

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["INDEX_CHUNK", "IndexUpkeep"]

log = logging.getLogger("safework.memory.store")

SQL_VARS = 500
INDEX_CHUNK = 128
"""Vectors added to an index per hold of its lock, so searches wait at most a few ms."""


class IndexUpkeep:
    """Index life cycle of ``MemoryStore``; methods marked "write lock" expect it held."""

    # provided by MemoryStore
    index_dir: Path
    params: IndexParams
    store_id: str
    dim: int | None
    background: bool
    use_indexes: bool
    _writer: sqlite3.Connection
    _write_lock: threading.Lock
    _state_lock: threading.Lock
    _indexes: dict[str, TenantIndex]
    _rebuilding: dict[str, threading.Thread]
    _closing: bool

    def _reader(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _persist(self, tenant: str, index: TenantIndex) -> None:
        raise NotImplementedError

    # ---- open

    def _load_indexes(self) -> None:
        """Bring every tenant's index up to date with the database (write lock)."""
        tenants = self._writer.execute("SELECT name, records, generation FROM tenants").fetchall()
        live = {name for name, records, _ in tenants if records > 0}
        for tenant in read_manifests(self.index_dir):
            if tenant not in live:
                remove_index(self.index_dir, tenant)
        for name, records, generation in tenants:
            if records > 0:
                self._indexes[name] = self._open_index(name, generation)

    def _open_index(self, tenant: str, generation: int) -> TenantIndex:
        started = time.monotonic()
        expect = {"store_id": self.store_id, "dim": self.dim}
        loaded = load_index(self.index_dir, tenant, self.params, expect)
        index = None
        if loaded is not None:
            index, manifest = loaded
            changes = self._reconcile(self._writer, tenant, index)
            if changes is None:
                log.warning(
                    "memory index of tenant %r holds ids this database never issued; rebuilding",
                    tenant,
                )
                index = None
            elif changes != (0, 0) or manifest.get("generation") != generation:
                log.info(
                    "memory index of tenant %r was stale (saved at generation %s, database at "
                    "%d): added %d and removed %d vectors",
                    tenant,
                    manifest.get("generation"),
                    generation,
                    *changes,
                )
                index.note_changes(sum(changes), generation)
        if index is None:
            ids, vectors = self._db_vectors(self._writer, tenant)
            index = TenantIndex.build(ids, vectors, self.params)
            index.note_changes(index.ntotal, generation)
            log.info(
                "built the memory index of tenant %r from the database: %d vectors (%s) in %.1f s",
                tenant,
                index.ntotal,
                index.kind,
                time.monotonic() - started,
            )
        index.note_changes(0, generation)
        if index.needs_rebuild():
            self._indexes[tenant] = index
            index = self._rebuild_now(tenant)
        return index

    # ---- database reads

    def _db_ids(self, conn: sqlite3.Connection, tenant: str) -> np.ndarray:
        """Row numbers of the tenant's records, ascending (int64)."""
        rows = conn.execute("SELECT seq FROM corrections WHERE tenant = ? ORDER BY seq", (tenant,))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def _db_vectors(
        self, conn: sqlite3.Connection, tenant: str, ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), vectors (N, dim)) of the tenant's rows: all of them (one consistent
        snapshot), or those of ``ids``."""
        if ids is not None:
            found_ids, found = [], []
            for start in range(0, len(ids), SQL_VARS):
                chunk = [int(i) for i in ids[start : start + SQL_VARS]]
                rows = conn.execute(
                    "SELECT seq, embedding FROM corrections WHERE tenant = ? "
                    f"AND seq IN ({','.join('?' * len(chunk))})",
                    (tenant, *chunk),
                ).fetchall()
                found_ids += [row[0] for row in rows]
                found += [np.frombuffer(row[1], dtype="<f4") for row in rows]
            vectors = np.stack(found) if found else np.zeros((0, self.dim or 0), np.float32)
            return np.array(found_ids, dtype=np.int64), vectors
        conn.execute("BEGIN")  # the count and the rows from the same snapshot
        try:
            n = conn.execute(
                "SELECT count(*) FROM corrections WHERE tenant = ?", (tenant,)
            ).fetchone()[0]
            out_ids = np.empty(n, dtype=np.int64)
            vectors = np.empty((n, self.dim or 0), dtype=np.float32)  # (N, dim)
            rows = conn.execute(
                "SELECT seq, embedding FROM corrections WHERE tenant = ? ORDER BY seq", (tenant,)
            )
            for i, (seq, blob) in enumerate(rows):
                out_ids[i] = seq
                vectors[i] = np.frombuffer(blob, dtype="<f4")
        finally:
            conn.execute("COMMIT")
        return out_ids, vectors

    # ---- reconcile and rebuild

    def _reconcile(
        self, conn: sqlite3.Connection, tenant: str, index: TenantIndex
    ) -> tuple[int, int] | None:
        """Make ``index`` hold exactly the tenant's rows: returns (added, removed), or None when
        it holds ids the database never issued (left unchanged then)."""
        in_db = self._db_ids(conn, tenant)
        have = index.ids()
        dead = np.fromiter(index.tombstones, dtype=np.int64, count=len(index.tombstones))
        issued = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'corrections'")
        highest = (issued.fetchone() or (0,))[0]
        if (len(have) and int(have.max()) > highest) or np.intersect1d(in_db, dead).size:
            return None
        missing = np.setdiff1d(in_db, have, assume_unique=True)
        extra = np.setdiff1d(np.setdiff1d(have, dead, assume_unique=True), in_db)
        if missing.size:
            ids, vectors = self._db_vectors(conn, tenant, missing)
            for start in range(0, len(ids), INDEX_CHUNK):
                index.add(ids[start : start + INDEX_CHUNK], vectors[start : start + INDEX_CHUNK])
        index.remove(extra)
        return int(missing.size), int(extra.size)

    def _schedule_rebuild(self, tenant: str) -> None:
        """Rebuild the tenant's index: in a background thread, or now (write lock)."""
        if self.background:
            with self._state_lock:
                if tenant in self._rebuilding or self._closing:
                    return
                thread = threading.Thread(
                    target=self._rebuild_in_background,
                    args=(tenant,),
                    name="memory-index-rebuild",
                    daemon=True,
                )
                self._rebuilding[tenant] = thread
            thread.start()
        else:
            self._rebuild_now(tenant)

    def _rebuild_now(self, tenant: str) -> TenantIndex:
        """Replace the tenant's index by one built from the database (write lock)."""
        started = time.monotonic()
        old = self._indexes.get(tenant)
        ids, vectors = self._db_vectors(self._writer, tenant)
        index = TenantIndex.build(ids, vectors, self.params)
        index.note_changes(index.ntotal, old.generation if old else 0)
        self._indexes[tenant] = index
        self._log_rebuild(tenant, old, index, started)
        return index

    def _rebuild_in_background(self, tenant: str) -> None:
        started = time.monotonic()
        try:
            with self._reader() as conn:
                ids, vectors = self._db_vectors(conn, tenant)
            if self._closing:
                return
            index = TenantIndex.build(ids, vectors, self.params)  # no lock: the old one serves
            del ids, vectors
            with self._write_lock:  # close() waits for this thread before it takes the lock
                old = self._indexes.get(tenant)
                if self._reconcile(self._writer, tenant, index) is None:  # cannot happen
                    raise RuntimeError("the rebuilt index holds ids the database never issued")
                index.note_changes(index.ntotal, old.generation if old else 0)
                self._indexes[tenant] = index
            self._log_rebuild(tenant, old, index, started)
            self._persist(tenant, index)
        except Exception:
            log.exception("rebuilding the memory index of tenant %r failed", tenant)
        finally:
            with self._state_lock:
                self._rebuilding.pop(tenant, None)

    @staticmethod
    def _log_rebuild(
        tenant: str, old: TenantIndex | None, new: TenantIndex, started: float
    ) -> None:
        before = f"{old.kind}, {old.ntotal} vectors, {len(old.tombstones)} deleted" if old else "-"
        log.info(
            "rebuilt the memory index of tenant %r: (%s) -> (%s, %d vectors) in %.1f s",
            tenant,
            before,
            new.kind,
            new.ntotal,
            time.monotonic() - started,
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for background index rebuilds to finish; False if some still run at timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._state_lock:
                threads = list(self._rebuilding.values())
            if not threads:
                return True
            for thread in threads:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
            if deadline is not None and time.monotonic() >= deadline:
                with self._state_lock:
                    return not self._rebuilding

    # ---- reporting

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per tenant: records, database generation, and its index (kind, vectors, tombstones,
        ``state``: ``loaded``, ``rebuilding``, ``saved`` (current), ``stale`` or ``missing``)."""
        with self._reader() as conn:
            tenants = conn.execute(
                "SELECT name, records, generation FROM tenants ORDER BY name"
            ).fetchall()
        manifests = read_manifests(self.index_dir)
        out: dict[str, dict[str, Any]] = {}
        for name, records, generation in tenants:
            index, saved = self._indexes.get(name), manifests.get(name)
            if index is not None:
                state = "rebuilding" if name in self._rebuilding else "loaded"
                info = {"kind": index.kind, "vectors": index.ntotal}
                info["tombstones"] = len(index.tombstones)
            elif saved is not None:
                state = "saved" if saved.get("generation") == generation else "stale"
                info = {key: saved.get(key) for key in ("kind", "vectors", "tombstones")}
            else:
                state, info = "missing", {"kind": None, "vectors": 0, "tombstones": 0}
            out[name] = {
                "records": records,
                "generation": generation,
                "index": info | {"state": state},
            }
        return out
