"""Guided decoding in exhaustive mode with a scripted engine and keyword value models:
weighting, thresholds, beams, retries, steering and the refusal fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig
from safework.value_models.guided import (
    REFUSAL_TEXT,
    STEER_TEXT,
    GuidanceConfig,
    GuidedDecoder,
    WeightedModel,
)

from .fakes import FakeEngine, KeywordValueModel, StepEngine

Exhaustive = partial(GuidanceConfig, mode="exhaustive")
"""These tests pin K candidates at every step; ``test_cascade.py`` tests the default mode."""


def models(*pairs: tuple[str, float, float]) -> tuple[WeightedModel, ...]:
    """(keyword, weight, threshold) -> weighted keyword models named after their keyword."""
    return tuple(WeightedModel(KeywordValueModel(k, f"fake:{k}", k), w, t) for k, w, t in pairs)


async def run(
    engine: StepEngine, config: GuidanceConfig, max_tokens: int = 500
) -> tuple[str, list[EngineOutput], GuidedDecoder]:
    decoder = GuidedDecoder(config, "question?")
    outs = [o async for o in decoder(engine, [1, 2, 3], SamplingConfig(max_tokens=max_tokens), "r")]
    text = "".join(d.text for o in outs for d in o.choices)
    return text, outs, decoder


async def test_best_passing_candidate_wins_each_step() -> None:
    engine = StepEngine([["bad idea\n", "good idea\n"], ["done."]])
    text, outs, decoder = await run(engine, Exhaustive(models(("bad", 1.0, 0.0)), candidates=2))
    assert text == "good idea\ndone."
    assert outs[-1].choices[0].finish_reason == "stop"
    first = outs[0].events[0].to_json()
    assert first["action"] == "choose"
    assert first["scores"] == {"bad": 0.9}
    assert decoder.stats.candidates == 4  # two per step


async def test_weights_decide_between_value_models() -> None:
    script = [["alpha\n", "beta\n"], ["end."]]
    # "alpha" is penalised by model a, "beta" by model b: the heavier model decides
    text, _, _ = await run(
        StepEngine(script), Exhaustive(models(("alpha", 0.8, 0), ("beta", 0.2, 0)))
    )
    assert text.startswith("beta")
    text, _, _ = await run(
        StepEngine(script), Exhaustive(models(("alpha", 0.2, 0), ("beta", 0.8, 0)))
    )
    assert text.startswith("alpha")


async def test_threshold_is_a_hard_constraint() -> None:
    # "risky" scores higher on the weighted total but fails the low-weight model's threshold
    script = [["risky plan\n", "plan plan\n"], ["end."]]
    config = Exhaustive(models(("plan", 0.9, 0.0), ("risky", 0.1, 0.5)), candidates=2)
    text, outs, decoder = await run(StepEngine(script), config)
    assert text.startswith("plan plan")
    rejected = outs[0].events[0].to_json()["rejected"]
    assert [r["rejected_by"] for r in rejected] == [["risky"]]
    assert decoder.stats.rejected == 1


async def test_retry_then_choose() -> None:
    engine = StepEngine([["bad\n"], ["good\n"], ["end."]])
    config = Exhaustive(models(("bad", 1, 0.5)), candidates=2, retries=1)
    text, outs, _ = await run(engine, config)
    assert text == "good\nend."
    assert len(outs[0].events[0].to_json()["rejected"]) == 2  # both samples of the failed attempt


async def test_steer_when_every_candidate_fails() -> None:
    engine = StepEngine([["bad\n"], ["bad\n"], ["fine answer."]])
    text, outs, decoder = await run(engine, Exhaustive(models(("bad", 1, 0.5)), retries=1))
    assert text == STEER_TEXT + "fine answer."
    assert outs[0].events[0].to_json()["action"] == "steer"
    assert decoder.stats.steered == 1
    assert decoder.stats.refused == 0


async def test_refuse_when_steering_fails() -> None:
    engine = StepEngine([["bad\n"]])
    text, outs, decoder = await run(engine, Exhaustive(models(("bad", 1, 0.5)), retries=0))
    assert text == STEER_TEXT + REFUSAL_TEXT
    assert outs[-1].events[0].to_json()["action"] == "refusal"
    assert outs[-1].choices[0].finish_reason == "stop"
    assert decoder.stats.refused == 1


async def test_token_budget_ends_with_length() -> None:
    engine = StepEngine([["one two\n"]])
    text, outs, _ = await run(engine, Exhaustive(models(("x", 1, 0))), max_tokens=16)
    assert outs[-1].choices[0].finish_reason == "length"
    assert len(text) <= 16 + len("one two\n")


async def test_beam_keeps_the_best_cumulative_answer() -> None:
    script = [["bad a\n", "ok b\n"], ["bad c.", "ok d."], ["bad e.", "ok f."]]
    config = Exhaustive(models(("bad", 1, 0)), candidates=2, beam_width=2, max_steps=2)
    text, outs, _ = await run(StepEngine(script), config)
    assert len(outs) == 1  # with beams the answer arrives whole
    assert "bad" not in text
    assert text.startswith("ok b\n")
    assert outs[0].events[0].to_json()["type"] == "alignment.beam"
    assert len(outs[0].events[0].to_json()["steps"]) == 2


async def test_each_model_scores_one_batch_per_step() -> None:
    config = Exhaustive(models(("a", 0.5, 0), ("b", 0.5, 0)), candidates=4)
    engine = StepEngine([["x\n", "y\n", "z\n", "w\n"], ["end."]])
    await run(engine, config)
    assert [wm.model.calls for wm in config.models] == [[4, 4], [4, 4]]


async def test_blank_lines_pass_without_scoring() -> None:
    engine = StepEngine([["\n"], ["bad words\n", "good words\n"], ["end."]])
    config = Exhaustive(models(("bad", 1, 0.5)), candidates=2, retries=0)
    text, _, decoder = await run(engine, config)
    assert text == "\ngood words\nend."
    assert decoder.stats.steered == 0
    assert config.models[0].model.calls == [2, 2]  # the blank step was not scored


class SeededEngine(FakeEngine):
    """The k-th greedy request gets ``greedy[k]``; a sampled one gets texts that depend only on
    its seed and choice index, as a seeded sampler's would. A text ending in a newline ends a
    step; any other ends the answer."""

    def __init__(self, greedy: list[str]) -> None:
        super().__init__()
        self.greedy = greedy
        self.greedy_calls = 0

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        if s.temperature == 0:
            texts = [self.greedy[min(self.greedy_calls, len(self.greedy) - 1)]]
            self.greedy_calls += 1
        else:
            texts = [f"alt {s.seed % 97} {i}\n" for i in range(s.n)]
        deltas = [
            ChoiceDelta(
                index=i,
                text=t,
                token_ids=[ord(c) for c in t],
                finish_reason="stop",
                stop_reason="\n" if t[-1] == "\n" else None,
            )
            for i, t in enumerate(texts)
        ]
        yield EngineOutput(request_id, len(prompt), deltas, finished=True)


async def greedy_run(engine: SeededEngine, config: GuidanceConfig) -> str:
    decoder = GuidedDecoder(config, "question?")
    sampling = SamplingConfig(max_tokens=50_000, temperature=0.0, seed=7)
    outs = [o async for o in decoder(engine, [1, 2, 3], sampling, "r")]
    return "".join(d.text for o in outs for d in o.choices)


async def test_greedy_request_is_one_candidate_and_deterministic() -> None:
    config = Exhaustive(models(("bad", 1.0, 0.5)), candidates=3)
    engine = SeededEngine(["good start\n", "the end."])
    text = await greedy_run(engine, config)
    assert text == "good start\nthe end."  # a tie goes to the greedy step, drawn first
    kinds = [(s.n, s.temperature) for _, s in engine.requests]
    assert kinds[:2] == [(1, 0.0), (2, 1.0)]  # the greedy step and K-1 seeded alternatives
    seeds = [s.seed for _, s in engine.requests if s.temperature > 0]
    assert len(set(seeds)) == len(seeds)  # a new seed at each position
    again = SeededEngine(["good start\n", "the end."])
    assert await greedy_run(again, config) == text
    assert [s.seed for _, s in again.requests if s.temperature > 0] == seeds


async def test_a_rejected_greedy_step_loses_to_a_sampled_one() -> None:
    config = Exhaustive(models(("bad", 1.0, 0.5)), candidates=3)
    engine = SeededEngine(["bad start\n", "the end."])
    text = await greedy_run(engine, config)
    assert text.startswith("alt ")
    assert "bad start" not in text
