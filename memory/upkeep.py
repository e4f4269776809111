"""Keeping each tenant's FAISS index in step with the database: load, reconcile, rebuild, save.

``IndexUpkeep`` is a collaborator of ``MemoryStore`` (``store.upkeep``): it owns the tenants'
indexes, their background rebuilds and their files, and reads the database through the
connections the store hands it. The database is the truth; an index is correct when it holds the
vector of every row of its tenant and nothing else (deleted rows may linger in HNSW as
tombstones).

- **Open**: a saved index (``index.load_index``) is reconciled with the database id by id:
  vectors of rows it lacks are read from their BLOBs and added (a crash after a commit leaves
  exactly such rows), ids of deleted rows are removed. An index holding ids the database never
  issued belongs to another copy of the database and is rebuilt, like a missing one.
- **Growth and deletions**: a flat index that reaches ``hnsw_threshold`` records, or an HNSW
  index whose tombstones pass ``tombstone_ratio``, is rebuilt. In the background by default: a
  thread reads a snapshot of the tenant's vectors and builds the new index without any lock while
  the old one keeps serving; then, under the write lock (so no write slips between), the new
  index is reconciled with the database and takes the old one's place.
- **Saving**: after ``persist_every`` changes (and at least a tenth of the index), and at close.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .db import Change
from .index import (
    IndexParams,
    TenantIndex,
    index_paths,
    load_index,
    read_manifests,
    remove_index,
    save_index,
)

__all__ = ["INDEX_CHUNK", "IndexUpkeep"]

log = logging.getLogger("safework.memory.store")

SQL_VARS = 500
INDEX_CHUNK = 128
"""Vectors added to an index per hold of its lock, so searches wait at most a few ms."""

Reader = Callable[[], contextlib.AbstractContextManager[Any]]


class IndexUpkeep:
    """The tenants' indexes of one store; methods marked "write lock" expect it held."""

    def __init__(
        self,
        reader: Reader,
        snapshot: Reader,
        highest_seq: Callable[[Any], int],
        write_lock: threading.Lock,
        index_dir: Path,
        params: IndexParams,
        *,
        store_id: str,
        dim: int | None,
        persist_every: int,
        enabled: bool = True,
        background: bool = True,
        column: str = "embedding",
    ) -> None:
        """``reader()``: a read connection; ``snapshot()``: one whose statements see one
        snapshot; ``highest_seq(conn)``: the highest row number the database ever issued;
        ``write_lock``: the store's lock over its writes (held while an index follows them).
        ``enabled=False``: no index is loaded, built or
        written (the store searches nothing). ``background=False`` rebuilds inside the call
        that triggers it (tests). ``column``: the vectors indexed, ``embedding`` (the question's,
        every row has one) or ``mistake`` (the mistake key, ``mistakes.py``: only corrections
        that replaced a step have one; the others are simply not in the index)."""
        self.column = column
        self.sparse = column != "embedding"
        self._has = f" AND length({column}) > 0" if self.sparse else ""
        self.label = "memory index" if column == "embedding" else f"{column} index"
        self._reader = reader
        self._snapshot = snapshot
        self._highest_seq = highest_seq
        self._write_lock = write_lock
        self.index_dir = index_dir
        self.params = params
        self.store_id = store_id
        self.dim = dim
        self.persist_every = persist_every
        self.enabled = enabled
        self.background = background
        self.indexes: dict[str, TenantIndex] = {}
        self._rebuilding: dict[str, threading.Thread] = {}
        self._state_lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self._closing = False

    # ---- open

    def load(self) -> None:
        """Bring every tenant's index up to date with the database (write lock)."""
        with self._reader() as conn:
            tenants = conn.execute("SELECT name, records, generation FROM tenants").fetchall()
        live = {name for name, records, _ in tenants if records > 0}
        for tenant in read_manifests(self.index_dir):
            if tenant not in live:
                remove_index(self.index_dir, tenant)
        for name, records, generation in tenants:
            if records > 0:
                self.indexes[name] = self._open_index(name, generation)

    def _open_index(self, tenant: str, generation: int) -> TenantIndex:
        started = time.monotonic()
        expect = {"store_id": self.store_id, "dim": self.dim}
        loaded = load_index(self.index_dir, tenant, self.params, expect)
        index = None
        if loaded is not None:
            index, manifest = loaded
            with self._reader() as conn:
                changes = self._reconcile(conn, tenant, index)
            if changes is None:
                log.warning(
                    "%s of tenant %r holds ids this database never issued; rebuilding",
                    self.label,
                    tenant,
                )
                index = None
            elif changes != (0, 0) or manifest.get("generation") != generation:
                log.info(
                    "%s of tenant %r was stale (saved at generation %s, database at "
                    "%d): added %d and removed %d vectors",
                    self.label,
                    tenant,
                    manifest.get("generation"),
                    generation,
                    *changes,
                )
                index.note_changes(sum(changes), generation)
        if index is None:
            ids, vectors = self._all_vectors(tenant)
            index = TenantIndex.build(ids, vectors, self.params)
            index.note_changes(index.ntotal, generation)
            log.info(
                "built the %s of tenant %r from the database: %d vectors (%s) in %.1f s",
                self.label,
                tenant,
                index.ntotal,
                index.kind,
                time.monotonic() - started,
            )
        index.note_changes(0, generation)
        if index.needs_rebuild():
            self.indexes[tenant] = index
            index = self._rebuild_now(tenant)
        return index

    # ---- database reads

    def _db_ids(self, conn: Any, tenant: str) -> np.ndarray:
        """Row numbers of the tenant's records, ascending (int64)."""
        rows = conn.execute(
            f"SELECT seq FROM corrections WHERE tenant = ?{self._has} ORDER BY seq", (tenant,)
        )
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def _db_vectors(self, conn: Any, tenant: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), vectors (N, dim)) of the tenant's rows among ``ids``."""
        found_ids, found = [], []
        for start in range(0, len(ids), SQL_VARS):
            chunk = [int(i) for i in ids[start : start + SQL_VARS]]
            rows = conn.execute(
                f"SELECT seq, {self.column} FROM corrections WHERE tenant = ?{self._has} "
                f"AND seq IN ({','.join('?' * len(chunk))})",
                (tenant, *chunk),
            ).fetchall()
            found_ids += [row[0] for row in rows]
            found += [np.frombuffer(row[1], dtype="<f4") for row in rows]
        vectors = np.stack(found) if found else np.zeros((0, self.dim or 0), np.float32)
        return np.array(found_ids, dtype=np.int64), vectors

    def _all_vectors(self, tenant: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), vectors (N, dim)) of all the tenant's rows, from one snapshot."""
        with self._snapshot() as conn:  # the count and the rows from the same snapshot
            n = conn.execute(
                f"SELECT count(*) FROM corrections WHERE tenant = ?{self._has}", (tenant,)
            ).fetchone()[0]
            out_ids = np.empty(n, dtype=np.int64)
            vectors = np.empty((n, self.dim or 0), dtype=np.float32)  # (N, dim)
            rows = conn.execute(
                f"SELECT seq, {self.column} FROM corrections WHERE tenant = ?{self._has} "
                "ORDER BY seq",
                (tenant,),
            )
            for i, (seq, blob) in enumerate(rows):
                out_ids[i] = seq
                vectors[i] = np.frombuffer(blob, dtype="<f4")
        return out_ids, vectors

    # ---- changes (the caller holds the write lock)

    def added(
        self, tenant: str, ids: np.ndarray, vectors: np.ndarray, gen: int, save: bool = True
    ) -> None:
        """Add committed rows to the tenant's index; ``save=False`` defers saving (imports save
        once at the end rather than rewriting a growing index every tenth of its size)."""
        if not self.enabled:
            return
        index = self.indexes.get(tenant)
        if index is None:
            index = self.indexes[tenant] = TenantIndex.empty(vectors.shape[1], self.params)
        for start in range(0, len(ids), INDEX_CHUNK):
            index.add(ids[start : start + INDEX_CHUNK], vectors[start : start + INDEX_CHUNK])
        index.note_changes(len(ids), gen)
        self._after_change(tenant, index, save)

    def removed(self, tenant: str, ids: list[int], generation: int) -> None:
        """Drop deleted rows from the tenant's index."""
        index = self.indexes.get(tenant) if self.enabled else None
        if index is None:
            return
        if self.sparse:  # a row without a vector here was never added
            ids = np.asarray(ids, dtype=np.int64)
            ids = ids[index.has(ids)].tolist()
        index.remove(ids)
        index.note_changes(len(ids), generation)
        self._after_change(tenant, index)

    def _after_change(self, tenant: str, index: TenantIndex, save: bool = True) -> None:
        if index.needs_rebuild():
            self._schedule_rebuild(tenant)
        if save:
            self.save_if_due(tenant)

    # ---- saving

    def save_if_due(self, tenant: str) -> None:
        """Save the tenant's index after ``persist_every`` changes, and at least a tenth of its
        size (so a large index is not rewritten constantly)."""
        index = self.indexes.get(tenant)
        if index is not None and index.unsaved >= max(self.persist_every, index.ntotal // 10):
            try:
                self._persist(tenant, index)
            except OSError:  # after the commit: the record is stored, only the cache is stale
                log.warning(
                    "could not save the memory index of tenant %r; it stays in memory and is "
                    "saved again later (or rebuilt from the database)",
                    tenant,
                    exc_info=True,
                )

    def _persist(self, tenant: str, index: TenantIndex) -> None:
        """Write the index to disk (any thread; file writes are serialised by their own lock)."""
        with self._persist_lock:
            snap = save_index(self.index_dir, tenant, index, {"store_id": self.store_id})
            index.note_saved(snap)
        log.debug("saved the memory index of tenant %r (%d vectors)", tenant, snap.vectors)

    def save_all(self) -> None:
        """Save every index changed since its last save, or never saved (write lock)."""
        for tenant, index in self.indexes.items():
            if index.unsaved or not index_paths(self.index_dir, tenant)[0].is_file():
                self._persist(tenant, index)

    # ---- changes made by other processes (a shared database; the caller holds the write lock)

    def refresh(self, tenant: str) -> None:
        """Bring the tenant's index up to date with the database after another process changed
        its records (the index is opened or built if this process had none)."""
        if not self.enabled:
            return
        with self._reader() as conn:
            row = conn.execute(
                "SELECT records, generation FROM tenants WHERE name = ?", (tenant,)
            ).fetchone()
        records, generation = (int(row[0]), int(row[1])) if row else (0, 0)
        index = self.indexes.get(tenant)
        if index is None:
            if records:
                self.indexes[tenant] = self._open_index(tenant, generation)
            return
        with self._reader() as conn:
            changes = self._reconcile(conn, tenant, index)
        if changes is None:  # cannot happen on one database: rebuild rather than serve it
            log.warning(
                "%s of tenant %r disagrees with the database; rebuilding", self.label, tenant
            )
            self._rebuild_now(tenant).note_changes(0, generation)
            return
        index.note_changes(sum(changes), generation)
        self._after_change(tenant, index)

    def apply(self, change: Change) -> None:
        """Apply another process's announced rows to the tenant's index (only those it lacks,
        or still holds: a notice may repeat what a reconcile already did); without rows, or
        without an index yet, ``refresh`` the tenant."""
        index = self.indexes.get(change.tenant) if self.enabled else None
        if index is None or change.added is None or change.removed is None:
            self.refresh(change.tenant)
            return
        added = np.unique(np.array(change.added, dtype=np.int64))
        removed = np.unique(np.array(change.removed, dtype=np.int64))
        new, gone = added[~index.has(added)], removed[index.has(removed)]
        with self._reader() as conn:
            row = conn.execute(
                "SELECT generation FROM tenants WHERE name = ?", (change.tenant,)
            ).fetchone()
            ids, vectors = self._db_vectors(conn, change.tenant, new)
        index.add(ids, vectors)  # a row deleted meanwhile is simply not found
        index.remove(gone)
        index.note_changes(len(ids) + len(gone), int(row[0]) if row else index.generation)
        self._after_change(change.tenant, index)

    def refresh_all(self) -> list[str]:
        """``refresh`` every tenant: after the change feed (re)started, when changes may have
        been missed whatever the generations say (one id scan per tenant). Returns them."""
        if not self.enabled:
            return []
        with self._reader() as conn:
            tenants = conn.execute("SELECT name, records FROM tenants").fetchall()
        names = [name for name, records in tenants if records or name in self.indexes]
        for name in names:
            self.refresh(name)
        return names

    # ---- reconcile and rebuild

    def _reconcile(self, conn: Any, tenant: str, index: TenantIndex) -> tuple[int, int] | None:
        """Make ``index`` hold exactly the tenant's rows: returns (added, removed), or None when
        it holds ids the database never issued (left unchanged then)."""
        in_db = self._db_ids(conn, tenant)
        have = index.ids()
        dead = np.fromiter(index.tombstones, dtype=np.int64, count=len(index.tombstones))
        highest = self._highest_seq(conn)
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
        old = self.indexes.get(tenant)
        ids, vectors = self._all_vectors(tenant)
        index = TenantIndex.build(ids, vectors, self.params)
        index.note_changes(index.ntotal, old.generation if old else 0)
        self.indexes[tenant] = index
        self._log_rebuild(tenant, old, index, started)
        return index

    def _rebuild_in_background(self, tenant: str) -> None:
        started = time.monotonic()
        try:
            ids, vectors = self._all_vectors(tenant)
            if self._closing:
                return
            index = TenantIndex.build(ids, vectors, self.params)  # no lock: the old one serves
            del ids, vectors
            with self._write_lock:  # close() waits for this thread before it takes the lock
                old = self.indexes.get(tenant)
                with self._reader() as conn:
                    reconciled = self._reconcile(conn, tenant, index)
                if reconciled is None:  # cannot happen
                    raise RuntimeError("the rebuilt index holds ids the database never issued")
                index.note_changes(index.ntotal, old.generation if old else 0)
                self.indexes[tenant] = index
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

    def stop(self) -> bool:
        """Start no more rebuilds and wait for those running; False if already stopped."""
        with self._state_lock:
            if self._closing:
                return False
            self._closing = True
        self.wait_idle()
        return True

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
            index, saved = self.indexes.get(name), manifests.get(name)
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
