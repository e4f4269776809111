"""Per-tenant FAISS indexes over the correction vectors: exact while small, HNSW when large.

Each tenant has its own index, so a query can only ever reach that tenant's vectors. FAISS ids
are the SQLite row numbers (``seq``) of the records, which the database never reuses; the store
turns hits back into records with a query that also checks the tenant.

- ``flat``: ``IndexIDMap2(IndexFlatIP)``, exact inner product (= cosine on unit vectors).
  Deleting removes the vector.
- ``hnsw``: ``IndexIDMap2(IndexHNSWFlat(M, METRIC_INNER_PRODUCT))`` once a tenant reaches
  ``hnsw_threshold`` records. HNSW cannot remove a vector, so a deletion leaves a tombstone that
  searches skip: FAISS's own ``IDSelector`` filter, applied while the graph is walked, so a query
  still gets ``k`` live neighbours (unlike cutting dead ones from an over-fetched list). When
  tombstones pass ``tombstone_ratio`` of the index the store rebuilds it from the database.

Persistence: ``<folder>/<safe tenant>.faiss`` plus ``<safe tenant>.json`` (the manifest: tenant,
kind, vector count, largest id, the tenant's database generation, the store's id). These files are
a cache: the database is the truth, and on open the store reconciles each index with it (see
``MemoryStore``), so a file written before a crash, or a stale one, is never trusted blindly.

Defaults come from ``bench/memory.py`` (one tenant of synthetic MiniLM-like 384-d vectors, see
there): M=32 and efConstruction=80 give recall@10 against exact search of 0.960 / 0.974 / 0.983
/ 0.984 at 1M records with efSearch 128 / 256 / 384 / 512 (0.9999 from 128 at 100k), index
search p99 0.6 / 1.0 / 1.6 / 1.8 ms. efSearch=512 keeps the 0.98 goal with a margin at 1M for
under 2 ms, little beside the ~10 ms MiniLM takes to embed the query; above it recall barely
moves (0.985 at 1024), the graph built with efConstruction 80 being the limit. Other tenants may
set their own (``MemoryStore(ef_search=...)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BLAS_THRESHOLD",
    "FLAT",
    "HNSW",
    "IndexParams",
    "Snapshot",
    "TenantIndex",
    "faiss_module",
    "index_paths",
    "load_index",
    "read_manifests",
    "remove_index",
    "safe_name",
    "save_index",
]

log = logging.getLogger(__name__)

FLAT = "flat"
HNSW = "hnsw"
MANIFEST_FORMAT = 1
BLAS_THRESHOLD = 20
"""faiss-cpu's build defaults to 128000, so batched flat searches skip BLAS and run ~7x slower."""

_configured = False
_configure_lock = threading.Lock()


def faiss_module() -> Any:
    """``faiss``, imported on first use and configured once for this process.

    The BLAS threshold is lowered (see ``BLAS_THRESHOLD``), and OpenMP gets the cores this process
    may run on (``sched_getaffinity``, which a container limits, unlike ``cpu_count``) unless
    ``OMP_NUM_THREADS`` says otherwise: more threads than cores only adds contention.
    """
    global _configured
    import faiss

    with _configure_lock:
        if not _configured:
            faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
            if "OMP_NUM_THREADS" not in os.environ:
                faiss.omp_set_num_threads(max(1, len(os.sched_getaffinity(0))))
            _configured = True
    return faiss


@dataclass(frozen=True)
class IndexParams:
    """How tenant indexes are built and searched."""

    hnsw_threshold: int = 20_000
    """A tenant with at least this many records gets an HNSW index; fewer, an exact one."""
    hnsw_m: int = 32
    """HNSW graph degree (neighbours per node on the upper layers; twice that on layer 0)."""
    ef_construction: int = 80
    """Candidate list size while inserting: better graphs, slower inserts."""
    ef_search: int = 512
    """Candidate list size while searching (raised to ``k`` when ``k`` is larger)."""
    tombstone_ratio: float = 0.10
    """Rebuild an HNSW index once this fraction of its vectors are deleted records."""

    def __post_init__(self) -> None:
        if self.hnsw_threshold < 1:
            raise ValueError(f"hnsw_threshold must be >= 1 (got {self.hnsw_threshold})")
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2 (got {getattr(self, name)})")
        if not 0.0 < self.tombstone_ratio < 1.0:
            raise ValueError(f"tombstone_ratio must be in (0, 1) (got {self.tombstone_ratio})")

    def kind_for(self, records: int) -> str:
        return HNSW if records >= self.hnsw_threshold else FLAT


