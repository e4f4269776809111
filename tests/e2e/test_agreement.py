"""The served model against transformers, like vLLM's own HF-vs-vLLM model tests.

The live server (in whatever dtype its start-up check chose on this CPU) answers 20 questions
greedily from the same token ids that transformers continues in float32. A question agrees when
the first 16 tokens match, or when they part at a near-tie of the reference (two tokens within
``TIE_NATS``). None of these questions is among the check's own probe questions.

Measured on a 2-core Xeon with AMX: the float16 the check chose agreed on 20/20; a server forced
to ``--dtype bfloat16`` on the same CPU agreed on 13/20, under the 17 this test asks for
(``--dtype float32``: 20/20).
"""

from __future__ import annotations

import pytest

from safework.engine.faithful import (
    PROBE_QUESTIONS,
    PROBE_TOKENS,
    ReferencePath,
    agreement,
    reference_paths,
)

from .conftest import MODEL, RemoteServer

pytestmark = pytest.mark.slow

HELD_OUT = (
    "What is the capital of Italy?",
    "Name a fruit that is yellow.",
    "How many wheels does a car have?",
    "Write one sentence about the moon.",
    "What is 9 times 3?",
    "Give an antonym for fast.",
    "Who discovered penicillin?",
    "Explain what a verb is in one sentence.",
    "What is the freezing point of water?",
    "Tell me a fun fact about dogs.",
    "What is the smallest planet in our solar system?",
    "How do fish breathe?",
    "What does a barometer measure?",
    "Name a famous composer.",
    "Why do leaves change colour in autumn?",
    "What is the opposite of up?",
    "How many hours are in a day?",
    "What language is spoken in Mexico?",
    "Suggest a name for a pet rabbit.",
    "What is gravity?",
)
MIN_AGREED = 17  # of 20: room for a few flips of real near-ties on other CPUs


@pytest.fixture(scope="module")
def reference() -> list[ReferencePath]:
    from safework.engine.default_model import ensure_default_model

    return reference_paths(ensure_default_model(), HELD_OUT)


def served_tokens(server: RemoteServer, prompt: list[int]) -> list[int]:
    """Greedy continuation of ``prompt`` (token ids) through ``/v1/completions``, as ids."""
    r = server.client().completions.create(
        model=MODEL, prompt=prompt, max_tokens=PROBE_TOKENS, temperature=0, logprobs=1,
        extra_body={"return_tokens_as_token_ids": True},
    )  # fmt: skip
    return [int(t.removeprefix("token_id:")) for t in r.choices[0].logprobs.tokens]


def test_held_out_questions_are_not_probe_questions() -> None:
    assert not set(HELD_OUT) & set(PROBE_QUESTIONS)


def test_served_greedy_output_agrees_with_transformers(
    server: RemoteServer, reference: list[ReferencePath]
) -> None:
    served = [served_tokens(server, r.prompt) for r in reference]
    rate, found = agreement(reference, served)
    parted = [(HELD_OUT[i], d.position, d.gap) for i, d in enumerate(found) if not d.agrees]
    print(f"\nagreement with float32 transformers: {rate:.2f}; parted: {parted}")
    assert sum(d.agrees for d in found) >= MIN_AGREED, parted
