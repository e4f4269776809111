"""Capability levels: fresh reasoning-gym questions at set difficulty, scored as maths."""

from __future__ import annotations

import pytest

from safework.errors import ConfigError
from safework.training.capability import (
    CANDIDATE_LEVELS,
    CAPABILITY_LEVELS,
    CapabilityLevel,
    capability_samples,
    math_source,
    problem_key,
)
from safework.training.eval_tasks import score_math
from safework.value_models.data import normalize

SMALL = CapabilityLevel(
    "chain_sum/2x1", "chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1}
)


def test_every_level_gives_its_questions_with_what_scoring_needs() -> None:
    samples = capability_samples(CAPABILITY_LEVELS, 3)
    assert len(samples) == 3 * len(CAPABILITY_LEVELS)
    for level in CAPABILITY_LEVELS:
        mine = [s for s in samples if s.meta["level"] == level.name]
        assert len(mine) == 3
        assert len({s.prompt for s in mine}) == 3
        assert {s.meta["dataset"] for s in mine} == {level.dataset}
    assert {s.group for s in samples} == {"capability"}
    assert len({s.id for s in samples}) == len(samples)


def test_the_gold_answer_scores_and_a_wrong_one_does_not() -> None:
    samples = capability_samples(CANDIDATE_LEVELS, 2)
    for s in samples:
        s.answer = str(s.meta["answer"])
    score_math(samples)
    assert all(s.verdict["correct"] for s in samples), [
        (s.meta["level"], s.answer, s.verdict) for s in samples if not s.verdict["correct"]
    ]
    for s in samples:
        s.answer, s.verdict = "I do not know.", {}
    score_math(samples)
    assert not any(s.verdict["correct"] for s in samples)


def test_questions_are_seeded_and_keep_out_the_excluded() -> None:
    first = capability_samples([SMALL], 10, seed=3)
    assert [s.prompt for s in first] == [s.prompt for s in capability_samples([SMALL], 10, seed=3)]
    assert [s.prompt for s in first] != [s.prompt for s in capability_samples([SMALL], 10, seed=4)]
    exclude = {normalize(s.prompt) for s in first[:5]}
    again = capability_samples([SMALL], 10, seed=3, exclude=exclude)
    assert not exclude & {normalize(s.prompt) for s in again}


def test_a_problem_asked_in_other_words_is_kept_out_too() -> None:
    """The same sum as a chain sum and as basic arithmetic, or a GCD with its numbers swapped,
    is one problem: excluding it (or asking it once) keeps out every wording of it."""
    arithmetic = next(level for level in CANDIDATE_LEVELS if level.name == "basic_arithmetic/2x1")
    chains = capability_samples([SMALL], 60, seed=3)
    keys = {problem_key(s.meta["entry"]) for s in chains}
    assert len(keys) == len(chains)  # no problem twice, in any wording
    sums = capability_samples([arithmetic], 40, seed=3, exclude=keys)
    assert not keys & {problem_key(s.meta["entry"]) for s in sums}
    assert problem_key({"question": "Calculate 8 - 6.", "metadata": {"expression": "8 - 6"}}) == (
        problem_key({"question": "8-6 =", "metadata": {"expression": "8-6"}})
    )
    gcd = {"source_dataset": "gcd", "numbers": [49, 29]}
    swapped = {"source_dataset": "gcd", "numbers": [29, 49]}
    lcm = {"source_dataset": "lcm", "numbers": [29, 49]}
    assert problem_key({"metadata": gcd}) == problem_key({"metadata": swapped})
    assert problem_key({"metadata": gcd}) != problem_key({"metadata": lcm})
    assert problem_key({"question": "How many legs?", "metadata": {}}) is None


def test_a_math_mix_key_is_a_dataset_or_a_level_with_a_step_writer() -> None:
    assert math_source("products") == ("products", {"min_digits": 1, "max_digits": 2})
    dataset, settings = math_source("chain_sum/2x1")
    assert (dataset, settings) == ("chain_sum", dict(SMALL.settings))
    for bad in ("nope", "spell_backward/3-5", "chain_sum/9x9"):
        with pytest.raises(ConfigError, match="math_mix"):
            math_source(bad)


def test_a_level_too_small_for_the_request_is_an_error() -> None:
    tiny = CapabilityLevel(
        "chain_sum/1x1", "chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1}
    )
    # two one-digit terms with + or -: at most 10 * 10 * 2 = 200 distinct questions
    with pytest.raises(ConfigError, match="distinct questions"):
        capability_samples([tiny], 250)