class TenantIndex:
    """One tenant's vectors. Thread-safe: every method takes the index's own lock.

    FAISS allows concurrent searches but not a search during an insert, and an HNSW search
    temporarily edits the parameters it is given, so one lock guards both (a search takes well
    under a millisecond; writers insert in small batches).
    """

    def __init__(self, index: Any, kind: str, dim: int, params: IndexParams) -> None:
        self.index = index
        self.kind = kind
        self.dim = dim
        self.params = params
        self.tombstones: set[int] = set()
        self.generation = 0
        """The tenant's database generation this index reflects (set by the store)."""
        self.unsaved = 0
        """Changes since the index was last written to disk."""
        self._selector: Any = None
        self._lock = threading.Lock()

    # ---- building

    @classmethod
    def empty(cls, dim: int, params: IndexParams, kind: str = FLAT) -> TenantIndex:
        faiss = faiss_module()
        if kind == HNSW:
            inner = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = params.ef_construction
            inner.hnsw.efSearch = params.ef_search
        else:
            inner = faiss.IndexFlatIP(dim)
        return cls(faiss.IndexIDMap2(inner), kind, dim, params)

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, params: IndexParams, kind: str | None = None
    ) -> TenantIndex:
        """A new index of ``vectors`` (N, dim) under ``ids`` (N,); kind by size unless given."""
        index = cls.empty(vectors.shape[1], params, kind or params.kind_for(len(ids)))
        index.add(ids, vectors)
        return index

    # ---- state

    @property
    def ntotal(self) -> int:
        """Vectors in the FAISS index, tombstones included."""
        return int(self.index.ntotal)

    @property
    def live(self) -> int:
        return self.ntotal - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Every id in the FAISS index (tombstones included), int64, unordered."""
        with self._lock:
            return faiss_module().vector_to_array(self.index.id_map).astype(np.int64)

    def has(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` is in the FAISS index (tombstones included), bool (N,): one
        lookup in the id map per id (~16 us for a miss), where ``ids()`` copies every id."""
        out = np.zeros(len(ids), dtype=bool)
        with self._lock:
            for n, i in enumerate(ids):
                try:
                    self.index.reconstruct(int(i))
                except RuntimeError:  # not in the id map
                    continue
                out[n] = True
        return out

    def needs_rebuild(self) -> bool:
        """Flat past the HNSW threshold, or HNSW with too many tombstones."""
        if self.kind == FLAT:
            return self.live >= self.params.hnsw_threshold
        return len(self.tombstones) > self.params.tombstone_ratio * max(self.ntotal, 1)

    # ---- changes

    def note_changes(self, count: int, generation: int) -> None:
        """Record that ``count`` changes of database generation ``generation`` are applied."""
        with self._lock:
            self.unsaved += count
            self.generation = generation

    def note_saved(self, snap: Snapshot) -> None:
        with self._lock:
            self.unsaved = max(0, self.unsaved - snap.unsaved)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` (N, dim) float32 unit rows under ``ids`` (N,) not present yet."""
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, dim)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        with self._lock:
            self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Delete ``ids`` (which must be in the index): removed from a flat index, tombstoned in
        HNSW. Returns how many were live."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        faiss = faiss_module()
        with self._lock:
            if self.kind == FLAT:
                return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
            fresh = set(ids.tolist()) - self.tombstones
            if fresh:
                self.tombstones |= fresh
                self._selector = None
            return len(fresh)

    # ---- searching

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` live vectors for each query row: (scores, ids), each (Q, k'), best first.

        ``k' = min(k, live)``; a row may still end in ids of -1 when HNSW finds fewer.
        """
        faiss = faiss_module()
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # (Q, dim)
        with self._lock:
            depth = min(k, self.live)
            if depth <= 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            if self.kind == FLAT:
                return self.index.search(queries, depth)  # (Q, depth) each
            params = faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, depth))
            if self.tombstones:
                params.sel = self._tombstone_filter()
            return self.index.search(queries, depth, params=params)  # (Q, depth) each

    def _tombstone_filter(self) -> Any:
        """An IDSelector accepting every id but the tombstones, cached until they change."""
        if self._selector is None:
            faiss = faiss_module()
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64))
            self._selector = (faiss.IDSelectorNot(dead), dead)  # keep `dead` alive with it
        return self._selector[0]

    def snapshot(self) -> Snapshot:
        """The index as bytes with its counts, consistent with each other (taken under the lock)."""
        faiss = faiss_module()
        with self._lock:
            ids = faiss.vector_to_array(self.index.id_map)
            return Snapshot(
                data=faiss.serialize_index(self.index),
                vectors=self.ntotal,
                tombstones=len(self.tombstones),
                max_id=int(ids.max()) if len(ids) else 0,
                generation=self.generation,
                unsaved=self.unsaved,
            )


@dataclass(frozen=True)
class Snapshot:
    data: np.ndarray
    """The serialized FAISS index (uint8)."""
    vectors: int
    tombstones: int
    max_id: int
    generation: int
    unsaved: int


# ---- files


def safe_name(tenant: str) -> str:
    """A file name for ``tenant``: a readable slug plus a hash, so distinct tenants never clash."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", tenant)[:40].strip("_") or "tenant"
    return f"{slug}-{hashlib.sha256(tenant.encode()).hexdigest()[:16]}"


