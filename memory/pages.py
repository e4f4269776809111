"""Pages of one tenant's records, newest first: the query behind ``MemoryStore.list``.

Paging is by key, not offset: ``after`` names the last record of the previous page, and the
next page holds the records older than it (``created_at``, then ``seq`` to break ties), so a
record added or deleted meanwhile never shifts a page. One row more than ``limit`` is read to
say whether more follow.
"""

from __future__ import annotations

from typing import Any

from .db import Database
from .records import FIELDS, CorrectionRecord, check_id, check_kind

__all__ = ["MAX_CONTAINS_CHARS", "MAX_LIST_LIMIT", "SEARCHABLE", "read_page"]

MAX_LIST_LIMIT = 100
MAX_CONTAINS_CHARS = 1000
SEARCHABLE = "question, reasoning, corrected_reasoning, answer, feedback"
"""The text fields ``contains`` looks in."""


def read_page(
    conn: Any,
    db: Database,
    tenant: str,
    *,
    limit: int,
    after: str | None,
    contains: str | None,
    kind: str | None,
) -> tuple[list[CorrectionRecord], bool]:
    """A page of ``tenant``'s records (a checked tenant name) read on ``conn``, and whether
    more follow; ValueError names the argument that is wrong (``after``: the tenant has no such
    record)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    where, args = ["tenant = ?"], [tenant]
    if kind is not None:
        where.append("kind = ?")
        args.append(check_kind(kind))
    if after is not None:
        cursor = conn.execute(
            "SELECT created_at, seq FROM corrections WHERE id = ? AND tenant = ?",
            (check_id(after), tenant),
        ).fetchone()
        if cursor is None:
            raise ValueError(f"after: no memory {after} (deleted, or never existed)")
        where.append("(created_at < ? OR (created_at = ? AND seq < ?))")
        args += [cursor[0], cursor[0], cursor[1]]
    if contains:
        if not isinstance(contains, str) or len(contains) > MAX_CONTAINS_CHARS:
            raise ValueError(f"contains must be a string of at most {MAX_CONTAINS_CHARS}")
        if "\x00" in contains:
            raise ValueError("contains must not hold NUL characters")
        where.append(db.contains(SEARCHABLE))
        args.append(contains.casefold())
    rows = conn.execute(
        f"SELECT {FIELDS} FROM corrections WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, seq DESC LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    return [CorrectionRecord(*r) for r in rows[:limit]], len(rows) > limit
