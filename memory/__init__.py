"""Error-vector memory: users' corrections of chain-of-thought, stored per tenant and retrieved
for similar questions.

``MemoryStore`` keeps ``CorrectionRecord``s in a database (the durable truth, with each
question's embedding: SQLite embedded, or PostgreSQL shared by replicas) and searches them
through one FAISS index per tenant (exact while small, HNSW when large), rebuilt from the
database whenever the saved index is missing or stale, and kept current with other replicas'
writes.

- ``records.py``   the record, its checks and limits
- ``store.py``     ``MemoryStore``: add / get / delete / list / search / counts, threads, durability
- ``writes.py``    ``RecordWriter`` (``store.writer``): commits, deletes, change notices
- ``transfer.py``  ``RecordTransfer`` (``store.transfer``): export and import as JSON-ready rows
- ``upkeep.py``    ``IndexUpkeep`` (``store.upkeep``): load, reconcile, rebuild, save indexes
- ``db.py``        SQLite and PostgreSQL: connections, versioned schema, the change feed
- ``index.py``     per-tenant FAISS indexes (flat -> HNSW, tombstones) and their files
- ``cli.py``       ``safework memory export|import|stats``

Nothing here imports the server; the server opens one store at startup
(``MemoryStore.open_default(folder)``) and calls it through ``asyncio.to_thread``.
"""

from .index import IndexParams, TenantIndex
from .records import (
    ID_PATTERN,
    MAX_TENANT_CHARS,
    TEXT_LIMITS,
    CorrectionRecord,
    MemoryHit,
)
from .store import MAX_K, MAX_LIST_LIMIT, MemoryStore
from .transfer import IMPORT_BATCH

__all__ = [
    "ID_PATTERN",
    "IMPORT_BATCH",
    "MAX_K",
    "MAX_LIST_LIMIT",
    "MAX_TENANT_CHARS",
    "TEXT_LIMITS",
    "CorrectionRecord",
    "IndexParams",
    "MemoryHit",
    "MemoryStore",
    "TenantIndex",
]
