"""The eval's calibration map is fitted on questions of the kinds it is tested on."""

from __future__ import annotations

import random
from collections import Counter

from safework.search.corpus import element_qa, split_qa
from safework.training.evaluate import same_kinds


def test_the_fit_questions_have_the_tested_questions_kinds() -> None:
    dev, held_out = split_qa(element_qa(), 0.5, seed=0)
    for seed in range(5):
        rng = random.Random(seed)
        tested = rng.sample(held_out, 40)
        fit = same_kinds(dev, tested, rng)
        assert Counter(q.kind for q in fit) == Counter(q.kind for q in tested)
        assert len({q.id for q in fit}) == 40
        assert not {q.id for q in fit} & {q.id for q in held_out}  # the other half only


def test_a_kind_the_pool_runs_short_of_is_made_up_from_the_others() -> None:
    dev, _ = split_qa(element_qa(), 0.5, seed=0)
    symbols = [q for q in dev if q.kind == "symbol"][:3]
    pool = symbols + [q for q in dev if q.kind == "atomic_number"]
    like = [q for q in dev if q.kind == "symbol"][:10]
    fit = same_kinds(pool, like, random.Random(0))
    assert len(fit) == 10
    assert Counter(q.kind for q in fit) == {"symbol": 3, "atomic_number": 7}
