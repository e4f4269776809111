"""Verifiable-instruction rows: every kind's rewrite keeps its constraint by IFEval's own
reference checkers, on answers of several shapes; kinds that do not fit an answer are skipped."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from safework.training.constraints import KINDS, constrain
from safework.training.ifeval import IFEvalPrompt, check

REQUEST = "Suggest a few ways to spend a rainy Sunday at home."
ANSWERS = {
    "paragraphs": (
        "A rainy Sunday is a good excuse to slow down. Start with a long breakfast, then pick a "
        "book you have been meaning to read.\n\n"
        "In the afternoon, try cooking something new, such as a soup that needs a few hours on "
        "the stove. Board games, puzzles and a film marathon also work well with family.\n\n"
        "Finally, spend an hour tidying one corner of the house; it feels good on Monday."
    ),
    "numbers": (
        "Budget about 1,000 calories for a big brunch, then walk 5,000 steps indoors. Stretch "
        "for ten minutes, and drink plenty of water."
    ),
    "list": (
        "Here are some ideas:\n- Bake bread, which takes most of the afternoon.\n"
        "- Write letters to old friends.\n- Learn a card game together."
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape", list(ANSWERS))
def test_every_kind_keeps_its_constraint_by_the_reference_checker(
    ifeval_library: Path, kind: str, shape: str
) -> None:
    fitted = 0
    for seed in range(4):
        made = constrain(random.Random(seed), REQUEST, ANSWERS[shape], [kind])
        if made is None:
            continue
        fitted += 1
        assert made.instruction_id == kind
        prompt = IFEvalPrompt(0, f"{REQUEST} {made.text}", [kind], [made.kwargs], ifeval_library)
        assert check(prompt, made.answer).strict, (kind, made.kwargs, made.answer)
        # the untouched reference answer does not already pass a rule that changes it
        if made.answer != ANSWERS[shape]:
            assert not check(prompt, ANSWERS[shape]).strict, (kind, made.kwargs)
    if shape == "paragraphs":  # a plain, English, three-paragraph answer fits every kind
        assert fitted == 4, kind


def test_a_kind_that_does_not_fit_is_skipped_for_the_next() -> None:
    rng = random.Random(0)
    # no sentences to make bullets of, nothing to drop for "no commas": the third kind applies
    made = constrain(
        rng,
        REQUEST,
        "Read",
        ["detectable_format:number_bullet_lists", "punctuation:no_comma", "startend:quotation"],
    )
    assert made is not None
    assert made.instruction_id == "startend:quotation"
    assert made.answer == '"Read"'
    code = "Use this:\n```python\nprint('Hello, World')\n```"
    assert constrain(rng, REQUEST, code, list(KINDS)) is None  # no case change touches code


def test_the_rewrites_are_the_stated_ones() -> None:
    rng = random.Random(1)
    text = ANSWERS["numbers"]
    kept = constrain(rng, REQUEST, text, ["punctuation:no_comma"])
    assert kept is not None
    assert "1000 calories" in kept.answer
    assert "5000 steps" in kept.answer
    assert "," not in kept.answer
    repeat = constrain(rng, REQUEST, text, ["combination:repeat_prompt"])
    assert repeat is not None
    assert repeat.kwargs == {"prompt_to_repeat": REQUEST}
    assert repeat.answer.startswith(REQUEST + "\n\n")
    bullets = constrain(
        rng, REQUEST, ANSWERS["paragraphs"], ["detectable_format:number_bullet_lists"]
    )
    assert bullets is not None
    lines = bullets.answer.split("\n")
    assert len(lines) == bullets.kwargs["num_bullets"]
    assert all(line.startswith("* ") for line in lines)
    # every sentence is kept, in order
    assert " ".join(line[2:] for line in lines).replace("\n", " ") == " ".join(
        ANSWERS["paragraphs"].split()
    )


def test_the_rl_ifeval_reward_scores_a_constrained_row(ifeval_library: Path) -> None:
    from safework.training.rewards import RewardContext, load_reward

    reward = load_reward("ifeval", RewardContext())
    made = constrain(random.Random(0), REQUEST, ANSWERS["paragraphs"], ["punctuation:no_comma"])
    assert made is not None
    prompt = f"{REQUEST} {made.text}"
    spec = {**made.ifeval(7, prompt), "library": str(ifeval_library)}
    completions = [f"<think>No commas.</think>{made.answer}", ANSWERS["paragraphs"]]
    assert reward([prompt] * 2, completions, ifeval=[spec, spec]) == [1.0, 0.0]
