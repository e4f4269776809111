"""Tests for ``safework.search.local`` and the modules under it (``documents``, ``index``):
loading a corpus folder, passages, BM25/dense/hybrid retrieval, deduplication by document,
``read``, and the on-disk index (reuse and rebuild).

Retrieval runs for real: ``bm25s``, FAISS and the cached all-MiniLM-L6-v2 (``~/.cache/safework``;
fetched once if missing). The test marked ``slow`` queries the built-in corpus index that
``make corpus`` builds.

Run: ``pytest tests/test_local_search.py`` (``-m 'not slow'`` to skip the built-in corpus).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from safework.engine.embedder import get_embedder
from safework.errors import ConfigError
from safework.search import index
from safework.search.base import BackendContext, DocumentNotFound, load_backend
from safework.search.documents import load_corpus
from safework.search.index import split_passages, tokenize
from safework.search.local import LocalBackend, LocalSettings, numbers_first, query_numbers

FILLER = (
    "The committee met again on Tuesday to review the quarterly budget and the plans for the "
    "new library wing. Several members asked for more time to read the proposals. "
)
LONG_ARTICLE = "# Lighthouses\n\n" + "\n\n".join(
    [
        "A lighthouse is a tower with a bright lamp that guides ships at night. " * 6,
        "The Fresnel lens, invented by Augustin Fresnel in 1822, focuses the lamp's light. " * 6,
        "Keepers lived in small cottages beside the tower and trimmed the wicks each evening. " * 6,
        "Modern lighthouses are automated and powered by solar panels and batteries. " * 6,
    ]
)
DOCS = {
    "lighthouses.md": LONG_ARTICLE,
    "notes/volcano.txt": (
        "Volcanoes erupt when magma rises through the crust. Mount Etna in Sicily is one of the "
        "most active volcanoes in Europe.\n\n" + FILLER
    ),
    "notes/.hidden/secret.txt": "This hidden file must never be indexed.",
    "recipes.md": "Bread\n=====\n\nKnead the dough, let it rise for an hour, then bake at 220 C.",
}
JSONL = [
    {
        "id": "python",
        "title": "Python (language)",
        "text": "Python is a programming language created by Guido van Rossum in 1991.",
        "url": "https://python.org",
    },
    {"id": "honeybee", "title": "Honeybee", "text": "Honeybees make honey and live in hives."},
    {"id": "chess", "title": "Chess", "text": "Chess is a board game for two players. " + FILLER},
]


def write_corpus(folder: Path) -> Path:
    for rel, text in DOCS.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    lines = "\n".join(json.dumps(d) for d in JSONL) + "\n"
    (folder / "misc.jsonl").write_text(lines, encoding="utf-8")
    return folder


class NoEmbedder:
    """Fails if asked to embed: proves a BM25-only backend never needs the model."""

    dim = 384
    name = "none"

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        raise AssertionError("the embedder should not be used")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def backend(corpus: Path) -> LocalBackend:
    return LocalBackend(corpus, name="test", embedder=get_embedder())


# --------------------------------------------------------------------------- passages and tokens


def test_short_text_is_one_passage() -> None:
    text = "One short paragraph.\n\nAnd another."
    assert split_passages(text, 120, 20) == [(0, len(text))]
    assert split_passages("   \n\n ", 120, 20) == []


def test_passages_break_at_paragraphs_overlap_and_cover_every_word() -> None:
    paragraphs = [" ".join(f"p{p}w{i}" for i in range(70)) for p in range(5)]  # 5 x 70 words
    text = "\n\n".join(paragraphs)
    spans = split_passages(text, passage_words=100, overlap_words=10)
    passages = [text[a:b].split() for a, b in spans]
    assert all(len(p) <= 125 for p in passages)
    # Every passage but the last ends at the end of a paragraph.
    assert all(p[-1].endswith("w69") for p in passages[:-1])
    # Consecutive passages share exactly the overlap.
    for prev, nxt in itertools.pairwise(passages):
        assert prev[-10:] == nxt[:10]
    covered = {w for p in passages for w in p}
    assert covered == set(text.split())


def test_passages_without_paragraphs_end_at_sentences() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(100))  # 500 words
    spans = split_passages(text, passage_words=100, overlap_words=0)
    assert len(spans) >= 4
    assert all(text[a:b].endswith(".") for a, b in spans)
    assert " ".join(text[a:b] for a, b in spans).split() == text.split()


def test_tokenize_lowercases_drops_stopwords_and_stems_plurals() -> None:
    assert tokenize("The Cats and the Puppies") == ["cat", "puppy"]
    assert tokenize("glass bus series") == ["glass", "bus", "sery"]  # the S-stemmer's limits
    assert tokenize("") == []


# --------------------------------------------------------------------------- loading a folder


def test_load_corpus_reads_md_txt_jsonl_and_skips_hidden(corpus: Path) -> None:
    docs = {d.id: d for d in load_corpus(corpus)}
    assert set(docs) == {"lighthouses.md", "notes/volcano.txt", "recipes.md"} | {
        d["id"] for d in JSONL
    }
    assert docs["lighthouses.md"].title == "Lighthouses"  # first ATX heading
    assert docs["recipes.md"].title == "Bread"  # setext heading
    assert docs["notes/volcano.txt"].title == "volcano"  # file name
    assert docs["python"].title == "Python (language)"
    assert docs["python"].url == "https://python.org"
    assert docs["honeybee"].url is None


def test_duplicate_ids_and_bad_jsonl_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "x", "text": "one"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "two"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'x' appears in a\.jsonl and again in b\.jsonl"):
        load_corpus(tmp_path)
    (tmp_path / "b.jsonl").write_text("not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"b\.jsonl:1: not a document"):
        load_corpus(tmp_path)


def test_non_utf8_jsonl_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "latin.jsonl").write_bytes(b'{"id": "x", "text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_corpus(tmp_path)


def test_jsonl_without_id_or_title_gets_defaults(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('\n{"text": "untitled"}\n', encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert (doc.id, doc.title, doc.text) == ("d.jsonl:2", "d.jsonl:2", "untitled")


# --------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Who created the Python programming language?", "python"),
        ("Fresnel lens invented in 1822", "lighthouses.md"),
        ("active volcano in Sicily", "notes/volcano.txt"),
        ("how long should bread dough rise", "recipes.md"),
    ],
)
def test_each_mode_finds_the_right_document(
    backend: LocalBackend, mode: str, query: str, expected: str
) -> None:
    (results,) = backend.search_sync([query], 3, mode=mode)
    assert results[0].id == expected


def test_results_are_documents_with_their_best_passage(backend: LocalBackend) -> None:
    assert len(backend.index) > len(backend.index.docs)  # the long article has many passages
    (results,) = backend.search_sync(["lighthouse keepers trimmed the wicks"], 10)
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids)) == len(backend.index.docs)  # one entry per document
    top = results[0]
    assert top.id == "lighthouses.md"
    assert top.title == "Lighthouses"
    assert "wicks" in top.snippet
    assert len(top.snippet.split()) <= 150
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_search_many_matches_single_searches(backend: LocalBackend) -> None:
    queries = ["honey", "board game for two", "solar powered towers"]
    batched = backend.search_sync(queries, 2)
    assert batched == [backend.search_sync([q], 2)[0] for q in queries]
    assert backend.search_sync(queries, 0) == [[], [], []]


async def test_async_search_and_read(backend: LocalBackend) -> None:
    results = await backend.search("Guido van Rossum", 1)
    assert [r.id for r in results] == ["python"]
    assert results[0].url == "https://python.org"
    doc = await backend.read("python")
    assert doc.text.startswith("Python is a programming language")
    many = await backend.search_many(["honey", "chess"], 1)
    assert [[r.id for r in rs] for rs in many] == [["honeybee"], ["chess"]]


async def test_read_unknown_id_raises(backend: LocalBackend) -> None:
    with pytest.raises(DocumentNotFound, match="no document 'nope'"):
        await backend.read("nope")


def test_bm25_only_query_without_matching_terms_is_empty(backend: LocalBackend) -> None:
    assert backend.search_sync(["zzzz qqqq"], 3, mode="bm25") == [[]]


def test_numbers_first_moves_passages_that_state_every_number_and_keeps_order() -> None:
    texts = {1: "Atomic number: 108", 2: "Atomic number: 51", 3: "In 1,000 years: 51 and 7", 4: "x"}
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)]
    assert query_numbers("which element has atomic number 51?") == {"51"}
    assert query_numbers("1,000 years and 167.26 grams") == {"1,000", "167.26"}
    assert query_numbers("atomic number") == frozenset()
    assert numbers_first(ranked, frozenset({"51"}), texts.get) == [
        (2, 0.8),
        (3, 0.7),
        (1, 0.9),
        (4, 0.6),
    ]
    assert numbers_first(ranked, frozenset({"51", "1,000"}), texts.get)[0] == (3, 0.7)
    assert numbers_first(ranked, frozenset({"99"}), texts.get) == ranked  # nobody states it


ELEMENTS = {
    **{108: "Hassium", 110: "Darmstadtium", 26: "Iron", 51: "Antimony", 92: "Uranium"},
    **{15: "Phosphorus", 79: "Gold", 47: "Silver", 29: "Copper", 8: "Oxygen", 6: "Carbon"},
    1: "Hydrogen",
}
RECORDS = [
    *(
        {"id": f"element-{n}", "title": name, "text": f"Symbol: {name[:2]} Atomic number: {n}"}
        for n, name in ELEMENTS.items()
    ),
    {
        "id": "atomic-number",
        "title": "Atomic number",
        "text": "The atomic number of a chemical element is the number of protons in its "
        "nucleus; the atomic number identifies the element. " * 3,
    },
]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_a_number_in_the_query_finds_the_record_that_states_it(tmp_path: Path, mode: str) -> None:
    """Twelve near-identical records: dense vectors cannot tell the numbers apart, so every
    mode relies on the query's number being exact."""
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS))
    backend = LocalBackend(folder, embedder=get_embedder())
    queries = ["atomic number 51", "Which element has atomic number 92?", "element number 6"]
    found = [hits[0].title for hits in backend.search_sync(queries, 3, mode=mode)]
    assert found == ["Antimony", "Uranium", "Carbon"]


