"""The sources of the built-in search corpus, and how each becomes plain-text documents.

Three real, freely licensed sources, each pinned by sha256 and fetched once into the cache
(``engine/fetch.py`` for the PyPI wheel, ``engine/debian.py`` for the Debian packages):

- 106 English Wikipedia articles (CC BY-SA), a MediaWiki XML dump slice shipped as test data in
  the ``gensim`` 4.4.0 wheel. ``wiki_documents`` reads it with ``iterparse`` and ``clean_wikitext``
  turns the markup into readable text: templates, tables, references, comments, files and
  categories go; link labels, headings and list items stay. A simplification, not a full
  MediaWiki renderer: infobox facts (inside templates) are lost.
- Jay Kominek's Elements Database (public domain), Debian ``dict-elements``: one entry per
  element with ``Symbol:``, ``Atomic number:`` and ``Atomic weight:`` lines, then a
  description. ``element_documents``; the QA in ``corpus.py`` is generated from these.
- FOLDOC, the Free On-line Dictionary of Computing (GFDL), Debian ``dict-foldoc``: ~15k
  headwords for ~12k entries. ``foldoc_documents``.

Both dictionaries are in dictd format (``read_dictd``). A document is a dict
``{"id", "title", "text", "source", "url"?}``; ``corpus.py`` writes them as JSONL.
"""

from __future__ import annotations

import bz2
import gzip
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safework.engine.debian import DebAsset
from safework.engine.fetch import WheelAsset

__all__ = [
    "ELEMENTS_DEB",
    "FOLDOC_DEB",
    "WIKI_MEMBER",
    "WIKI_WHEEL",
    "clean_wikitext",
    "dictd_decode_number",
    "element_documents",
    "foldoc_documents",
    "read_dictd",
    "wiki_documents",
]

Doc = dict[str, Any]

WIKI_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
WIKI_WHEEL = WheelAsset(
    package="gensim",
    version="4.4.0",
    members={WIKI_MEMBER: "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"},
    license="CC BY-SA 3.0 (Wikipedia article text); LGPL-2.1 (gensim, not used)",
    source_note=(
        "A shortened slice of the English Wikipedia dump of 2016 (pages 10-30302), shipped by "
        "gensim as test data. Article text by Wikipedia contributors, CC BY-SA 3.0."
    ),
)
ELEMENTS_DEB = DebAsset(
    package="dict-elements",
    version="20001107-a-9.1",
    filename="pool/main/d/dict-elements/dict-elements_20001107-a-9.1_all.deb",
    sha256="c840ae31017fca01e2d56e178b8d18ade279d24f41d7a285c6150a233f730ffa",
    members={
        "usr/share/dictd/elements.dict.dz": (
            "0ec7076f232eefe997a8e7215b7932411e4eb4d4f15aaa36c20229b532b5ee8b"
        ),
        "usr/share/dictd/elements.index": (
            "fe6025a9c45073cb13769daa43c91bab0c058a7555f8c922f39c76624ae2dccc"
        ),
        "usr/share/doc/dict-elements/copyright": (
            "28f826a16de66feeef2550531b3a66afc5502f7bcc7e99070d2838db9c5c383a"
        ),
    },
    license="public domain (the Elements Database by Jay F. Kominek)",
    source_note="Debian package dict-elements: the Elements Database in dictd format.",
)
FOLDOC_DEB = DebAsset(
    package="dict-foldoc",
    version="20230119-1",
    filename="pool/main/d/dict-foldoc/dict-foldoc_20230119-1_all.deb",
    sha256="745cbedb55c2da609cc88ee0284e9d11a67a11ae3709daf7bad0e895ac3294c3",
    members={
        "usr/share/dictd/foldoc.dict.dz": (
            "f3476f455be35c3301a4dfe5406d74854d0b992bc49f4cd1737f779c99e0178f"
        ),
        "usr/share/dictd/foldoc.index": (
            "35d0d990bba9f6c314395f1dda40e32ad22d14b9ab032c0e58bcebdf6b845efc"
        ),
        "usr/share/doc/dict-foldoc/copyright": (
            "fbe6896429160068bd21889fc5305c8f7a905b16b3a39bd963864c6300607d14"
        ),
    },
    license="GFDL 1.1 or later (FOLDOC, editor Denis Howe)",
    source_note=(
        "Debian package dict-foldoc: The Free On-line Dictionary of Computing, "
        "https://foldoc.org/, Editor Denis Howe, in dictd format."
    ),
)

# --------------------------------------------------------------------------- dictd

_DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DICTD_VALUE = {c: i for i, c in enumerate(_DICTD_DIGITS)}


