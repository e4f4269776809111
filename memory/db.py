"""Where the correction records live: SQLite (embedded, one process) or PostgreSQL (shared).

``MemoryStore`` and its collaborators write their SQL once, with ``?`` placeholders, and run it
through a ``Database``; the few statements the two engines spell differently are its methods.

- ``SQLiteDatabase``: ``<folder>/memory.sqlite3``, WAL, ``synchronous=FULL``, one write
  connection (SQLite has one writer) and a pool of read connections. One process owns it.
- ``PostgresDatabase``: a ``postgresql://`` URL, the shared truth of several server replicas.
  Connections come from ``psycopg_pool`` (broken ones are checked out and replaced, so a
  restarted database is reconnected to without a restart of the replicas); a commit waits for
  the server's WAL flush (PostgreSQL's default ``synchronous_commit=on``). Every write
  transaction sends ``NOTIFY safework_memory`` with its tenant and rows (``Change``), delivered
  at commit; ``listen`` follows those in a thread and reports a lost connection, after which the
  caller must assume it missed some.

Schemas are versioned (``meta.schema_version``) and brought up to date by ``migrate``: each
entry of ``MIGRATIONS`` is applied once, in order, in one transaction (on PostgreSQL under an
advisory lock, so replicas starting together do not race). A database newer than this code is
refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

__all__ = [
    "CHANNEL",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Change",
    "Database",
    "PostgresDatabase",
    "SQLiteDatabase",
    "folded",
    "open_database",
    "redact_url",
]

log = logging.getLogger("safework.memory.store")

CHANNEL = "safework_memory"
"""The PostgreSQL notification channel of record changes (payload: ``Change.payload``)."""

_KIND = """
ALTER TABLE corrections ADD COLUMN kind TEXT NOT NULL DEFAULT 'correction';
CREATE INDEX corrections_by_kind ON corrections(tenant, kind, created_at);
"""
"""Migration 2 (both engines): a record is a correction or a standing preference."""

_MISTAKE = "ALTER TABLE corrections ADD COLUMN mistake {blob};"
"""Migration 3: a correction's mistake key (``mistakes.py``), float32 bytes like ``embedding``;
NULL until computed (rows stored before it: ``MemoryStore`` fills them in when it opens with
an encoder), empty when the correction replaced no step."""

MIGRATIONS: dict[str, Sequence[str]] = {
    "sqlite": (
        """
        CREATE TABLE IF NOT EXISTS tenants (
            name TEXT PRIMARY KEY,
            records INTEGER NOT NULL DEFAULT 0 CHECK (records >= 0),
            generation INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS corrections (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL REFERENCES tenants(name),
            question TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            corrected_reasoning TEXT NOT NULL,
            answer TEXT,
            feedback TEXT,
            model TEXT NOT NULL,
            created_at REAL NOT NULL,
            embedding BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS corrections_by_seq ON corrections(tenant, seq);
        CREATE INDEX IF NOT EXISTS corrections_by_time ON corrections(tenant, created_at, seq);
        """,
        _KIND,
        _MISTAKE.format(blob="BLOB"),
    ),
    "postgresql": (
        """
        CREATE TABLE tenants (
            name TEXT PRIMARY KEY,
            records BIGINT NOT NULL DEFAULT 0 CHECK (records >= 0),
            generation BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE corrections (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL REFERENCES tenants(name),
            question TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            corrected_reasoning TEXT NOT NULL,
            answer TEXT,
            feedback TEXT,
            model TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            embedding BYTEA NOT NULL,
            folded TEXT NOT NULL
        );
        CREATE INDEX corrections_by_seq ON corrections(tenant, seq);
        CREATE INDEX corrections_by_time ON corrections(tenant, created_at, seq);
        """,
        _KIND,
        _MISTAKE.format(blob="BYTEA"),
    ),
}
"""Per engine, the schema changes in order: the database at version N has applied the first
N. Both engines always have the same number (the same schema, spelled for each; PostgreSQL's
rows also keep ``folded``, their searchable text casefolded by Python, since its ``lower()``
is not Unicode case folding and depends on the database's locale)."""
SCHEMA_VERSION = len(MIGRATIONS["sqlite"])
if len(MIGRATIONS["postgresql"]) != SCHEMA_VERSION:
    raise RuntimeError("every engine needs every migration")

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def _contains(needle: str, *fields: str | None) -> bool:
    """SQLite function ``sw_contains``: case-insensitive substring test (Unicode casefold)."""
    return any(needle in f.casefold() for f in fields if f)


def folded(*fields: str | None) -> str:
    """The searchable text of a row for ``contains``: each field casefolded, joined by a
    separator no search text holds (so a match never spans two fields)."""
    return "\x01".join(f.casefold() for f in fields if f)


class Database(ABC):
    """The records' database: connections, transactions and the statements engines differ on."""

    name: str
    """``sqlite`` or ``postgresql`` (a key of ``MIGRATIONS``)."""
    shared: bool
    """Other processes may write to it too (and ``listen`` reports their changes)."""
    stores_folded: bool = False
    """Rows keep a ``folded`` column (``folded()``), which ``contains`` searches."""
    errors: tuple[type[BaseException], ...]
    """The driver's errors: the database failed or is unreachable (a 503, nothing stored)."""

    @abstractmethod
    def reader(self) -> contextlib.AbstractContextManager[Any]:
        """A connection for reads (each statement sees the latest commits)."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A connection in a write transaction, committed (durably) when the block ends, rolled
        back if it raises. The caller holds the store's write lock."""

    @abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[Any]:
        """A connection in a read transaction: every statement sees one snapshot."""

    @abstractmethod
    def highest_seq(self, conn: Any) -> int:
        """The highest row number ever issued (deleted rows included; 0 if none)."""

    @abstractmethod
    def contains(self, fields: str) -> str:
        """A condition: the ``?`` text (casefolded) occurs in one of ``fields`` (comma list)."""

    @abstractmethod
    def text_bytes(self, field: str) -> str:
        """An expression: UTF-8 bytes of the text column ``field`` (0 for NULL)."""

    def settle(self) -> None:  # noqa: B027
        """After a bulk load: do now the upkeep the database would otherwise do during later
        reads (nothing for SQLite, whose reads of new rows cost what any read does)."""

    def changed(self, conn: Any, change: Change) -> None:  # noqa: B027
        """Inside a write transaction: announce ``change`` (PostgreSQL notifies the other
        replicas at commit; nothing to do for SQLite)."""

    def listen(self, on_change: Callable[[Change | None], None]) -> None:  # noqa: B027
        """Call ``on_change(change)`` for every change announced by any process, and
        ``on_change(None)`` each time the feed starts (once LISTEN is in place, so that a
        change committed before it is not missed; and after a lost feed is re-established).
        Returns once the feed is in place (or after a few seconds, retrying in the
        background). Only for a ``shared`` database."""

    def stop_listening(self) -> None:  # noqa: B027
        """Stop the ``listen`` thread (waits for the change it may be applying)."""

    @abstractmethod
    def close(self) -> None: ...

    # ---- schema

    def migrate(self) -> None:
        """Create or upgrade the schema, and name the store (``meta.store_id``) when new.
        ConfigError for a database of a newer schema than this code knows."""
        with self.transaction() as conn:
            self._lock_schema(conn)
            conn.execute(_META)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            have = int(meta.get("schema_version", "0"))
            if have > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self} has memory schema {have}; this SafeWork reads up to "
                    f"{SCHEMA_VERSION}. Upgrade SafeWork, or export with the one that wrote it."
                )
            for number in range(have, SCHEMA_VERSION):
                self._script(conn, MIGRATIONS[self.name][number])
                log.info("memory schema of %s: applied migration %d", self, number + 1)
            if have != SCHEMA_VERSION:
                self.set_meta(conn, {"schema_version": str(SCHEMA_VERSION)})
            if "store_id" not in meta:  # under the schema lock: replicas agree on one
                self.set_meta(conn, {"store_id": uuid.uuid4().hex})

    def set_meta(self, conn: Any, values: dict[str, str]) -> None:
        for key, value in values.items():
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _lock_schema(self, conn: Any) -> None:  # noqa: B027
        """Hold off other processes migrating the same database (until the transaction ends)."""

    @abstractmethod
    def _script(self, conn: Any, script: str) -> None: ...


# --------------------------------------------------------------------------- SQLite


class SQLiteDatabase(Database):
    name = "sqlite"
    shared = False
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state_lock = threading.Lock()
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._connections: list[sqlite3.Connection] = []
        self._writer = self._connect()
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            self.close()
            raise ConfigError(f"{path}: SQLite refused WAL mode (got {mode!r})")

    def __str__(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.create_function("sw_contains", -1, _contains, deterministic=True)
        with self._state_lock:
            self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled read connection (WAL: readers never wait for the writer)."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._idle.put(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")  # durable here: WAL + synchronous=FULL fsyncs the log
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        with self.reader() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def highest_seq(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'corrections'").fetchone()
        return int(row[0]) if row else 0

    def contains(self, fields: str) -> str:
        return f"sw_contains(?, {fields})"

    def text_bytes(self, field: str) -> str:
        return f"coalesce(length(CAST({field} AS BLOB)), 0)"

    def _script(self, conn: sqlite3.Connection, script: str) -> None:
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                conn.execute(statement)

    def close(self) -> None:
        with self._state_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


# --------------------------------------------------------------------------- PostgreSQL


class _PgConnection:
    """A psycopg connection that takes the store's ``?`` placeholders."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(sql.replace("%", "%%").replace("?", "%s"), params)


class PostgresDatabase(Database):
    name = "postgresql"
    shared = True
    stores_folded = True

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 3.0):
        """``timeout``: seconds a call waits for a connection before it fails (the database
        is down or every connection busy); the pool reconnects in the background meanwhile."""
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ConfigError(f"--memory-store {redact_url(url)} needs psycopg: {e}") from None
        self.url = url
        self.errors = (psycopg.Error, TimeoutError)
        self._psycopg = psycopg
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            check=ConnectionPool.check_connection,
            name="safework-memory",
            open=False,
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except Exception as e:
            self.pool.close()
            raise ConfigError(f"cannot reach the memory store {redact_url(url)}: {e}") from None

    def __str__(self) -> str:
        return redact_url(self.url)

    @contextlib.contextmanager
    def reader(self) -> Iterator[_PgConnection]:
        with self.pool.connection() as conn:
            yield _PgConnection(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_PgConnection]:
        with self.pool.connection() as conn, conn.transaction():
            yield _PgConnection(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[_PgConnection]:
        with self.pool.connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield _PgConnection(conn)
            finally:
                conn.execute("COMMIT")

    def highest_seq(self, conn: _PgConnection) -> int:
        row = conn.execute(
            "SELECT last_value FROM pg_sequences WHERE schemaname = current_schema() "
            "AND sequencename = 'corrections_seq_seq'"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def contains(self, fields: str) -> str:
        return "strpos(folded, ?) > 0"

    def text_bytes(self, field: str) -> str:
        return f"coalesce(octet_length({field}), 0)"

    def _lock_schema(self, conn: _PgConnection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('safework_memory_schema'))")

    def _script(self, conn: _PgConnection, script: str) -> None:
        conn.raw.execute(script)

    def changed(self, conn: _PgConnection, change: Change) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, change.payload()))

    def settle(self) -> None:
        """``VACUUM (ANALYZE)`` the records: sets the new rows' visibility hints (otherwise the
        first read of each page sets them) and the planner's statistics, rather than leaving
        both to autovacuum running under the next queries. It blocks neither reads nor
        writes."""
        with self.pool.connection() as conn:  # autocommit: VACUUM runs outside transactions
            conn.execute("VACUUM (ANALYZE) corrections")

    def listen(self, on_change: Callable[[Change | None], None]) -> None:
        if self._listener is not None:
            raise RuntimeError("already listening")
        self._listener = threading.Thread(
            target=self._listen, args=(on_change,), name="memory-listen", daemon=True
        )
        self._listener.start()
        if not self._listening.wait(10.0):
            log.warning("memory store feed not yet in place; retrying in the background")

    def _listen(self, on_change: Callable[[Change | None], None]) -> None:
        """LISTEN on a connection of its own; reconnect (and report a gap) when it is lost."""
        psycopg = self._psycopg
        delay, connected_once = 0.2, False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if connected_once:
                        log.info("memory store feed re-established; resynchronising indexes")
                    on_change(None)  # whatever changed before LISTEN was in place
                    self._listening.set()
                    connected_once, delay = True, 0.2
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            change = Change.parse(note.payload)
                            if change is not None:
                                on_change(change)
            except psycopg.Error as e:
                if self._stop.is_set():
                    return
                log.warning("memory store feed lost (%s); reconnecting in %.1f s", e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("memory store feed: a change handler failed")
                self._stop.wait(delay)

    def stop_listening(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=10)

    def close(self) -> None:
        self.stop_listening()
        self.pool.close()


@dataclass(frozen=True)
class Change:
    """One committed write, as announced to the other replicas: the tenant, the announcing
    store, and the row numbers it added and removed (``None`` when there were too many to
    send: the receiver then reconciles the tenant's whole index).

    On the wire, runs of consecutive row numbers travel as ``[first, last]`` pairs, so an
    import batch (consecutive numbers) is one pair and the receiver reads just those rows."""

    tenant: str
    origin: str
    added: tuple[int, ...] | None = ()
    removed: tuple[int, ...] | None = ()

    def payload(self) -> str:
        data: dict[str, Any] = {"tenant": self.tenant, "origin": self.origin}
        if self.added is not None and self.removed is not None:
            rows = {"added": _runs(self.added), "removed": _runs(self.removed)}
            if len(json.dumps(rows)) <= MAX_NOTICE_ROWS_BYTES:
                data |= rows  # else none: NOTIFY payloads are bounded (8000 bytes)
        return json.dumps(data)

    @classmethod
    def parse(cls, text: str) -> Change | None:
        try:
            data = json.loads(text)
            added, removed = data.get("added"), data.get("removed")
            rows = None if added is None or removed is None else (added, removed)
            return cls(
                str(data["tenant"]),
                str(data.get("origin")),
                None if rows is None else _expand(rows[0]),
                None if rows is None else _expand(rows[1]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("memory store feed: ignored a malformed notification")
            return None


MAX_NOTICE_ROWS_BYTES = 6000
"""The most JSON a notice spends on row numbers (NOTIFY payloads stop at 8000 bytes); beyond
it the notice carries none and the receiver reconciles the tenant."""
MAX_NOTICE_RUN = 100_000
"""The longest run of row numbers a notice may announce (more than any one write makes)."""


def _runs(ids: tuple[int, ...]) -> list[int | list[int]]:
    """Sorted row numbers with runs of three or more as ``[first, last]``."""
    out: list[int | list[int]] = []
    ordered = sorted(set(ids))
    start = 0
    for end in range(1, len(ordered) + 1):
        if end == len(ordered) or ordered[end] != ordered[end - 1] + 1:
            first, last = ordered[start], ordered[end - 1]
            out += [[first, last]] if last - first >= 2 else list(range(first, last + 1))
            start = end
    return out


def _expand(items: list[Any]) -> tuple[int, ...]:
    out: list[int] = []
    for item in items:
        if isinstance(item, list):
            first, last = int(item[0]), int(item[1])
            if not 0 <= last - first < MAX_NOTICE_RUN or len(item) != 2:
                raise ValueError("a bad run of row numbers")
            out += range(first, last + 1)
        else:
            out.append(int(item))
    return tuple(out)


def redact_url(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def open_database(folder: Path, url: str | None = None) -> Database:
    """``url`` (``postgresql://...``) if given, else ``<folder>/memory.sqlite3``."""
    if url is None:
        return SQLiteDatabase(folder / "memory.sqlite3")
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise ConfigError(
        f"memory store {redact_url(url)!r}: use a postgresql:// URL (or none: SQLite)"
    )
