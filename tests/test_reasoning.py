"""The streaming <think> splitter: tags split anywhere, templates that open the block."""

from __future__ import annotations

import doctest
import random

import pytest

from safework.engine import reasoning
from safework.engine.reasoning import ReasoningSplitter, split_reasoning, starts_in_reasoning

TEXT = "<think>Is 7 prime? Yes, no divisors.</think>\n\nSeven is prime."


def run(pieces: list[str], in_reasoning: bool = False) -> tuple[str, str]:
    s = ReasoningSplitter(in_reasoning)
    r, c = zip(*(s.feed(p) for p in pieces), strict=True)
    tail = s.flush()
    return "".join(r) + tail[0], "".join(c) + tail[1]


def test_doctests() -> None:
    assert doctest.testmod(reasoning).failed == 0


@pytest.mark.parametrize("seed", range(20))
def test_any_split_gives_the_same_result(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(TEXT)), 8))
    pieces = [TEXT[a:b] for a, b in zip([0, *cuts], [*cuts, len(TEXT)], strict=True)]
    assert run(pieces) == ("Is 7 prime? Yes, no divisors.", "Seven is prime.")


def test_char_by_char() -> None:
    assert run(list(TEXT)) == ("Is 7 prime? Yes, no divisors.", "Seven is prime.")


def test_no_tags_passes_through_without_delay() -> None:
    s = ReasoningSplitter()
    assert s.feed("Hello <b>world") == ("", "Hello <b>world")
    assert s.feed(" a <") == ("", " a ")  # only a possible tag start is held
    assert s.feed("3") == ("", "<3")


def test_template_opened_think_block() -> None:
    prompt = "<|user|>hi<|assistant|><think>\n"
    assert starts_in_reasoning(prompt)
    assert not starts_in_reasoning("<think>a</think> b")
    assert run(["plan", "ning</thi", "nk>Done."], starts_in_reasoning(prompt)) == (
        "planning",
        "Done.",
    )


def test_unclosed_block_is_all_reasoning() -> None:
    assert split_reasoning("<think>still going") == ("still going", "")
    assert split_reasoning("no block") == (None, "no block")
