"""Reading a local search corpus: a folder of ``.txt``, ``.md`` and ``.jsonl`` documents.

Files are found recursively, in a stable order; hidden files and folders are skipped. A ``.txt``
file is one document titled by its file name; a ``.md`` file is titled by its first heading;
each line of a ``.jsonl`` file is a document ``{"id", "title", "text", "url"?}``. Document ids
must be unique across the corpus. ``index.py`` indexes what this module reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from safework.errors import ConfigError

from .base import Document

__all__ = ["SUFFIXES", "corpus_files", "load_corpus"]

SUFFIXES = (".txt", ".md", ".jsonl")


def corpus_files(folder: Path) -> list[Path]:
    """The corpus files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(root) / f for f in sorted(files) if f.endswith(SUFFIXES) and not f.startswith(".")
        ]
    return found


_ATX = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")


def _markdown_title(text: str) -> str | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if match := _ATX.match(line):
            return match.group(1)
        if line.strip() and i + 1 < len(lines) and _SETEXT.match(lines[i + 1]):
            return line.strip()
    return None


def _read_jsonl(path: Path, rel: str) -> Iterator[Document]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = record["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{path}:{lineno}: not a document ({exc!r}); each line of a .jsonl corpus "
                    f'file must be {{"id": ..., "title": ..., "text": ..., "url": ...}}'
                ) from None
            doc_id = str(record.get("id") or f"{rel}:{lineno}")
            title = str(record.get("title") or doc_id)
            yield Document(doc_id, title, str(text), record.get("url") or None)


def _read_file(path: Path, rel: str) -> Iterator[Document]:
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path, rel)
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    title = (_markdown_title(text) if path.suffix == ".md" else None) or path.stem
    yield Document(rel, title, text)


def _read_file_checked(path: Path, rel: str) -> Iterator[Document]:
    try:
        yield from _read_file(path, rel)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc}); convert it or move it away") from None


def load_corpus(folder: Path, files: Sequence[Path] | None = None) -> list[Document]:
    """Every document of a corpus folder, in a stable order; ConfigError on duplicate ids."""
    folder = Path(folder)
    docs: list[Document] = []
    where: dict[str, str] = {}
    for path in files if files is not None else corpus_files(folder):
        rel = path.relative_to(folder).as_posix()
        for doc in _read_file_checked(path, rel):
            if doc.id in where:
                raise ConfigError(
                    f"document id {doc.id!r} appears in {where[doc.id]} and again in {rel}; "
                    f"ids must be unique across the corpus {folder}"
                )
            where[doc.id] = rel
            docs.append(doc)
    return docs