def dictd_decode_number(text: str) -> int:
    """A dictd index number: base 64, most significant digit first, alphabet A-Za-z0-9+/.

    >>> dictd_decode_number("A"), dictd_decode_number("BA"), dictd_decode_number("Bd/")
    (0, 64, 6015)
    """
    value = 0
    for char in text:
        value = value * 64 + _DICTD_VALUE[char]
    return value


def read_dictd(index: Path, data: Path) -> Iterator[tuple[list[str], str]]:
    """The entries of a dictd database: ``(headwords, entry text)``, in index order.

    Headwords that point at the same entry are grouped (FOLDOC files ``TTS`` and ``Text To
    Speech`` under one entry); the ``00-database-*`` meta entries are skipped. ``.dict.dz``
    is dictzip, which is gzip with an index in a header field, so ``gzip`` reads it whole.
    Entries are UTF-8, with a Latin-1 fallback for the few older ones.
    """
    raw = data.read_bytes()
    blob = gzip.decompress(raw) if data.suffix == ".dz" else raw
    grouped: dict[tuple[int, int], list[str]] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00database") or parts[0].startswith("00-"):
            continue
        span = (dictd_decode_number(parts[1]), dictd_decode_number(parts[2]))
        grouped.setdefault(span, []).append(parts[0])
    for (offset, length), headwords in grouped.items():
        chunk = blob[offset : offset + length]
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text = chunk.decode("latin-1")
        yield headwords, text


