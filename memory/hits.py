"""Turning an index's nearest neighbours into search hits, reading as few records as it can.

A tenant's question index holds its preferences too, so a search asks the index for more
candidates than it returns (``MemoryStore.search``: k + ``MAX_PREFERENCES``). ``read_hits``
reads the records of each row's best candidates first, one database query for all rows, and
further candidates only for the rows where some of those were preferences or records deleted
since the index was searched. So the usual search reads exactly the k records it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .records import CORRECTION, CorrectionRecord, MemoryHit

__all__ = ["read_hits"]

Candidates = Sequence[Sequence[tuple[int, float]]]
"""Per query row, ``(row number, similarity)`` best first."""


def read_hits(
    found: Candidates,
    keep: int,
    read: Callable[[list[int]], dict[int, CorrectionRecord]],
    kind: str,
) -> list[list[MemoryHit]]:
    """Each row's best ``keep`` corrections among its candidates; ``read(row numbers)`` gives
    the records still in the database (a missing one was deleted)."""
    hits: list[list[MemoryHit]] = [[] for _ in found]
    taken = [0] * len(found)
    records: dict[int, CorrectionRecord | None] = {}
    while True:
        batches = []
        for r, row in enumerate(found):
            batch = row[taken[r] : taken[r] + max(keep - len(hits[r]), 0)]
            taken[r] += len(batch)
            batches.append(batch)
        if not any(batches):
            return hits
        wanted = sorted({i for batch in batches for i, _ in batch} - records.keys())
        got = read(wanted) if wanted else {}
        records.update((i, got.get(i)) for i in wanted)
        for r, batch in enumerate(batches):
            for i, s in batch:
                record = records[i]
                if record is not None and record.kind == CORRECTION:
                    hits[r].append(MemoryHit(record, min(1.0, max(-1.0, s)), kind))
