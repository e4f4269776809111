"""Capability levels: fresh reasoning-gym questions at set difficulty, scored as maths."""

from __future__ import annotations

import pytest

from safework.errors import ConfigError
from safework.training.capability import (
    CANDIDATE_LEVELS,
    CAPABILITY_LEVELS,
    CapabilityLevel,
    capability_samples,
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


def test_a_level_too_small_for_the_request_is_an_error() -> None:
    tiny = CapabilityLevel(
        "chain_sum/1x1", "chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1}
    )
    # two one-digit terms with + or -: at most 10 * 10 * 2 = 200 distinct questions
    with pytest.raises(ConfigError, match="distinct questions"):
        capability_samples([tiny], 250)