def _reflow(lines: list[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs (blank lines separate them)."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


_XREF = re.compile(r"\{([^{}]*)\}")
_ELEMENT_FIELD = re.compile(r"^(Symbol|At(?:o)?mic (?:number|weight)|Weight):\s*(.*)$", re.I)


def element_documents(index: Path, data: Path) -> list[Doc]:
    """One document per Elements Database entry: the field lines, then the description.

    ``{aluminum}``-style cross references lose their braces. The entry's own typos (``Atmic
    weight`` for the superheavy elements) are kept as written; ``corpus.py`` parses around them.
    """
    docs: list[Doc] = []
    for headwords, entry in read_dictd(index, data):
        lines = _XREF.sub(r"\1", entry).splitlines()
        title = lines[0].strip() if lines and lines[0].strip() else headwords[0]
        fields = [line.strip() for line in lines[1:] if _ELEMENT_FIELD.match(line.strip())]
        body = [line for line in lines[1:] if not _ELEMENT_FIELD.match(line.strip())]
        text = "\n".join(fields)
        description = "\n\n".join(_reflow(body))
        text = f"{text}\n\n{description}" if text and description else text or description
        docs.append(
            {
                "id": f"element:{headwords[0].lower().replace(' ', '_')}",
                "title": title[:1].upper() + title[1:],
                "text": text,
                "source": "elements",
            }
        )
    return docs


def foldoc_documents(index: Path, data: Path) -> list[Doc]:
    """One document per FOLDOC entry: title = the entry's first line, other names below it."""
    docs: list[Doc] = []
    seen: dict[str, int] = {}
    for _headwords, entry in read_dictd(index, data):
        lines = entry.splitlines()
        blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        names = [line.strip() for line in lines[:blank] if line.strip()]
        if not names:
            continue
        body = _reflow([_XREF.sub(r"\1", line) for line in lines[blank:]])
        if len(names) > 1:
            body.insert(0, "Also: " + ", ".join(names[1:]) + ".")
        key = names[0].replace(" ", "_")
        seen[key] = seen.get(key, 0) + 1
        doc_id = f"foldoc:{key}" if seen[key] == 1 else f"foldoc:{key}_({seen[key]})"
        docs.append(
            {
                "id": doc_id,
                "title": names[0],
                "text": "\n\n".join(body),
                "source": "foldoc",
                "url": "https://foldoc.org/" + names[0].replace(" ", "+"),
            }
        )
    return docs


# --------------------------------------------------------------------------- wikitext

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_REF = re.compile(r"<ref\b[^>]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_DROP_TAGS = re.compile(
    r"<(gallery|timeline|imagemap|math|score|hiero|chem)\b[^>]*>.*?</\1\s*>", re.S | re.I
)
_TAG = re.compile(r"</?[a-zA-Z][^>]*?/?>")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_BOLD_ITALIC = re.compile(r"'{2,5}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_LIST = re.compile(r"^[*#:;]+\s*")
_MAGIC = re.compile(r"__[A-Z]+__")
_EMPTY_PARENS = re.compile(r" ?\((?:[\s,;:]*)\)")  # left by removed pronunciation templates
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
_INTERWIKI = re.compile(r"^:?[a-z]{2,3}(?:-[a-z]+)?:")
_SKIP_SECTIONS = frozenset(
    {"references", "external links", "see also", "further reading", "notes", "bibliography"}
    | {"sources", "footnotes", "citations", "notes and references"}
)


def _strip_blocks(text: str) -> str:
    """Remove ``{{templates}}`` and ``{| tables |}``, nested in each other to any depth.

    An opener that is never closed is dropped alone (its two characters), so one stray ``{{``
    does not swallow the rest of the article.
    """
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("{{", "{|"):
            stack.append(("}}" if pair == "{{" else "|}", i))
            i += 2
        elif stack and pair == stack[-1][0]:
            stack.pop()
            i += 2
        else:
            if not stack:
                out.append(text[i])
            i += 1
        if i >= len(text) and stack:  # unclosed: drop the outermost opener, rescan after it
            i = stack[0][1] + 2
            stack.clear()
    return "".join(out)


def _link_text(inner: str) -> str:
    """What ``[[inner]]`` shows as text: the label, or nothing for files and categories."""
    target = inner.split("|", 1)[0].strip().lower()
    if target.startswith(_DROP_LINK_PREFIXES) or _INTERWIKI.match(target):
        return ""
    return inner.rsplit("|", 1)[-1] if "|" in inner else inner.lstrip(":")


def _replace_links(text: str) -> str:
    """``[[a|b]]`` -> ``b``, ``[[a]]`` -> ``a``; file and category links (with nested links in
    their captions) vanish."""
    while True:
        start = text.rfind("[[")  # innermost-last: nested links resolve from the inside out
        if start < 0:
            return text
        end = text.find("]]", start)
        if end < 0:
            return text[:start] + text[start + 2 :]
        text = text[:start] + _link_text(text[start + 2 : end]) + text[end + 2 :]


def clean_wikitext(markup: str) -> str:
    """Readable plain text from MediaWiki markup: paragraphs separated by blank lines.

    >>> clean_wikitext("{{Infobox|a={{b}}}}'''Ada''' is a [[programming language|language]]."
    ...                "<ref>x</ref>\\n\\n== History ==\\nMade in [[1980]].")
    'Ada is a language.\\n\\nHistory\\n\\nMade in 1980.'
    """
    text = _COMMENT.sub("", markup)
    text = _REF.sub("", text)
    text = _DROP_TAGS.sub("", text)
    text = _strip_blocks(text)
    text = _replace_links(text)
    text = _EXTERNAL.sub(lambda m: m.group(1) or "", text)
    text = _TAG.sub("", text)
    text = _MAGIC.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    paragraphs: list[str] = []
    current: list[str] = []
    skipping = False

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in text.splitlines():
        line = re.sub(r"[ \t]+", " ", _EMPTY_PARENS.sub("", raw)).strip()
        heading = _HEADING.match(line)
        if heading:
            flush()
            skipping = heading.group(2).lower() in _SKIP_SECTIONS
            if not skipping and heading.group(2):
                paragraphs.append(heading.group(2))
            continue
        if skipping:
            continue
        if not line:
            flush()
        elif _LIST.match(line):
            flush()
            item = _LIST.sub("", line)
            if item:
                paragraphs.append(item)
        else:
            current.append(line)
    flush()
    return "\n\n".join(p for p in paragraphs if re.search(r"\w", p))


def wiki_documents(dump: Path) -> list[Doc]:
    """The articles of a bz2 MediaWiki XML dump: main namespace, redirects skipped."""
    docs: list[Doc] = []
    with bz2.open(dump, "rb") as fh:
        page: dict[str, str] = {}
        for _event, elem in ET.iterparse(fh, events=("end",)):
            tag = elem.tag.rsplit("}", 1)[-1]
            if tag in ("title", "ns", "text"):
                page[tag] = elem.text or ""
            elif tag == "redirect":
                page["redirect"] = "1"
            elif tag == "page":
                doc = _wiki_document(page)
                if doc is not None:
                    docs.append(doc)
                page = {}
                elem.clear()
    return docs


def _wiki_document(page: dict[str, str]) -> Doc | None:
    markup = page.get("text", "")
    if page.get("ns") != "0" or "redirect" in page or markup.lstrip().upper().startswith("#REDIR"):
        return None
    text = clean_wikitext(markup)
    if not text:
        return None
    key = page["title"].replace(" ", "_")
    return {
        "id": f"wiki:{key}",
        "title": page["title"],
        "text": text,
        "source": "wikipedia",
        "url": f"https://en.wikipedia.org/wiki/{key}",
    }
