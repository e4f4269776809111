"""Export and import of correction records (JSON-ready rows): ``RecordTransfer``.

A collaborator of ``MemoryStore`` (``store.transfer``; the store's ``export`` and
``import_records`` call it): it turns rows into records and back, and writes through the
callables the store hands it (read connections, one committing write, the embedder), so
``store.py`` keeps the record API. Rows are what ``safework memory export`` writes as JSONL:
every field of the record, its ``tenant``, and the stored question embedding and mistake key
(base64 float32; ``mistakes.py``) with the name of the model that made them, so an import into
a store of the same encoder reuses the vectors instead of running the embedder again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Protocol

import numpy as np

from .mistakes import PENDING
from .records import (
    CORRECTION,
    FIELDS,
    TEXT_LIMITS,
    CorrectionRecord,
    check_created_at,
    check_fields,
    check_id,
    check_kind,
    check_tenant,
    decode_vector,
    encode_vector,
    new_id,
)

__all__ = ["EXPORT_CHUNK", "IMPORT_BATCH", "Commit", "RecordTransfer", "Resolve"]

IMPORT_BATCH = 500
"""Rows per import transaction: other writers and index updates interleave between batches."""
SETTLE_AFTER = 10_000
"""An import of this many rows is followed by the database's upkeep (``Database.settle``):
on PostgreSQL the reads just after a large import otherwise pay for it (``bench/memory.py``)."""
EXPORT_CHUNK = 1000


@dataclass
class _Incoming:
    record: CorrectionRecord
    vector: np.ndarray | None
    keep_id: bool
    mistake: np.ndarray | None = field(default_factory=lambda: PENDING)
    mistake_known: bool = False


Reader = Callable[[], contextlib.AbstractContextManager[Any]]
Resolve = Callable[[Any, CorrectionRecord], "CorrectionRecord | None"]
"""Inside the write transaction, before a record is inserted: the record to insert, or None
to skip it."""


class Commit(Protocol):
    """The store's one write (``RecordWriter.commit``): insert ``(record, vector, mistake key)``
    triples in one transaction (each through ``resolve`` first), index them, return how many
    were inserted."""

    def __call__(
        self,
        items: Sequence[tuple[CorrectionRecord, np.ndarray, np.ndarray | None]],
        *,
        resolve: Resolve | None = None,
        save: bool = True,
    ) -> int: ...


class RecordTransfer:
    """``export`` and ``import_records`` of one ``MemoryStore``."""

    def __init__(
        self,
        reader: Reader,
        commit: Commit,
        embed: Callable[[list[str]], np.ndarray],
        save_if_due: Callable[[str], None],
        *,
        encoder_name: str | None,
        dim: int | None,
        mistake_keys: Callable[[list[CorrectionRecord]], list[np.ndarray | None]] | None = None,
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        """``reader()``: a pooled read connection; ``commit``: the store's write (see
        ``Commit``); ``embed``: (N, dim) unit rows; ``save_if_due(tenant)``: saves the tenant's
        index once enough changed; ``encoder_name`` and ``dim``: the store's vectors';
        ``mistake_keys``: computes records' mistake keys (None without an embedder: they are
        left ``PENDING``, for the next store opened with one); ``settle()``: the database's
        upkeep after a bulk load (``Database.settle``), run after imports of at least
        ``SETTLE_AFTER`` rows."""
        self._mistake_keys = mistake_keys
        self._settle = settle
        self._reader = reader
        self._commit = commit
        self._embed = embed
        self._save_if_due = save_if_due
        self.encoder_name = encoder_name
        self.dim = dim

    def export(self, tenant: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record (of ``tenant``, or all) as a JSON-ready dict, oldest first.

        Rows carry ``tenant``, the stored ``embedding`` (base64 float32), ``mistake_embedding``
        (base64, null for a record without a mistake key, absent when not computed yet) and
        ``embedding_model``, so ``import_records`` into a store of the same encoder needs no
        embedder.
        """
        if tenant is not None:
            check_tenant(tenant)
        return self._export(tenant)

    def _export(self, tenant: str | None) -> Iterator[dict[str, Any]]:
        last, where, args = 0, "", []
        if tenant is not None:
            where, args = "AND tenant = ?", [tenant]
        while True:
            with self._reader() as conn:  # one query per chunk: no long read transaction
                rows = conn.execute(
                    f"SELECT seq, {FIELDS}, embedding, mistake FROM corrections "
                    f"WHERE seq > ? {where} "
                    "ORDER BY seq LIMIT ?",
                    (last, *args, EXPORT_CHUNK),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                record = CorrectionRecord(*row[1:-2])
                data = {**record.to_json(), "tenant": record.tenant}
                data["embedding"] = encode_vector(row[-2])
                if row[-1] is not None:
                    data["mistake_embedding"] = encode_vector(row[-1]) if len(row[-1]) else None
                data["embedding_model"] = self.encoder_name
                yield data
            last = rows[-1][0]

    def import_records(self, rows: Iterable[dict[str, Any]], tenant: str | None = None) -> int:
        """Add exported rows (to ``tenant`` if given, else each row's own); return how many.

        A row keeps its ``id`` when no record has it; a row identical to the record holding
        its id (a second import of the same file) is skipped; otherwise it gets a new id.
        Embeddings from a store of the same encoder are reused, other rows are embedded.
        Commits every ``IMPORT_BATCH`` rows: on a bad row (ValueError naming its number) the
        batches before it stay imported, and importing the file again skips them.
        """
        if tenant is not None:
            check_tenant(tenant)
        imported, number, touched = 0, 0, set()
        iterator = iter(rows)
        while batch := list(islice(iterator, IMPORT_BATCH)):
            incoming = []
            for row in batch:
                number += 1
                try:
                    incoming.append(self._incoming(row, tenant))
                except ValueError as e:
                    raise ValueError(f"row {number}: {e}") from None
            missing = [item for item in incoming if item.vector is None]
            if missing:
                vectors = self._embed([item.record.question for item in missing])
                for item, vector in zip(missing, vectors, strict=True):
                    item.vector = vector
            unknown = [item for item in incoming if not item.mistake_known]
            if unknown and self._mistake_keys is not None:
                keys = self._mistake_keys([item.record for item in unknown])
                for item, key in zip(unknown, keys, strict=True):
                    item.mistake = key
            imported += self._write_batch(incoming)
            touched |= {item.record.tenant for item in incoming}
        for owner in touched:
            self._save_if_due(owner)
        if imported >= SETTLE_AFTER:
            self._settle()
        return imported

    def _incoming(self, row: object, tenant: str | None) -> _Incoming:
        if not isinstance(row, dict):
            raise ValueError("each row must be a JSON object")
        fields = {name: row.get(name) for name in TEXT_LIMITS}
        fields["reasoning"] = fields["reasoning"] or ""
        fields["model"] = fields["model"] or ""
        check_fields(**fields)
        owner = check_tenant(tenant if tenant is not None else row.get("tenant"))
        created = row.get("created_at")
        created_at = time.time() if created is None else check_created_at(created)
        record_id = row.get("id")
        keep = record_id is not None
        if keep:
            check_id(record_id)
        vector = None
        same_model = row.get("embedding_model") == self.encoder_name and self.dim
        if same_model and row.get("embedding") is not None:
            vector = decode_vector(row["embedding"], self.dim or 0)
        mistake, mistake_known = PENDING, False
        if same_model and "mistake_embedding" in row:
            given = row["mistake_embedding"]
            mistake = None if given is None else decode_vector(given, self.dim or 0)
            mistake_known = given is None or mistake is not None
        kind = check_kind(row.get("kind", CORRECTION))
        record = CorrectionRecord(
            id=record_id if keep else new_id(),
            tenant=owner,
            created_at=created_at,
            kind=kind,
            **fields,
        )
        if kind != CORRECTION:
            mistake, mistake_known = None, True
        return _Incoming(record, vector, keep, mistake, mistake_known)

    def _write_batch(self, incoming: Sequence[_Incoming]) -> int:
        kept = {item.record.id for item in incoming if item.keep_id}

        def resolve(conn: Any, record: CorrectionRecord) -> CorrectionRecord | None:
            if record.id not in kept:
                return record
            held = conn.execute(
                f"SELECT {FIELDS} FROM corrections WHERE id = ?", (record.id,)
            ).fetchone()
            if held is not None and CorrectionRecord(*held) == record:
                return None  # already imported
            return record if held is None else replace(record, id=new_id())

        items = []
        for item in incoming:
            assert item.vector is not None
            items.append((item.record, item.vector, item.mistake))
        return self._commit(items, resolve=resolve, save=False)