def index_paths(folder: Path, tenant: str) -> tuple[Path, Path]:
    """(index file, manifest file) of ``tenant`` under ``folder``."""
    name = safe_name(tenant)
    return folder / f"{name}.faiss", folder / f"{name}.json"


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_index(folder: Path, tenant: str, index: TenantIndex, extra: dict[str, Any]) -> Snapshot:
    """Write ``index`` and its manifest (index first, then manifest; each atomically).

    ``extra`` joins the manifest (the store's id). A crash between the two writes leaves a new
    index beside an old manifest; ``load_index`` notices (the vector count disagrees) or the
    store's reconciliation does (it compares ids one by one). Returns what was written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    snap = index.snapshot()
    index_file, manifest_file = index_paths(folder, tenant)
    _write_atomic(index_file, memoryview(snap.data))
    body = {
        "format": MANIFEST_FORMAT,
        "tenant": tenant,
        "kind": index.kind,
        "dim": index.dim,
        "hnsw_m": index.params.hnsw_m,
        "ef_construction": index.params.ef_construction,
        "vectors": snap.vectors,
        "tombstones": snap.tombstones,
        "records": snap.vectors - snap.tombstones,
        "max_id": snap.max_id,
        "generation": snap.generation,
        "bytes": int(snap.data.nbytes),
        "saved_at": time.time(),
        **extra,
    }
    _write_atomic(manifest_file, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
    return snap


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def read_manifests(folder: Path) -> dict[str, dict[str, Any]]:
    """Every readable manifest under ``folder``, by tenant."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = _read_manifest(path)
        if data and isinstance(data.get("tenant"), str):
            out[data["tenant"]] = data
    return out


def load_index(
    folder: Path, tenant: str, params: IndexParams, expect: dict[str, Any]
) -> tuple[TenantIndex, dict[str, Any]] | None:
    """The saved index of ``tenant`` if it exists and fits ``expect`` (``store_id``, ``dim``).

    Returns None (and logs why) for a missing, unreadable or foreign file; the caller rebuilds.
    """
    index_file, manifest_file = index_paths(folder, tenant)
    if not index_file.is_file():
        return None
    manifest = _read_manifest(manifest_file)
    problem = None
    if manifest is None:
        problem = "no readable manifest"
    elif manifest.get("tenant") != tenant:
        problem = "manifest of another tenant"
    elif manifest.get("kind") not in (FLAT, HNSW):
        problem = f"unknown kind {manifest.get('kind')!r}"
    else:
        for key, want in expect.items():
            if manifest.get(key) != want:
                problem = f"{key} is {manifest.get(key)!r}, expected {want!r}"
                break
    if problem is None:
        assert manifest is not None
        faiss = faiss_module()
        try:
            raw = faiss.read_index(str(index_file))
        except RuntimeError as e:
            raw, problem = None, f"unreadable ({str(e).splitlines()[0][:200]})"
        if raw is not None:
            problem = _check_loaded(faiss, raw, manifest)
        if problem is None:
            index = TenantIndex(raw, manifest["kind"], int(raw.d), params)
            index.generation = int(manifest.get("generation", 0))
            return index, manifest
    log.warning("memory index of tenant %r not loaded: %s; rebuilding it", tenant, problem)
    return None


def _check_loaded(faiss: Any, raw: Any, manifest: dict[str, Any]) -> str | None:
    """Why a freshly read index does not match its manifest, or None when it does."""
    inner = faiss.IndexHNSWFlat if manifest["kind"] == HNSW else faiss.IndexFlatIP
    if not isinstance(raw, faiss.IndexIDMap2) or not isinstance(
        faiss.downcast_index(raw.index), inner
    ):
        return f"not an IndexIDMap2 over {inner.__name__}"
    if raw.ntotal != manifest.get("vectors"):
        return f"{raw.ntotal} vectors, manifest says {manifest.get('vectors')}"
    return None


def remove_index(folder: Path, tenant: str) -> None:
    for path in index_paths(folder, tenant):
        path.unlink(missing_ok=True)
