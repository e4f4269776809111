"""The correction store's writes: ``RecordWriter`` (``store.writer``).

A collaborator of ``MemoryStore``: each write is one transaction on the store's database
(``db.py``), under the store's write lock, that keeps the tenant's record count and generation
and announces the change to other replicas (``Database.changed``); after the commit, still
under the lock, the tenant's index follows (``IndexUpkeep.added`` / ``removed``), so no other
write of this process slips between a commit and its index update.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .db import Change, Database, folded
from .records import FIELDS, CorrectionRecord, is_id
from .transfer import Resolve
from .upkeep import IndexUpkeep

__all__ = ["FILL_BATCH", "RecordWriter", "mistake_column"]

FILL_BATCH = 500
"""Rows given their mistake key per transaction when a store opens on older rows."""


class RecordWriter:
    def __init__(
        self,
        db: Database,
        transaction: Callable[[], contextlib.AbstractContextManager[Any]],
        write_lock: threading.Lock,
        upkeep: IndexUpkeep,
        mistakes: IndexUpkeep,
        instance: str,
    ) -> None:
        """``transaction()``: a write transaction of the store (checked open); ``instance``:
        the store's id in change notices (its own are not applied to it again); ``upkeep``
        and ``mistakes`` keep the question and the mistake-key indexes (``mistakes.py``)."""
        self.db = db
        self._transaction = transaction
        self._write_lock = write_lock
        self.upkeep = upkeep
        self.mistakes = mistakes
        self.instance = instance

    def commit(
        self,
        items: Sequence[tuple[CorrectionRecord, np.ndarray, np.ndarray | None]],
        *,
        resolve: Resolve | None = None,
        save: bool = True,
    ) -> int:
        """Insert ``(record, vector, mistake vector or None)`` triples in one transaction (each
        through ``resolve`` first: the record to insert, or None to skip it), then add them to
        their tenants' indexes; returns how many were inserted. Committed (durable) when this
        returns."""
        added: dict[str, list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
        with self._write_lock:
            with self._transaction() as conn:
                for record, vector, mistake in items:
                    if resolve is not None and (record := resolve(conn, record)) is None:
                        continue
                    self._ensure_tenant(conn, record.tenant)
                    seq = self._insert(conn, record, vector, mistake)
                    added.setdefault(record.tenant, []).append((seq, vector, mistake))
                generations = {t: self._bump(conn, t, len(v)) for t, v in added.items()}
                for tenant, rows in added.items():
                    seqs = tuple(row[0] for row in rows)
                    self.db.changed(conn, Change(tenant, self.instance, added=seqs))
            for tenant, rows in added.items():
                ids = np.array([row[0] for row in rows], dtype=np.int64)
                vectors = np.stack([row[1] for row in rows])  # (N, dim)
                self.upkeep.added(tenant, ids, vectors, generations[tenant], save=save)
                keyed = [(seq, m) for seq, _, m in rows if m is not None and m.size]
                if keyed:
                    self.mistakes.added(
                        tenant,
                        np.array([seq for seq, _ in keyed], dtype=np.int64),
                        np.stack([m for _, m in keyed]),  # (K, dim)
                        generations[tenant],
                        save=save,
                    )
        return sum(len(rows) for rows in added.values())

    def delete(self, tenant: str, record_id: str) -> bool:
        """Delete the tenant's record ``record_id`` (a checked tenant); False when it has none
        of that id."""
        if not is_id(record_id):
            return False
        with self._write_lock:
            with self._transaction() as conn:
                row = conn.execute(
                    "SELECT seq FROM corrections WHERE id = ? AND tenant = ?", (record_id, tenant)
                ).fetchone()
                if row is None:
                    return False
                conn.execute("DELETE FROM corrections WHERE seq = ?", (row[0],))
                generation = self._bump(conn, tenant, -1)
                self.db.changed(conn, Change(tenant, self.instance, removed=(int(row[0]),)))
            self.upkeep.removed(tenant, [row[0]], generation)
            self.mistakes.removed(tenant, [row[0]], generation)
        return True

    def fill_mistake_keys(
        self,
        reader: Callable[[], contextlib.AbstractContextManager[Any]],
        keys: Callable[[list[CorrectionRecord]], list[np.ndarray | None]],
    ) -> int:
        """Give rows stored before mistake keys (NULL) theirs, computed by ``keys``, in
        batches, and announce them to other replicas; returns how many rows. The caller holds
        the write lock (the store, opening: its indexes load afterwards)."""
        filled = 0
        while True:
            with reader() as conn:
                rows = conn.execute(
                    f"SELECT seq, {FIELDS} FROM corrections WHERE mistake IS NULL "
                    "ORDER BY seq LIMIT ?",
                    (FILL_BATCH,),
                ).fetchall()
            if not rows:
                return filled
            found = keys([CorrectionRecord(*row[1:]) for row in rows])
            tenants: dict[str, list[int]] = {}
            with self._transaction() as conn:
                for row, key in zip(rows, found, strict=True):
                    conn.execute(
                        "UPDATE corrections SET mistake = ? WHERE seq = ? AND mistake IS NULL",
                        (mistake_column(key), row[0]),
                    )
                    if key is not None:
                        tenants.setdefault(row[2], []).append(int(row[0]))
                for tenant, seqs in tenants.items():
                    self.db.changed(conn, Change(tenant, self.instance, added=tuple(seqs)))
            filled += len(rows)

    # (the caller holds the write lock and a transaction)

    @staticmethod
    def _ensure_tenant(conn: Any, tenant: str) -> None:
        conn.execute("INSERT INTO tenants(name) VALUES (?) ON CONFLICT(name) DO NOTHING", (tenant,))

    @staticmethod
    def _bump(conn: Any, tenant: str, delta: int) -> int:
        """Add ``delta`` to the tenant's record count, advance its generation, return it."""
        return int(
            conn.execute(
                "UPDATE tenants SET records = records + ?, generation = generation + 1 "
                "WHERE name = ? RETURNING generation",
                (delta, tenant),
            ).fetchone()[0]
        )

    def _insert(
        self, conn: Any, r: CorrectionRecord, vector: np.ndarray, mistake: np.ndarray | None
    ) -> int:
        """One row; ``mistake`` None is stored empty (no mistake key, ``mistakes.py``), and
        ``PENDING`` (not computed yet) as NULL."""
        columns = [*FIELDS.split(", "), "embedding", "mistake"]
        values: list[Any] = [
            r.id,
            r.tenant,
            r.question,
            r.reasoning,
            r.corrected_reasoning,
            r.answer,
            r.feedback,
            r.model,
            r.created_at,
            r.kind,
            np.ascontiguousarray(vector, dtype="<f4").tobytes(),
            mistake_column(mistake),
        ]
        if self.db.stores_folded:
            columns.append("folded")
            values.append(
                folded(r.question, r.reasoning, r.corrected_reasoning, r.answer, r.feedback)
            )
        row = conn.execute(
            f"INSERT INTO corrections ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(values))}) RETURNING seq",
            values,
        ).fetchone()
        return int(row[0])


def mistake_column(mistake: np.ndarray | None) -> bytes | None:
    """The ``mistake`` column's value: empty for no key, NULL for ``PENDING``, else float32."""
    if mistake is None:
        return b""
    if mistake.size == 0:  # PENDING
        return None
    return np.ascontiguousarray(mistake, dtype="<f4").tobytes()
