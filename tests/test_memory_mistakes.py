"""Mistakes as keys: the mistaken step of a correction, its vector, its index and search.

``mistake_step`` on its own; then the store on both databases (SQLite and a real PostgreSQL,
``tests/postgres.py``) with the hashed bag-of-words encoder of ``test_memory_store.py``:
corrections are found by a draft step that repeats their mistake, never by another tenant's,
and not after a delete; rows written before mistake keys existed get theirs when the store
opens; export and import carry them; a second store on the same PostgreSQL follows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safework.memory import MemoryStore
from safework.memory.mistakes import (
    SURE_SIMILARITY,
    MistakeStep,
    mistake_step,
    repeats,
    split_steps,
    step_ends,
)

from .postgres import eventually
from .test_memory_store import HashEncoder

TURKEY = {
    "question": "What is the capital of Turkey?",
    "reasoning": "Turkey spans Europe and Asia. The capital of Turkey is Istanbul.",
    "corrected_reasoning": "Turkey spans Europe and Asia. The capital of Turkey is Ankara. "
    "Istanbul is its largest city.",
    "model": "m",
}


def test_steps_are_sentences_and_lines() -> None:
    text = "<think>Pi is about 3.14 here. Is it?\nYes!</think> Done"
    assert split_steps(text) == ["Pi is about 3.14 here.", "Is it?", "Yes!", "Done"]
    assert step_ends("One. Two (see x.) three") == [4, 17]
    assert step_ends("no boundary yet") == []


@pytest.mark.parametrize(
    ("reasoning", "corrected", "expected"),
    [
        (
            TURKEY["reasoning"],
            TURKEY["corrected_reasoning"],
            MistakeStep("The capital of Turkey is Istanbul.", "The capital of Turkey is Ankara."),
        ),
        (  # the whole reasoning replaced; the answer line is not the mistake when a step is
            "I think it is 7.\nAnswer given: 7",
            "No: the atomic number of iron is 26.",
            MistakeStep("I think it is 7.", "No: the atomic number of iron is 26."),
        ),
        ("", "Iron is 26.", None),  # only added: no step was replaced
        ("A is b. C is d.", "a is B. C is d.", None),  # case and spacing are not a correction
        ("A is b. C is d.", "A is b.", None),  # only removed: nothing to put in its place
    ],
)
def test_the_mistake_is_the_first_replaced_step(
    reasoning: str, corrected: str, expected: MistakeStep | None
) -> None:
    assert mistake_step(reasoning, corrected) == expected


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    url = request.getfixturevalue("postgres").new_database() if request.param != "sqlite" else None
    with MemoryStore(tmp_path / "mem", HashEncoder(), background=False, database=url) as s:
        yield s


def test_a_draft_step_finds_the_correction_of_its_mistake(store: MemoryStore) -> None:
    rec = store.add("acme", **TURKEY)
    store.add("acme", question="Other?", reasoning="", corrected_reasoning="Added only.", model="m")
    store.add(
        "acme",
        question="Pref",
        reasoning="",
        corrected_reasoning="Be brief.",
        model="m",
        kind="preference",
    )
    assert store.has_mistakes("acme")
    assert not store.has_mistakes("globex")
    draft = ["Parliament sits in the capital.", "The capital of Turkey is Istanbul, I believe."]
    unrelated, repeated = store.search_mistakes("acme", draft, k=3, min_similarity=0.6)
    assert unrelated == []
    assert [(h.record.id, h.kind) for h in repeated] == [(rec.id, "mistake")]
    assert repeated[0].similarity > 0.8
    assert store.search_mistakes("globex", draft) == [[], []]  # another tenant's: nothing
    assert store.delete("acme", rec.id)
    assert not store.has_mistakes("acme")
    assert store.search_mistakes("acme", draft) == [[], []]
    with pytest.raises(ValueError, match="steps"):
        store.search_mistakes("acme", ["ok", " "])


def test_rows_stored_before_mistake_keys_get_them_on_open(tmp_path: Path) -> None:
    with MemoryStore(tmp_path, HashEncoder()) as s:
        rec = s.add("acme", **TURKEY)
    import sqlite3

    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:  # as schema version 2 left it
        conn.execute("UPDATE corrections SET mistake = NULL")
    (tmp_path / "mistakes").rename(tmp_path / "mistakes-old")
    with MemoryStore(tmp_path, HashEncoder()) as s:
        hits = s.search_mistakes("acme", ["The capital of Turkey is Istanbul."])[0]
        assert [h.record.id for h in hits] == [rec.id]
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:
        nulls = conn.execute("SELECT count(*) FROM corrections WHERE mistake IS NULL")
        assert nulls.fetchone()[0] == 0
        assert conn.execute("SELECT length(mistake) FROM corrections").fetchone()[0] > 0


def test_export_and_import_carry_the_mistake_keys(store: MemoryStore, tmp_path: Path) -> None:
    rec = store.add("acme", **TURKEY)
    rows = list(store.export("acme"))
    assert rows[0]["mistake_embedding"]
    with MemoryStore(tmp_path / "copy", HashEncoder()) as copy:
        assert copy.import_records(json.loads(json.dumps(rows))) == 1
        hits = copy.search_mistakes("acme", ["The capital of Turkey is Istanbul."])[0]
        assert [h.record.id for h in hits] == [rec.id]
        assert list(copy.export("acme")) == rows
    # a row from an older export (no mistake key) gets one from its texts
    old: dict[str, Any] = {k: v for k, v in rows[0].items() if k != "mistake_embedding"}
    with MemoryStore(tmp_path / "older", HashEncoder()) as copy:
        copy.import_records([old])
        assert copy.search_mistakes("acme", ["The capital of Turkey is Istanbul."])[0]


def test_a_replica_follows_the_mistake_keys(postgres: Any, tmp_path: Path) -> None:
    url = postgres.new_database()
    with (
        MemoryStore(tmp_path / "a", HashEncoder(), database=url) as a,
        MemoryStore(tmp_path / "b", HashEncoder(), database=url) as b,
    ):
        rec = a.add("acme", **TURKEY)
        step = ["The capital of Turkey is Istanbul."]
        eventually(lambda: bool(b.search_mistakes("acme", step)[0]), timeout=5)
        assert b.search_mistakes("acme", step)[0][0].record.id == rec.id
        a.delete("acme", rec.id)
        eventually(lambda: not b.has_mistakes("acme"), timeout=5)


COBALT = MistakeStep(
    "I think the atomic number of cobalt is 7.", "No: the atomic number of cobalt is 27."
)


def test_a_close_step_must_hold_a_word_only_the_mistake_had() -> None:
    assert repeats("The atomic number of cobalt is 7.", COBALT, 0.7, 0.65)  # "7"
    assert not repeats("The atomic number of iron is 26.", COBALT, 0.7, 0.65)
    assert repeats("The atomic number of cobalt is 29.", COBALT, SURE_SIMILARITY, 0.65)
    assert not repeats("I think it is 7.", COBALT, 0.6, 0.65)  # under the threshold
    assert repeats("anything", COBALT, 0.95, 0.9)  # a threshold above SURE_SIMILARITY rules


def test_another_entitys_fact_is_not_taken_for_the_mistake(tmp_path: Path) -> None:
    """With MiniLM (as served): corrections of 20 elements' atomic numbers; drafts stating
    other elements' numbers reach none of them, drafts repeating a mistake reach their own."""
    from safework.engine.embedder import get_embedder
    from safework.search.corpus import element_qa

    facts = [i for i in element_qa() if i.kind == "atomic_number"][:40]
    corrected, others = facts[:20], facts[20:]
    with MemoryStore(tmp_path, get_embedder()) as s:
        for f in corrected:
            s.add(
                "acme",
                question=f.question,
                reasoning=f"I think the atomic number of {f.subject} is 7.",
                corrected_reasoning=f"No: the atomic number of {f.subject} is {f.answer}.",
                model="m",
            )

        def hits(step: str) -> list[str]:
            found = s.search_mistakes("acme", [step], k=5, min_similarity=0.65)[0]
            return [
                h.record.question
                for h in found
                if repeats(
                    step,
                    mistake_step(h.record.reasoning, h.record.corrected_reasoning),  # type: ignore[arg-type]
                    h.similarity,
                    0.65,
                )
            ]

        for f in others:
            assert hits(f"The atomic number of {f.subject} is {f.answer}.") == [], f.subject
        for f in corrected[:5]:
            assert hits(f"The atomic number of {f.subject} is 7.")[0] == f.question
