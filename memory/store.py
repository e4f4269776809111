"""The correction memory: per-tenant records in SQLite, searchable by question through FAISS.

What it is: every correction a user makes through ``POST /cot/edit`` becomes a
``CorrectionRecord``; later questions of the same tenant retrieve the closest ones (cosine of
question embeddings) to guide the model.

Design:

- **The database is the truth**: SQLite (``<folder>/memory.sqlite3``, WAL, ``synchronous=FULL``,
  foreign keys) by default, or PostgreSQL (``database="postgresql://..."``) shared by several
  replicas (``db.py``). ``add`` returns only after its transaction is committed and flushed, so
  a record acknowledged to a client survives a SIGKILL right after. Each row keeps its
  question's embedding (float32 bytes), so indexes rebuild without the embedder. Row numbers
  (``seq``: AUTOINCREMENT or an identity column, never reused) are the FAISS ids.
- **FAISS is a cache** (``index.py``): one index per tenant, persisted to ``<folder>/index/`` at
  ``close()`` and after every ``persist_every`` changes (at least a tenth of the index, so large
  indexes are not rewritten constantly). A save that fails after a commit (disk full) is logged
  and tried again later: ``add`` still returns the committed record, so a client never retries
  (and stores twice) a correction that was kept. On open each saved index is reconciled with
  the database id by id: vectors of rows it lacks are added, ids of deleted rows removed
  (tombstoned in HNSW). A missing, unreadable or foreign index file (another store's, another
  dimension) is rebuilt from the stored vectors. Either is logged.
- **Replicas** (PostgreSQL): each store keeps its own FAISS indexes in its own folder. Every
  write announces its tenant and rows (``NOTIFY``, ``db.Change``); the other stores apply them
  to that tenant's index (``IndexUpkeep.apply``) within milliseconds, or reconcile it with the
  database when a notice is too large to name its rows. When the feed starts, or comes back
  after the database was away, every index is reconciled, so a missed notice costs time, never
  a record.
- **Tenants never meet**: every statement filters on the tenant, and each tenant has its own
  index, so another tenant's record behaves exactly like a missing one.
- **Threads**: writes go through one connection under one lock (SQLite allows one writer);
  reads take a connection from a pool and never wait for that lock, so ``get``/``list``/``search``
  proceed during a long ``import_records`` (which commits in batches of ``IMPORT_BATCH``).
  Measured with ``bench/memory.py`` on 2 cores: while another thread imported 20k records,
  ``get`` took 0.46 ms at p99 (0.06 idle); one shared connection under a lock would have held
  reads for whole 500-row transactions (61 ms median, 196 ms the longest).
- **Heavy index work** (flat -> HNSW at ``hnsw_threshold``, or a rebuild once an HNSW index
  holds too many tombstones) runs in a background thread from a database snapshot; the old
  index serves meanwhile, and the new one is brought up to date under the write lock before it
  replaces it.

Use::

    store = MemoryStore.open_default()               # cache_dir()/"memory", MiniLM
    rec = store.add("acme", question="...", reasoning="...", corrected_reasoning="...",
                    answer=None, feedback=None, model="smollm2")
    hits = store.search("acme", "a similar question", k=3, min_similarity=0.5)
    store.close()

Tests: ``pytest tests/test_memory_store.py tests/test_memory_index.py``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from safework.engine.embedder import Encoder
from safework.errors import ConfigError

from .db import Change, Database, open_database
from .hits import read_hits
from .index import IndexParams, TenantIndex
from .mistakes import MAX_STEP_CHARS, mistake_keys, mistake_step
from .pages import MAX_LIST_LIMIT, read_page
from .records import (
    CORRECTION,
    FIELDS,
    MAX_PREFERENCES,
    MISTAKE,
    PREFERENCE,
    PREFERENCE_CHARS,
    QUESTION,
    TEXT_LIMITS,
    CorrectionRecord,
    MemoryHit,
    PreferenceLimitError,
    check_fields,
    check_kind,
    check_tenant,
    encoder_name,
    is_id,
    new_id,
    unit_rows,
)
from .transfer import IMPORT_BATCH, RecordTransfer
from .upkeep import IndexUpkeep
from .writes import RecordWriter

__all__ = [
    "IMPORT_BATCH",
    "MAX_K",
    "MAX_LIST_LIMIT",
    "CorrectionRecord",
    "MemoryHit",
    "MemoryStore",
]

log = logging.getLogger(__name__)

MAX_K = 100


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class MemoryStore:
    """Per-tenant correction records with similarity search; every method is thread-safe.

    The records and their connections are the store's own; three collaborators do the rest:
    ``writer`` (``writes.py``) commits and deletes, ``upkeep`` (``upkeep.py``) keeps the
    tenants' indexes and ``transfer`` (``transfer.py``) exports and imports rows.
    """

    def __init__(
        self,
        folder: Path,
        encoder: Encoder | None,
        *,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 512,
        tombstone_ratio: float = 0.10,
        persist_every: int = 1000,
        indexes: bool = True,
        background: bool = True,
        database: str | None = None,
    ) -> None:
        """Open or create the store in ``folder``.

        ``database``: a ``postgresql://`` URL, the shared truth of several replicas (each keeps
        its indexes in its own ``folder`` and follows the others' changes); None: SQLite in
        ``folder``.

        ``encoder`` embeds questions (None: a store that only reads, exports, or imports rows
        with embeddings). ``indexes=False`` opens the database only (the CLI does): no index is
        loaded, built or written, ``search`` is unavailable, and the next store opened with
        indexes brings them up to date. ``background=False`` runs index rebuilds inside the call
        that triggers them (tests).
        """
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.encoder = encoder
        params = IndexParams(hnsw_threshold, hnsw_m, ef_construction, ef_search, tombstone_ratio)
        if persist_every < 1:
            raise ValueError(f"persist_every must be >= 1 (got {persist_every})")
        self._write_lock = threading.Lock()
        self._closed = False
        self.instance = uuid.uuid4().hex
        """This process's store: a change it announces is not applied to itself again."""
        self.on_remote_change: Callable[[str], None] | None = None
        """Called (in the listener's thread, after the index caught up) with each tenant
        another process changed (a shared database only)."""
        self.db: Database = open_database(self.folder, database)
        try:
            self._init_meta()

            def upkeep(folder: str, column: str) -> IndexUpkeep:
                return IndexUpkeep(
                    self._reader,
                    self._snapshot,
                    self.db.highest_seq,
                    self._write_lock,
                    self.folder / folder,
                    params,
                    store_id=self.store_id,
                    dim=self.dim,
                    persist_every=persist_every,
                    enabled=indexes,
                    background=background,
                    column=column,
                )

            self.upkeep = upkeep("index", "embedding")
            self.mistakes = upkeep("mistakes", "mistake")
            """The tenants' mistake-key indexes (``mistakes.py``), kept like ``upkeep``'s."""
            self.writer = RecordWriter(
                self.db,
                self._transaction,
                self._write_lock,
                self.upkeep,
                self.mistakes,
                self.instance,
            )
            self.transfer = RecordTransfer(
                self._reader,
                self.writer.commit,
                self._embed,
                self._save_if_due,
                encoder_name=self.encoder_name,
                dim=self.dim,
                mistake_keys=self._mistake_keys if encoder is not None else None,
                settle=self.db.settle,
            )
            if indexes:
                with self._write_lock:
                    if encoder is not None:
                        filled = self.writer.fill_mistake_keys(self._reader, self._mistake_keys)
                        if filled:
                            log.info("computed the mistake keys of %d older records", filled)
                    self.upkeep.load()
                    self.mistakes.load()
                if self.db.shared:
                    self.db.listen(self._on_change)
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def open_default(
        cls, folder: Path | None = None, encoder: Encoder | None = None, **options: Any
    ) -> MemoryStore:
        """The store in ``folder`` (default ``cache_dir()/"memory"``) with ``encoder`` (default
        the process's MiniLM embedder)."""
        if folder is None:
            from safework.files import cache_dir

            folder = cache_dir() / "memory"
        if encoder is None:
            from safework.engine.embedder import get_embedder

            encoder = get_embedder()
        return cls(folder, encoder, **options)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def persist_every(self) -> int:
        """Changes after which a tenant's index is saved (and at least a tenth of it)."""
        return self.upkeep.persist_every

    @persist_every.setter
    def persist_every(self, value: int) -> None:
        self.upkeep.persist_every = value
        self.mistakes.persist_every = value

    def _save_if_due(self, tenant: str) -> None:
        self.upkeep.save_if_due(tenant)
        self.mistakes.save_if_due(tenant)

    @property
    def _indexes(self) -> dict[str, TenantIndex]:  # bench/memory.py reads an index directly
        return self.upkeep.indexes

    # ---- connections

    @property
    def db_path(self) -> Path:
        """The SQLite file (also the name of the store in messages)."""
        return self.folder / "memory.sqlite3"

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        """A read connection (SQLite WAL: readers never wait for the writer)."""
        self._check_open()
        with self.db.reader() as conn:
            yield conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """A read connection whose statements all see one snapshot."""
        self._check_open()
        with self.db.snapshot() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A write transaction; the caller holds ``_write_lock``."""
        self._check_open()
        with self.db.transaction() as conn:
            yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the memory store is closed")

    def _close_connections(self) -> None:
        """Close the database without saving anything (as a killed process would)."""
        self.db.close()

    def _init_meta(self) -> None:
        self.db.migrate()
        with self._write_lock, self._transaction() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            records = conn.execute("SELECT coalesce(sum(records), 0) FROM tenants").fetchone()[0]
            name = encoder_name(self.encoder) if self.encoder is not None else None
            dim = getattr(self.encoder, "dim", None) if self.encoder is not None else None
            if self.encoder is not None and dim is None and "dim" not in meta:
                dim = int(np.asarray(self.encoder.encode(["dimension probe"])).shape[1])
            if records and name and meta.get("encoder", name) != name:
                raise ConfigError(
                    f"{self.db} holds vectors of {meta['encoder']!r}, not {name!r}: open it "
                    "with that encoder, or export and re-import into a new --memory-dir"
                )
            if records and dim and int(meta.get("dim", dim)) != dim:
                raise ConfigError(f"{self.db} holds {meta['dim']}-d vectors, encoder has {dim}")
            updates = {}
            if not records:
                updates = {k: str(v) for k, v in (("encoder", name), ("dim", dim)) if v}
            self.db.set_meta(conn, updates)
            meta |= updates
        self.store_id: str = meta["store_id"]
        self.encoder_name: str | None = meta.get("encoder")
        self.dim: int | None = int(meta["dim"]) if "dim" in meta else None

    # ---- records

    def add(
        self,
        tenant: str,
        *,
        question: str,
        reasoning: str,
        corrected_reasoning: str,
        answer: str | None = None,
        feedback: str | None = None,
        model: str,
        kind: str = CORRECTION,
    ) -> CorrectionRecord:
        """Store a correction (or, ``kind="preference"``, a standing preference: its ``text``
        at most ``PREFERENCE_CHARS``, at most ``MAX_PREFERENCES`` per tenant, else
        ``PreferenceLimitError``); committed (durable) when this returns, then searchable."""
        fields = check_fields(
            question=question,
            reasoning=reasoning,
            corrected_reasoning=corrected_reasoning,
            answer=answer,
            feedback=feedback,
            model=model,
        )
        record = CorrectionRecord(
            id=new_id(),
            tenant=check_tenant(tenant),
            created_at=time.time(),
            kind=check_kind(kind),
            **fields,
        )
        resolve = None
        if kind == PREFERENCE:
            if len(record.text) > PREFERENCE_CHARS:
                raise ValueError(f"a preference is at most {PREFERENCE_CHARS} characters")
            resolve = self._room_for_preference
        step = mistake_step(reasoning, corrected_reasoning) if kind == CORRECTION else None
        vectors = self._embed([question] if step is None else [question, step.mistake])
        mistake = None if step is None else vectors[1]  # (dim,)
        self.writer.commit([(record, vectors[0], mistake)], resolve=resolve)
        return record

    @staticmethod
    def _room_for_preference(conn: Any, record: CorrectionRecord) -> CorrectionRecord:
        """Inside the write transaction: the tenant may keep one more preference."""
        held = conn.execute(
            "SELECT count(*) FROM corrections WHERE tenant = ? AND kind = ?",
            (record.tenant, PREFERENCE),
        ).fetchone()[0]
        if held >= MAX_PREFERENCES:
            raise PreferenceLimitError(
                f"this tenant keeps {MAX_PREFERENCES} preferences already; delete one first"
            )
        return record

    def preferences(self, tenant: str) -> list[CorrectionRecord]:
        """The tenant's standing preferences, oldest first (at most ``MAX_PREFERENCES``)."""
        tenant = check_tenant(tenant)
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {FIELDS} FROM corrections WHERE tenant = ? AND kind = ? "
                "ORDER BY created_at, seq LIMIT ?",
                (tenant, PREFERENCE, MAX_PREFERENCES),
            ).fetchall()
        return [CorrectionRecord(*r) for r in rows]

    def get(self, tenant: str, record_id: str) -> CorrectionRecord | None:
        """The tenant's record ``record_id``, or None: also for another tenant's record and for
        a string that is not a record id (checked before any SQL)."""
        tenant = check_tenant(tenant)
        if not is_id(record_id):
            return None
        with self._reader() as conn:
            row = conn.execute(
                f"SELECT {FIELDS} FROM corrections WHERE id = ? AND tenant = ?", (record_id, tenant)
            ).fetchone()
        return CorrectionRecord(*row) if row else None

    def delete(self, tenant: str, record_id: str) -> bool:
        """Delete the tenant's record ``record_id``; False when it has none of that id (another
        tenant's record, or not a record id at all)."""
        tenant = check_tenant(tenant)
        if not is_id(record_id):
            return False
        return self.writer.delete(tenant, record_id)

    def list(
        self,
        tenant: str,
        *,
        limit: int = 20,
        after: str | None = None,
        contains: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[CorrectionRecord], bool]:
        """A page of the tenant's records, newest first, and whether more follow.

        ``after`` is the id of the last record of the previous page (ValueError if the tenant
        has no such record); ``contains`` keeps records with that text (any case) in the
        question, reasoning, corrected reasoning, answer or feedback; ``kind`` keeps one kind.
        """
        tenant = check_tenant(tenant)
        with self._reader() as conn:
            return read_page(
                conn, self.db, tenant, limit=limit, after=after, contains=contains, kind=kind
            )

    def search(
        self, tenant: str, text: str, k: int = 3, min_similarity: float = 0.0
    ) -> list[MemoryHit]:
        """The tenant's ``k`` corrections whose questions are closest to ``text``, best first,
        with cosine similarity at least ``min_similarity`` (preferences are never hits: the
        index holds them too, so it is asked for enough more to leave them out)."""
        tenant = check_tenant(tenant)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the search text must not be empty")
        self._check_search(k, min_similarity)
        index = self.upkeep.indexes.get(tenant)
        if index is None or index.live == 0:
            return []
        query = self._embed([text[: TEXT_LIMITS["question"]]])  # (1, dim)
        candidates = k + MAX_PREFERENCES
        return self._hits(tenant, index, query, candidates, min_similarity, QUESTION, keep=k)[0]

    def search_mistakes(
        self, tenant: str, steps: list[str], k: int = 1, min_similarity: float = 0.0
    ) -> list[list[MemoryHit]]:
        """For each of ``steps`` (a draft's reasoning steps), the tenant's ``k`` corrections
        whose mistaken step is closest (``mistakes.py``), best first, at least
        ``min_similarity``; hits are of kind ``mistake``. One embedding call for all steps."""
        tenant = check_tenant(tenant)
        if not steps or not all(isinstance(t, str) and t.strip() for t in steps):
            raise ValueError("the steps must be non-empty strings")
        self._check_search(k, min_similarity)
        index = self.mistakes.indexes.get(tenant)
        if index is None or index.live == 0:
            return [[] for _ in steps]
        queries = self._embed([t[:MAX_STEP_CHARS] for t in steps])  # (S, dim)
        return self._hits(tenant, index, queries, k, min_similarity, MISTAKE)

    def has_mistakes(self, tenant: str) -> bool:
        """Whether the tenant has corrections with a mistake key (no database read)."""
        index = self.mistakes.indexes.get(tenant)
        return index is not None and index.live > 0

    def _check_search(self, k: int, min_similarity: float) -> None:
        if not _is_int(k) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}")
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError("min_similarity must be in [-1, 1]")
        if not self.upkeep.enabled:
            raise RuntimeError("this memory store was opened without indexes")
        self._check_open()

    def _hits(
        self,
        tenant: str,
        index: TenantIndex,
        queries: np.ndarray,
        k: int,
        min_similarity: float,
        kind: str,
        keep: int | None = None,
    ) -> list[list[MemoryHit]]:
        """Each query row's best ``keep`` (default ``k``) hits among the tenant's corrections,
        from the index's ``k`` nearest (``hits.read_hits``: records read best first)."""
        scores, ids = index.search(queries, k)  # (Q, k') each
        found = [
            [
                (int(i), float(s))
                for i, s in zip(row_ids, row_scores, strict=True)
                if i >= 0 and s >= min_similarity
            ]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]
        read = functools.partial(self._records_by_seq, tenant)
        return read_hits(found, k if keep is None else keep, read, kind)

    def count(self, tenant: str) -> int:
        tenant = check_tenant(tenant)
        with self._reader() as conn:
            row = conn.execute("SELECT records FROM tenants WHERE name = ?", (tenant,)).fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Records per tenant (tenants whose records were all deleted show 0)."""
        with self._reader() as conn:
            return dict(conn.execute("SELECT name, records FROM tenants ORDER BY name").fetchall())

    def usage(self, tenant: str | None = None) -> dict[str, tuple[int, int]]:
        """Records and UTF-8 bytes of text (``TEXT_LIMITS``' fields) per tenant with records
        (of ``tenant`` only, if given): one pass over the rows, for a server's quotas."""
        size = " + ".join(self.db.text_bytes(f) for f in TEXT_LIMITS)
        where, args = ("WHERE tenant = ?", (check_tenant(tenant),)) if tenant else ("", ())
        query = f"SELECT tenant, count(*), sum({size}) FROM corrections {where} GROUP BY tenant"
        with self._reader() as conn:
            rows = conn.execute(query, args).fetchall()
        return {t: (int(n), int(b)) for t, n, b in rows}

    def _records_by_seq(self, tenant: str, seqs: list[int]) -> dict[int, CorrectionRecord]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT seq, {FIELDS} FROM corrections WHERE tenant = ? AND seq IN ({marks})",
                (tenant, *seqs),
            ).fetchall()
        return {row[0]: CorrectionRecord(*row[1:]) for row in rows}

    def _mistake_keys(self, records: list[CorrectionRecord]) -> list[np.ndarray | None]:
        return mistake_keys(records, self._embed)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(N, dim) unit rows for ``texts``."""
        if self.encoder is None:
            raise RuntimeError("this memory store was opened without an encoder")
        vectors = np.asarray(self.encoder.encode(texts), dtype=np.float32)  # (N, dim)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] != self.dim:
            raise RuntimeError(f"the encoder returned {vectors.shape}, expected (N, {self.dim})")
        return unit_rows(vectors)

    def _on_change(self, change: Change | None) -> None:
        """A change announced on a shared database (the listener's thread): apply it to the
        tenant's index, or reconcile every index when the feed (re)starts (``None``)."""
        if change is not None and change.origin == self.instance:
            return  # this store's own write: its index already has it
        with self._write_lock:
            if self._closed:
                return
            if change is None:
                changed = self.upkeep.refresh_all()
                self.mistakes.refresh_all()
            else:
                self.upkeep.apply(change)
                self.mistakes.apply(change)
                changed = [change.tenant]
        if self.on_remote_change is not None:
            for name in changed:
                self.on_remote_change(name)

    # ---- transfer and upkeep (``transfer.py``, ``upkeep.py``)

    def export(self, tenant: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record (of ``tenant``, or all) as a JSON-ready dict (``RecordTransfer``)."""
        return self.transfer.export(tenant)

    def import_records(self, rows: Iterable[dict[str, Any]], tenant: str | None = None) -> int:
        """Add exported rows; returns how many (``RecordTransfer.import_records``)."""
        return self.transfer.import_records(rows, tenant)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per tenant: records, generation and index state (``IndexUpkeep.stats``)."""
        return self.upkeep.stats()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for background index rebuilds; False if some still run at ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        idle = self.upkeep.wait_idle(timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.mistakes.wait_idle(left) and idle

    # ---- closing

    def close(self) -> None:
        """Wait for background rebuilds, save every changed index, close the database."""
        if not self.upkeep.stop():
            return
        self.mistakes.stop()
        self.db.stop_listening()  # before the lock: a change being applied needs it
        with self._write_lock:
            try:
                self.upkeep.save_all()
                self.mistakes.save_all()
            finally:
                self._closed = True
                self._close_connections()
