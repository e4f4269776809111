"""Tests for the search cold start: ``training/search_qa.py`` (questions, none of them
evaluation), ``training/search_cot.py`` (transcripts through the server's loop on the real
``local:builtin`` backend), the ``masked`` spans in ``sft_data`` and the ``search_*`` sizes of
``safework-train data``.

Retrieval runs for real on the cached built-in corpus and its index (``make corpus``) with the
cached all-MiniLM-L6-v2; tests skip when the corpus cannot be had. Small slices only: a
transcript costs about a second of embedding on two CPU cores.

Run: ``pytest tests/test_search_cot.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from safework.engine.fetch import FetchError
from safework.errors import ConfigError
from safework.files import cache_dir
from safework.search import tags
from safework.search.answers import supported_by
from safework.search.base import SearchBackend, load_backend
from safework.search.corpus import (
    element_qa,
    ensure_builtin_corpus,
    iter_corpus_documents,
    split_qa,
)
from safework.search.prompts import INSTRUCTIONS
from safework.search.verbal import classify, wording_for
from safework.training.cot_texts import split_think
from safework.training.data import cot_row_problem
from safework.training.data_config import DATA_KEYS, SEARCH_KINDS, DataConfig
from safework.training.rows import quotas
from safework.training.search_cot import (
    CONFIDENCE,
    PICK_ORDER,
    SEARCH_MIX,
    UNSURE_CONFIDENCE,
    UNSURE_KINDS,
    Transcript,
    pick_questions,
    write_transcript,
)
from safework.training.search_qa import (
    HELD_OUT_DOCS,
    KINDS,
    SearchQuestion,
    element_questions,
    fit_element_items,
    prose_questions,
    search_questions,
)
from safework.training.sft_data import IGNORE_INDEX, encode_conversation

REAL_CACHE = cache_dir()
"""The cache at import time (other test modules point ``SAFEWORK_CACHE`` elsewhere)."""


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    try:
        return list(iter_corpus_documents(ensure_builtin_corpus(REAL_CACHE)))
    except FetchError as exc:
        pytest.skip(f"the built-in corpus is not cached and cannot be fetched: {exc}")


@pytest.fixture(scope="module")
def pools(documents: list[dict[str, Any]]) -> dict[str, list[SearchQuestion]]:
    fit = fit_element_items(ensure_builtin_corpus(REAL_CACHE))
    return search_questions(documents, n_sums=20, seed=0, elements=fit)


@pytest.fixture(scope="module")
def backend(documents: list[dict[str, Any]]) -> SearchBackend:
    from safework.search.base import BackendContext

    return load_backend("local:builtin", ctx=BackendContext(cache=REAL_CACHE))


@pytest.fixture(scope="module")
def transcripts(pools: dict[str, list[SearchQuestion]], backend: SearchBackend) -> list[Transcript]:
    """Seven transcripts: abbreviations and a year (retrieve_first on and off), a sum, common
    knowledge with no search at all, two element records (retrieve_first on and off)."""
    from safework.engine.embedder import get_embedder

    encoder = get_embedder(REAL_CACHE)
    by_id = {q.item.id: q for kind in pools.values() for q in kind}
    plan = [
        ("foldoc:Computer_Software_Configuration_Item#acronym", False),
        ("foldoc:Simplified_Multicast_Routing_Protocol#acronym", True),
        ("wiki:Abraham_Lincoln#died", True),
        ("common:0", False),
        (pools["direct"][-1].item.id, True),
        (pools["element"][0].item.id, True),
        (pools["element"][5].item.id, False),
    ]

    async def write() -> list[Transcript]:
        return [
            await write_transcript(by_id[i], backend, encoder, retrieve_first=first)
            for i, first in plan
        ]

    return asyncio.run(write())


def _model_text(transcript: Transcript) -> str:
    """The assistant content less its masked spans: what the model itself wrote."""
    message = transcript.messages[-1]
    content, pieces, at = message["content"], [], 0
    for lo, hi in message["masked"]:
        pieces.append(content[at:lo])
        at = hi
    return "".join([*pieces, content[at:]])


# --------------------------------------------------------------------------- questions


def test_questions_are_not_evaluation_and_answers_are_in_one_document(
    documents: list[dict[str, Any]], pools: dict[str, list[SearchQuestion]]
) -> None:
    items = element_qa(ensure_builtin_corpus(REAL_CACHE))
    _fit, held_out = split_qa(items, 0.5, seed=0)  # the half `safework-train eval` scores
    evaluation = {item.question for item in held_out}
    questions = [q for kind in pools.values() for q in kind]
    assert len(pools["acronym"]) > 300
    assert len(pools["year"]) >= 10
    assert not {q.item.question for q in questions} & evaluation
    assert not {q.item.doc_id for q in questions} & {item.doc_id for item in held_out}
    element_docs = [q for q in questions if q.item.doc_id.startswith("element:")]
    assert [q for q in element_docs if q.item.kind != "prose"] == pools["element"]
    docs = {d["id"]: d for d in documents}
    for q in pools["acronym"][::25] + pools["year"] + pools["element"][::7]:
        doc = docs[q.item.doc_id]
        assert supported_by(q.item.answer, f"{doc['title']}\n{doc['text']}"), q.item.id


def test_pick_questions_is_seeded_disjoint_and_fills_short_kinds(
    pools: dict[str, list[SearchQuestion]],
) -> None:
    sizes = quotas(20, SEARCH_MIX), quotas(200, SEARCH_MIX)
    dev, train = pick_questions(pools, *sizes, seed=3)
    assert (len(dev), len(train)) == (20, 200)
    assert pick_questions(pools, *sizes, seed=3) == (dev, train)
    kinds_in_order = [q.item.kind for q in train]  # the mix's order, acronym last, every run
    assert kinds_in_order[-1] == "acronym"
    assert kinds_in_order.index("direct") > kinds_in_order.index("year")
    assert pick_questions(pools, *sizes, seed=4) != (dev, train)
    dev_docs = {q.item.doc_id or q.item.id for q in dev}
    assert not dev_docs & {q.item.doc_id or q.item.id for q in train}
    kinds = [q.item.kind for q in train]
    assert kinds.count("year") < 20 <= kinds.count("direct")  # year's shortfall -> acronym
    with pytest.raises(ValueError, match="search questions"):
        pick_questions(pools, quotas(10, SEARCH_MIX), quotas(10_000, SEARCH_MIX), seed=0)


def test_prose_questions_read_their_answer_out_of_a_sentence(
    documents: list[dict[str, Any]], pools: dict[str, list[SearchQuestion]]
) -> None:
    prose = pools["prose"]
    assert len(prose) > 150
    by_id = {q.item.id: q for q in prose}
    assert by_id["wiki:Alaska#capital"].item.answer == "Juneau"
    assert by_id["wiki:Algeria#capital"].item.answer == "Algiers"
    assert by_id["wiki:Andorra#capital"].item.answer == "Andorra la Vella"
    assert by_id["foldoc:ADVSYS#who"].item.question == "In computing, who designed ADVSYS?"
    assert by_id["foldoc:ADVSYS#who"].item.answer == "David Betz"
    assert by_id["foldoc:ADVSYS#when"].item.answer == "1986"
    assert "wiki:Foreign_relations_of_Angola#capital" not in by_id  # DR Congo's capital
    assert by_id["wiki:A_Modest_Proposal#author"].item.answer == "Jonathan Swift"
    fit = {item.doc_id for item in fit_element_items(ensure_builtin_corpus(REAL_CACHE))}
    records = [q for q in prose if q.item.doc_id.startswith("element:")]
    assert len(records) > 20
    assert {q.item.doc_id for q in records} <= fit  # never an element evaluation asks about
    assert not {q.item.doc_id for q in prose} & HELD_OUT_DOCS  # the served check's facts
    assert not any(i.startswith("foldoc:ALEPH#") for i in by_id)  # two senses: ambiguous
    assert {q.item.id.rsplit("#", 1)[1] for q in prose} == {"who", "when", "capital", "author"}
    docs = {d["id"]: d for d in documents}
    for q in prose:
        doc = docs[q.item.doc_id]
        assert supported_by(q.item.answer, doc["text"]), q.item.id  # stated in its prose
        assert q.item.answer.lower() != q.item.subject.lower()  # echoing the subject is wrong
        assert not q.item.is_correct(q.item.subject), q.item.id
        assert q.item.kind == "prose"


def questions_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {q.item.id: q.item.question for q in prose_questions(docs)}


def test_prose_patterns_on_written_entries() -> None:
    def foldoc(title: str, text: str) -> dict[str, Any]:
        return {"id": f"foldoc:{title}", "title": title, "text": text, "source": "foldoc"}

    def wiki(title: str, text: str) -> dict[str, Any]:
        return {"id": f"wiki:{title}", "title": title, "text": text, "source": "wikipedia"}

    docs = [
        foldoc("Quill", "<language> A language designed by Ada Marsh at Acme Labs in 1983."),
        foldoc("Pebble", "<tool> A tool written by Tom Reed and Ann Bell in 1990."),
        foldoc("Slate", "<computer> A workstation developed by Bob Hill, first sold in 1986/1987."),
        foldoc("Twofold", "1. <language> A language developed by Cal Ray.\n\n2. <tool> A tool."),
        foldoc("Echo Labs", "<company> A firm founded by Echo Labs Staff in 1970."),
        wiki("Ruritania", "Ruritania is a country. Its capital and largest city is Strelsau."),
        wiki("Relations of Ruritania", "A delegation went to Graustark's capital Edelweiss."),
        wiki("Osterlich", "Osterlich is a state. The capital of Osterlich is Neu Wien."),
        wiki("Dune Days (book)", "Dune Days is a novel by Ida Lane Moss. It sold well."),
        {
            "id": "element:ferrum",
            "title": "Ferrum",
            "text": "Symbol: Fm\n\nA metal. Discovered in 1801 by J.K. Stahl of Bonn.",
            "source": "elements",
        },
        {
            "id": "element:plumbum",
            "title": "Plumbum",
            "text": "Symbol: Pb\n\nA metal. First isolated by Reich and Richter in 1850.",
            "source": "elements",
        },
    ]
    got = {q.item.id: q.item.answer for q in prose_questions(docs)}
    assert got == {
        "foldoc:Quill#who": "Ada Marsh",
        "foldoc:Quill#when": "1983",
        "foldoc:Pebble#who": "Tom Reed",
        "foldoc:Pebble#when": "1990",
        "foldoc:Slate#who": "Bob Hill",  # "1986/1987" is no single year
        "wiki:Ruritania#capital": "Strelsau",
        "wiki:Osterlich#capital": "Neu Wien",
        "wiki:Dune Days (book)#author": "Ida Lane Moss",
        "element:ferrum#who": "J.K. Stahl",
        "element:ferrum#when": "1801",
    }  # plumbum: two people named by surname, so no one answer
    assert questions_of(docs)["element:ferrum#who"] == "Who discovered ferrum?"
    assert questions_of(docs)["wiki:Dune Days (book)#author"] == "Who wrote Dune Days?"
    questions = {q.item.id: q for q in prose_questions(docs)}
    assert questions["foldoc:Pebble#who"].item.question == "In computing, who wrote Pebble?"
    assert questions["foldoc:Quill#when"].asked == "the year Quill was designed"


def test_a_prose_transcript_answers_from_the_sentence(
    pools: dict[str, list[SearchQuestion]], backend: SearchBackend
) -> None:
    from safework.engine.embedder import get_embedder

    by_id = {q.item.id: q for q in pools["prose"]}
    question = by_id["foldoc:ADVSYS#who"]
    t = asyncio.run(write_transcript(question, backend, get_embedder(REAL_CACHE)))
    assert t.outcome in ("found", "read")
    assert t.correct
    assert t.answer == "David Betz"
    assert "<answer>David Betz</answer>" in _model_text(t)
    # a read excerpt: the quote is the source's sentence, never the loop's tags or headings
    # (quoting "<information>" once sent the loop to its fallback)
    read = asyncio.run(
        write_transcript(by_id["wiki:Animalia_(book)#author"], backend, get_embedder(REAL_CACHE))
    )
    assert read.outcome == "read"
    assert read.correct
    quote = _model_text(read).split('says: "')[1].split('"')[0]
    assert "Graeme Base" in quote
    assert "<" not in quote
    assert "(id:" not in quote


def test_search_mix_picks_the_kinds_it_names(pools: dict[str, list[SearchQuestion]]) -> None:
    mix = {"acronym": 0.3, "prose": 0.3, "element": 0.2, "direct": 0.2}
    dev, train = pick_questions(pools, quotas(10, mix), quotas(100, mix), seed=0)
    pool_of = {q.item.id: kind for kind, questions in pools.items() for q in questions}
    kinds = [pool_of[q.item.id] for q in train]
    assert kinds.count("prose") == 30
    assert kinds.count("year") == 0
    assert {pool_of[q.item.id] for q in dev} <= set(mix)
    assert not {q.item.doc_id for q in dev if q.item.doc_id} & {
        q.item.doc_id for q in train if q.item.doc_id
    }


def test_search_mix_order_does_not_change_the_questions(
    pools: dict[str, list[SearchQuestion]],
) -> None:
    # a YAML dump that sorts keys must give the same rows as the recipe's own order
    assert sorted(PICK_ORDER) == sorted(KINDS)
    assert PICK_ORDER[-1] == "acronym"
    mix = {"acronym": 0.2, "prose": 0.2, "element": 0.3, "year": 0.1, "direct": 0.2}
    picks = []
    for order in (list(mix), sorted(mix), sorted(mix, reverse=True)):
        weights = {k: mix[k] for k in order}
        dev, train = pick_questions(pools, quotas(10, weights), quotas(60, weights), seed=3)
        picks.append(([q.item.id for q in dev], [q.item.id for q in train]))
    assert picks[0] == picks[1] == picks[2]


def test_search_mix_is_checked_and_recorded_only_when_set() -> None:
    assert SEARCH_KINDS == KINDS
    assert "search_mix" not in DataConfig().data_key()
    config = DataConfig(search_train=5, search_mix={"acronym": 1, "prose": 1})
    config.check()
    assert config.data_key()["search_mix"] == {"acronym": 1.0, "prose": 1.0}
    for bad, match in (
        ({"prose": 1.0}, "includes acronym"),
        ({"acronym": 1.0, "riddle": 1.0}, "unknown kind"),
        ({"acronym": 1.0, "prose": 0}, "search_mix.prose"),
    ):
        with pytest.raises(ConfigError, match=match):
            DataConfig(search_train=5, search_mix=bad).check()


# --------------------------------------------------------------------------- transcripts


def test_transcripts_have_the_loops_shape_and_honest_confidence(
    transcripts: list[Transcript],
) -> None:
    outcomes = [t.outcome for t in transcripts]
    assert outcomes[:2] == ["found", "found"]
    assert outcomes[3:5] == ["known", "known"]
    assert outcomes[5:] == ["found", "found"]  # a record states the value: read off, not known
    assert outcomes[2] in ("found", "read")
    for t in transcripts:
        system, user, assistant = t.messages
        assert system == {"role": "system", "content": INSTRUCTIONS}
        assert user["content"] == t.question.item.question
        assert split_think(assistant["content"]) is not None
        own = _model_text(t)
        assert "<information>" not in own
        assert tags.DATA_NOTE not in own
        assert own.rstrip().endswith(f"<confidence>{t.confidence}</confidence>")
        assert tags.parse_confidence(own) == t.confidence / 10
        if t.question.item.kind in UNSURE_KINDS and t.outcome in ("found", "read"):
            assert t.confidence == UNSURE_CONFIDENCE
        else:
            assert t.confidence == CONFIDENCE[t.outcome]
        last_turn = own.split("</read>")[-1].split("</search>")[-1].split("<answer>")[0]
        assert classify(last_turn) == wording_for(t.confidence / 10)  # its confidence in words
        if t.confidence >= 7:
            assert t.correct
        inserted = assistant["content"].count("<information>")
        assert inserted == t.searches + t.reads
        assert assistant["content"].endswith(f"</think>\n\n{t.answer}")
    first_off, no_search = transcripts[0], transcripts[3]
    assert _model_text(first_off).count("<search>") == 1
    assert first_off.searches == 1
    assert no_search.searches == 0
    assert "<information>" not in no_search.messages[-1]["content"]
    assert "<information>" in transcripts[4].messages[-1]["content"]  # the server searched


def test_found_answers_are_in_the_retrieved_text(transcripts: list[Transcript]) -> None:
    for t in transcripts:
        content = t.messages[-1]["content"]
        inserted = "".join(content[lo:hi] for lo, hi in t.messages[-1]["masked"])
        if t.outcome in ("found", "read"):
            retrieved = inserted.split("</think>")[0]  # not the answer's echo
            assert supported_by(t.answer, retrieved), t.question.item.id
    smrp = transcripts[1]
    assert "Result [1] does not answer this" in _model_text(smrp)  # the top result was another
    for element in transcripts[5:]:
        q = element.question
        assert element.correct, q.item.id
        assert f"gives {q.asked}: {q.item.answer}." in _model_text(element)


def test_reverse_element_lookups_are_stated_likely_even_when_found(
    pools: dict[str, list[SearchQuestion]], backend: SearchBackend
) -> None:
    from safework.engine.embedder import get_embedder

    encoder = get_embedder(REAL_CACHE)
    picked = {}
    for q in pools["element"]:
        picked.setdefault(q.item.kind, q)
    assert set(UNSURE_KINDS) <= set(picked)

    async def write() -> list[Transcript]:
        return [await write_transcript(q, backend, encoder) for q in picked.values()]

    for t in asyncio.run(write()):
        own = _model_text(t)
        stated = tags.parse_confidence(own)
        if t.outcome == "missing":
            assert stated == 0.1
        elif t.question.item.kind in UNSURE_KINDS:
            assert stated == UNSURE_CONFIDENCE / 10, t.question.item.id
            assert "I am not certain of it." in own
            assert classify(own.split("<answer>")[0].split("</search>")[-1]) == "likely"
        else:
            assert stated >= 0.8, t.question.item.id
            assert "I'm confident of this." in own


def test_element_questions_ask_every_kind_or_rotate_kinds() -> None:
    items = element_qa(ensure_builtin_corpus(REAL_CACHE), max_number=12)
    every = element_questions(items)
    per_record: dict[str, set[str]] = {}
    for q in every:
        per_record.setdefault(q.item.doc_id, set()).add(q.item.kind)
    assert len(every) == 48  # each of the 12 records asked all four ways
    assert all(len(kinds) == 4 for kinds in per_record.values())
    questions = element_questions(items, per_element=2)
    per_doc: dict[str, list[str]] = {}
    for q in questions:
        per_doc.setdefault(q.item.doc_id, []).append(q.item.kind)
        assert q.needs_search
        assert len(set(q.queries)) == 2
        assert q.item.subject in q.asked
        assert q.item.subject in q.queries[0]
    assert len(per_doc) == 12
    assert all(len(kinds) == 2 for kinds in per_doc.values())
    taught = {kind for kinds in per_doc.values() for kind in kinds}
    assert taught == {"atomic_number", "symbol", "element_by_symbol", "element_by_number"}
    assert len(element_questions(items, per_element=1)) == 12


# --------------------------------------------------------------------------- the loss mask


def test_information_tokens_are_ignored_and_the_model_text_is_trained(
    transcripts: list[Transcript], smollm_tokenizer: Any
) -> None:
    t = transcripts[2]  # a search, maybe a read: several information blocks
    enc = encode_conversation(smollm_tokenizer, t.messages, 4096)
    trained = smollm_tokenizer.decode([i for i in enc.labels if i != IGNORE_INDEX])
    ignored_in_turn = smollm_tokenizer.decode(
        [i for i, label in zip(enc.input_ids, enc.labels, strict=True) if label == IGNORE_INDEX]
    )
    assert "Retrieved text" not in trained
    assert "<information>" not in trained
    assert "Retrieved text" in ignored_in_turn
    assert "</information>" in ignored_in_turn
    assert f"<answer>{t.answer}</answer>" in trained
    assert f"<confidence>{t.confidence}</confidence>" in trained
    unmasked = [{k: v for k, v in m.items() if k != "masked"} for m in t.messages]
    plain = encode_conversation(smollm_tokenizer, unmasked, 4096)
    assert plain.input_ids == enc.input_ids
    assert plain.trained_tokens > enc.trained_tokens
    assert "Retrieved text" in smollm_tokenizer.decode(
        [i for i in plain.labels if i != IGNORE_INDEX]
    )


def test_masked_span_outside_the_content_is_refused(smollm_tokenizer: Any) -> None:
    from safework.errors import ConfigError

    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "masked": [[2, 9]]},
    ]
    with pytest.raises(ConfigError, match="outside"):
        encode_conversation(smollm_tokenizer, messages, 64)


# --------------------------------------------------------------------------- the recipe


def test_search_sizes_are_data_keys_and_off_by_default() -> None:
    assert {"search_train", "search_dev"} <= set(DATA_KEYS)
    config = DataConfig()
    assert (config.search_train, config.search_dev) == (0, 0)
    DataConfig(math_train=0, safety_train=0, benign_train=0, search_train=5).check()


def test_cot_sft_with_search_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The recipe on the fixture sources with 2 dev and 3 train search rows (the corpus and
    the index from the real cache): valid rows, disjoint, recorded, deterministic."""
    from safework.training.mix import build_cot_sft
    from safework.training.sources import DATA_ASSETS, fetch_sources

    from .dataset_sources import SIZES, patch_sources

    try:
        ensure_builtin_corpus(REAL_CACHE)
    except FetchError as exc:
        pytest.skip(f"the built-in corpus is not cached: {exc}")
    env = patch_sources(monkeypatch, tmp_path / "cache")
    folders = fetch_sources(env.cache, DATA_ASSETS)
    config = DataConfig(cache=REAL_CACHE, **SIZES, search_dev=2, search_train=3)
    mix = build_cot_sft(config, folders)
    dev = [r for r in mix.dev if r["task"] == "search"]
    train = [r for r in mix.train if r["task"] == "search"]
    assert (len(dev), len(train)) == (2, 3)
    assert len(mix.train) == SIZES["math_train"] + 20 + 16 + 3
    for row in dev + train:
        assert cot_row_problem(row) is None
        assert row["messages"][0]["role"] == "system"
        assert row["messages"][-1]["masked"]
        assert row["meta"]["outcome"] in CONFIDENCE
    assert not {r["messages"][1]["content"] for r in dev} & {
        r["messages"][1]["content"] for r in train
    }
    info = mix.generators["search"]
    assert info["backend"] == "local:builtin"
    assert sum(info["outcomes"].values()) == 5
    assert build_cot_sft(config, folders).train == mix.train


def test_rl_element_prompts_train_on_the_fit_half_whatever_the_seed() -> None:
    """The search stage's prompts use the eval's split (seed 0) for every run seed: another seed
    would put held-out questions into training."""
    from safework.training.rl_data import load_rl_prompts

    fit, held_out = split_qa(element_qa(ensure_builtin_corpus(REAL_CACHE)), 0.5, seed=0)
    for seed in (0, 7):
        train, report = load_rl_prompts("element-qa", REAL_CACHE, seed)
        assert [p.id for p in train] == [i.id for i in fit]
        assert [p.id for p in report] == [i.id for i in held_out]