# --------------------------------------------------------------------------- the stored index


def test_index_is_reused_then_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c")
    first = LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    assert first.index.built == ["passages", "bm25"]
    assert (folder / ".safework-index" / "manifest.json").is_file()
    again = LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    assert again.index.built == []
    changed = folder / "notes" / "volcano.txt"
    changed.write_text("Geysers in Iceland spout hot water.", encoding="utf-8")
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    rebuilt = LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    assert rebuilt.index.built == ["passages", "bm25"]
    assert rebuilt.search_sync(["geysers Iceland"], 1)[0][0].id == "notes/volcano.txt"


def test_dense_part_is_added_when_first_needed(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c")
    LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    hybrid = LocalBackend(folder, embedder=get_embedder())
    assert hybrid.index.built == ["dense"]  # passages and BM25 were reused
    assert hybrid.index.manifest["dense"]["kind"] == "flat"
    assert LocalBackend(folder, embedder=get_embedder()).index.built == []


def test_changed_tokenizer_rebuilds_bm25_only(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c")
    LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    manifest_path = folder / ".safework-index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["bm25"]["tokenizer"] = "an-older-tokenizer"
    manifest_path.write_text(json.dumps(manifest))
    backend = LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    assert backend.index.built == ["bm25"]
    assert backend.search_sync(["honeybees"], 1)[0][0].id == "honeybee"


def test_changed_passage_settings_rebuild(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c")
    LocalBackend(folder, settings=LocalSettings(mode="bm25"), embedder=NoEmbedder())
    finer = LocalSettings(mode="bm25", passage_words=40, overlap_words=5)
    backend = LocalBackend(folder, settings=finer, embedder=NoEmbedder())
    assert backend.index.built == ["passages", "bm25"]


def test_hnsw_index_past_the_threshold(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c")
    settings = LocalSettings(mode="dense", hnsw_threshold=1)
    backend = LocalBackend(folder, settings=settings, embedder=get_embedder())
    assert backend.index.manifest["dense"]["kind"] == "hnsw"
    assert backend.search_sync(["honeybees and hives"], 1)[0][0].id == "honeybee"


def test_read_only_corpus_keeps_its_index_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index.os, "access", lambda path, mode: False)
    where = index.index_dir_for(tmp_path / "corpus", cache=tmp_path / "cache")
    assert where.parent == tmp_path / "cache" / "indexes"
    assert where.name.startswith("corpus-")


# --------------------------------------------------------------------------- the loader


def test_load_local_with_options(corpus: Path) -> None:
    ctx = BackendContext(options={"mode": "bm25", "region": "de-de"})  # region: another backend's
    backend = load_backend(f"local:{corpus}", ctx=ctx)
    assert isinstance(backend, LocalBackend)
    assert backend.name == "local"
    assert backend.settings.mode == "bm25"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fuzzy"}, "use one of bm25, dense, hybrid"),
        ({"passage_words": "many"}, "expected an integer"),
        ({"overlap_words": "90"}, "under half of passage_words"),
    ],
)
def test_bad_options_are_config_errors(corpus: Path, options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_backend(f"local:{corpus}", ctx=BackendContext(options=options))


def test_missing_or_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        load_backend(f"local:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match=r"no \.txt, \.md or \.jsonl files"):
        load_backend(f"local:{tmp_path / 'empty'}")


@pytest.mark.slow
def test_builtin_corpus_finds_element_documents() -> None:
    """The built-in index (``make corpus``) puts the element's own document first, for a
    number too (before numbers were exact, hybrid ranked other element records above it)."""
    backend = load_backend("local:builtin")
    questions = {
        "What is the atomic number of tungsten?": "element:tungsten",
        "Which chemical element has the symbol Fe?": "element:iron",
        "What is the chemical symbol of potassium?": "element:potassium",
        "Which chemical element has the atomic number 51?": "element:antimony",
        "atomic number 92": "element:uranium",
    }
    results = backend.search_sync(list(questions), 3) if isinstance(backend, LocalBackend) else []
    assert [r[0].id for r in results] == list(questions.values())
