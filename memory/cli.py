"""``safework memory``: export, import and inspect the correction memory.

safework memory stats                          # records per tenant, index kind and state
safework memory export -o backup.jsonl         # every tenant (each row names its tenant)
safework memory export --tenant acme > acme.jsonl
safework memory import backup.jsonl            # ids kept when free; rows already there skipped
safework memory import acme.jsonl --tenant acme-staging
safework memory export -o all.jsonl && safework memory import all.jsonl --memory-store postgresql://...

The store lives in ``--memory-dir`` (default: the cache's ``memory/`` folder, the same as
``safework serve``'s), or in PostgreSQL with ``--memory-store URL`` (as ``safework serve
--memory-store``): export from one and import into the other to move tenants between them.
These commands touch only the database: exported rows carry their question embeddings, so
importing them into a store of the same embedder runs no model (rows without one are embedded
with all-MiniLM-L6-v2). Servers on a PostgreSQL store see imported records at once (the
database announces them); a server on SQLite sees them after its next restart, when it adds
their vectors to its indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from safework.errors import SafeWorkError

from .db import redact_url
from .records import DEFAULT_ENCODER_NAME
from .store import MemoryStore

__all__ = ["LazyEmbedder", "add_parser", "default_memory_dir", "export", "import_", "stats"]

MINILM_DIM = 384  # all-MiniLM-L6-v2; written here so that `export` and `stats` never load torch


def default_memory_dir() -> Path:
    from safework.files import cache_dir

    return cache_dir() / "memory"


class LazyEmbedder:
    """The MiniLM embedder, loaded on the first ``encode`` (most imports never need it)."""

    name = DEFAULT_ENCODER_NAME
    dim = MINILM_DIM

    def encode(self, texts: list[str]) -> np.ndarray:
        from safework.engine.embedder import get_embedder

        return get_embedder().encode(texts)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "memory",
        help="export, import or inspect the correction memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="memory_command", required=True)

    e = sub.add_parser("export", help="write records as JSON lines")
    e.add_argument("--tenant", help="only this tenant's records (default: all)")
    e.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    _common(e)
    e.set_defaults(func=export)

    i = sub.add_parser("import", help="add records from a JSON-lines file")
    i.add_argument("file", help="JSON-lines file written by `export` ('-': standard input)")
    i.add_argument("--tenant", help="put every record under this tenant (default: each row's)")
    _common(i)
    i.set_defaults(func=import_)

    s = sub.add_parser("stats", help="records per tenant and the state of their indexes")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(s)
    s.set_defaults(func=stats)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-dir",
        type=Path,
        default=None,
        help="the store's folder (default: $SAFEWORK_CACHE/memory or ~/.cache/safework/memory)",
    )
    p.add_argument(
        "--memory-store",
        metavar="URL",
        default=None,
        help="a postgresql:// URL: the shared store of `safework serve --memory-store`",
    )


def _folder(args: argparse.Namespace, must_exist: bool) -> Path:
    folder = (args.memory_dir or default_memory_dir()).expanduser()
    if must_exist and args.memory_store is None and not (folder / "memory.sqlite3").is_file():
        raise SystemExit(f"safework memory: no memory store in {folder}")
    return folder


def _where(args: argparse.Namespace, folder: Path) -> str:
    """The store in messages: its folder, or its URL without the password."""
    return redact_url(args.memory_store) if args.memory_store else str(folder)


def _open(args: argparse.Namespace, folder: Path, encoder: Any) -> MemoryStore:
    return MemoryStore(folder, encoder, indexes=False, database=args.memory_store)


def export(args: argparse.Namespace) -> int:
    folder = _folder(args, must_exist=True)
    try:
        with _open(args, folder, None) as store:
            if args.output is None:
                count = _write_rows(store.export(args.tenant), sys.stdout)
            else:
                count = _export_to_file(store.export(args.tenant), args.output)
    except (SafeWorkError, ValueError) as e:
        raise SystemExit(f"safework memory export: {e}") from None
    where = args.output or "standard output"
    print(f"exported {count} records from {_where(args, folder)} to {where}", file=sys.stderr)
    return 0


def _write_rows(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    out.flush()
    return count


def _export_to_file(rows: Iterator[dict[str, Any]], path: Path) -> int:
    """Write through a temporary file and a rename: an interrupted export leaves no half file."""
    path = path.expanduser()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            count = _write_rows(rows, f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _read_rows(stream: IO[str], name: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as e:
            raise ValueError(f"{name} line {number} is not JSON ({e})") from None


def import_(args: argparse.Namespace) -> int:
    folder = _folder(args, must_exist=False)
    try:
        with _open(args, folder, LazyEmbedder()) as store:
            before = sum(store.counts().values())
            if args.file == "-":
                count = store.import_records(_read_rows(sys.stdin, "stdin"), args.tenant)
            else:
                with open(args.file, encoding="utf-8") as f:
                    count = store.import_records(_read_rows(f, args.file), args.tenant)
            after = sum(store.counts().values())
    except (SafeWorkError, ValueError, OSError) as e:
        raise SystemExit(f"safework memory import: {e}") from None
    print(f"imported {count} records into {_where(args, folder)} ({before} -> {after} records)")
    return 0


def stats(args: argparse.Namespace) -> int:
    folder = _folder(args, must_exist=True)
    try:
        with _open(args, folder, None) as store:
            report = store.stats()
    except SafeWorkError as e:
        raise SystemExit(f"safework memory stats: {e}") from None
    if args.json:
        out = {"folder": str(folder), "store": _where(args, folder), "tenants": report}
        print(json.dumps(out, indent=2))
        return 0
    print(f"memory store: {_where(args, folder)}")
    print(f"{'tenant':<32} {'records':>9}  {'index':<6} {'vectors':>9} {'deleted':>8}  state")
    for tenant, info in report.items():
        index = info["index"]
        print(
            f"{tenant[:32]:<32} {info['records']:>9}  {index['kind'] or '-':<6} "
            f"{index['vectors'] or 0:>9} {index['tombstones'] or 0:>8}  {index['state']}"
        )
    total = sum(info["records"] for info in report.values())
    print(f"{len(report)} tenants, {total} records")
    return 0
