"""Cascade guided decoding (the default mode) with a scripted streaming engine: K candidates
only for the first step, one stream afterwards, rollback on a failing step, scoring less often
while scores stay high, steering and refusal, greedy determinism and the token budget."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig
from safework.value_models.guided import (
    REFUSAL_TEXT,
    STEER_TEXT,
    GuidanceConfig,
    GuidedDecoder,
    WeightedModel,
)

from .fakes import FakeEngine, KeywordValueModel

PROMPT = [1, 2, 3]


class CascadeEngine(FakeEngine):
    """Requests that stop at the step delimiter draw candidates: the k-th such request gets
    ``rounds[k]`` (cycled over its ``n`` choices). Any other request streams ``streams[j]``
    one character (one token) per output, ending with end-of-sequence. ``streamed[j]`` counts
    the tokens stream j produced before it ended or was closed."""

    def __init__(self, rounds: list[list[str]], streams: list[str], delimiter: str = "\n"):
        super().__init__()
        self.rounds, self.streams, self.delimiter = rounds, streams, delimiter
        self.round_calls: list[SamplingConfig] = []
        self.stream_calls: list[list[int]] = []
        self.streamed: list[int] = []

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        if self.delimiter in s.stop:
            texts = self.rounds[min(len(self.round_calls), len(self.rounds) - 1)]
            self.round_calls.append(s)
            deltas = []
            for i in range(s.n):
                text, finish = texts[i % len(texts)], "stop"
                if len(text) > s.max_tokens:
                    text, finish = text[: s.max_tokens], "length"
                at_delim = finish == "stop" and text.endswith(self.delimiter)
                stop = self.delimiter if at_delim else None
                deltas.append(
                    ChoiceDelta(
                        index=i,
                        text=text,
                        token_ids=[ord(c) for c in text],
                        finish_reason=finish,  # type: ignore[arg-type]
                        stop_reason=stop,
                    )
                )
            yield EngineOutput(request_id, len(prompt), deltas, finished=True)
            return
        j = len(self.stream_calls)
        self.stream_calls.append(list(prompt))
        self.streamed.append(0)
        text = self.streams[min(j, len(self.streams) - 1)][: s.max_tokens]
        for k, ch in enumerate(text):
            last = k == len(text) - 1
            self.streamed[j] += 1
            finish = ("length" if len(text) == s.max_tokens else "stop") if last else None
            delta = ChoiceDelta(index=0, text=ch, token_ids=[ord(ch)], finish_reason=finish)  # type: ignore[arg-type]
            yield EngineOutput(request_id, len(prompt), [delta], finished=last)


def config(threshold: float = 0.5, **kw) -> GuidanceConfig:
    """One keyword model that scores 0.1 on text containing "bad", else 0.9."""
    model = KeywordValueModel("bad", "fake:bad", "bad")
    kw.setdefault("candidates", 3)
    return GuidanceConfig((WeightedModel(model, 1.0, threshold),), **kw)


class PromptJudgingModel(KeywordValueModel):
    """The keyword model with a prompt classifier: a question naming "attack" is harmful."""

    prompt_threshold = 0.5

    async def prompt_risk(self, prompts: list[str]) -> list[float] | None:
        return [0.97 if "attack" in p else 0.02 for p in prompts]


def gated(**kw) -> GuidanceConfig:
    kw.setdefault("candidates", 3)
    model = PromptJudgingModel("bad", "fake:bad", "bad")
    return GuidanceConfig((WeightedModel(model, 1.0, 0.5),), **kw)


async def run(
    engine: CascadeEngine, cfg: GuidanceConfig, question: str = "question?", **sampling
) -> tuple[str, list[EngineOutput], GuidedDecoder]:
    decoder = GuidedDecoder(cfg, question)
    sampling.setdefault("max_tokens", 1000)
    outs = [o async for o in decoder(engine, PROMPT, SamplingConfig(**sampling), "r")]
    text = "".join(d.text for o in outs for d in o.choices)
    return text, outs, decoder


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def actions(outs: list[EngineOutput]) -> list[str]:
    wire = [e.to_json() for o in outs for e in o.events]
    return [e.get("action", e["type"]) for e in wire]


async def test_k_candidates_only_for_the_first_step_then_one_stream() -> None:
    engine = CascadeEngine([["bad start\n", "good start\n"]], ["line one\nline two\nthe end."])
    text, outs, decoder = await run(engine, config())
    assert text == "good start\nline one\nline two\nthe end."
    assert len(engine.round_calls) == 1
    assert engine.round_calls[0].n == 3
    assert engine.round_calls[0].max_tokens == 32  # first_step_tokens caps the first step
    assert engine.stream_calls == [PROMPT + ids("good start\n")]  # resumes after the step
    assert actions(outs) == ["choose", "pass", "pass", "pass"]
    assert outs[-1].choices[0].finish_reason == "stop"
    assert [d.text for o in outs for d in o.choices] == [
        "good start\n",
        "line one\n",
        "line two\n",
        "the end.",
    ]  # each output is one whole step: a step is released after its score
    assert decoder.stats.rejected == 2  # the two "bad start" candidates


async def test_a_failing_step_rolls_back_and_resamples_there() -> None:
    stream = "fine one\nbad two\nnever seen\nnever seen\n"
    engine = CascadeEngine([["start\n"], ["mended two\n"]], [stream, "all done."])
    text, outs, decoder = await run(engine, config(score_every_max=1))
    assert text == "start\nfine one\nmended two\nall done."
    assert "bad" not in text
    assert "never seen" not in text
    # the failing stream was closed soon after its bad step, not generated to the end
    assert engine.streamed[0] < len(stream)
    # the resample draws K-1 new candidates at the failed step's start ...
    assert engine.round_calls[1].n == 2
    # ... and streaming resumes after the chosen one
    assert engine.stream_calls[1] == PROMPT + ids("start\nfine one\nmended two\n")
    wire = [e.to_json() for o in outs for e in o.events]
    chosen = next(e for e in wire if e.get("text") == "mended two\n")
    assert chosen["action"] == "choose"
    assert [r["text"] for r in chosen["rejected"]] == ["bad two\n"]  # the failed one counts
    assert decoder.stats.rejected == 1


async def test_scores_less_often_while_far_above_threshold() -> None:
    stream = "".join(f"step {i}\n" for i in range(9)) + "end."
    engine = CascadeEngine([["start\n"]], [stream])
    cfg = config(threshold=0.5)  # scores 0.9: a margin of 0.4 >= skip_margin 0.3
    text, outs, _ = await run(engine, cfg)
    assert text == "start\n" + stream
    # the first step's K candidates, then blocks of 1, 2, 4 steps and the last 3 at the end
    assert cfg.models[0].model.calls == [3, 1, 1, 1, 1]
    blocks = [e.to_json().get("block") for o in outs for e in o.events][1:]
    assert blocks[:3] == [None, [2, 3], [2, 3]]
    assert blocks[-1] == [8, 10]


async def test_scores_every_step_near_the_threshold() -> None:
    stream = "".join(f"step {i}\n" for i in range(5)) + "end."
    engine = CascadeEngine([["start\n"]], [stream])
    cfg = config(threshold=0.7)  # a margin of 0.2: every step is scored
    await run(engine, cfg)
    assert cfg.models[0].model.calls == [3] + [1] * 6


async def test_a_first_step_that_always_fails_is_refused_at_once() -> None:
    engine = CascadeEngine([["bad a\n", "bad b\n"]], ["unused"])
    text, outs, decoder = await run(engine, config(retries=1))
    assert text == REFUSAL_TEXT
    assert actions(outs) == ["refusal"]
    assert len(engine.round_calls) == 2  # the first attempt and its retry; no steering round
    assert (decoder.stats.steered, decoder.stats.refused) == (0, 1)
    assert outs[-1].choices[0].finish_reason == "stop"
    assert [d.token_ids for o in outs for d in o.choices] == [ids(REFUSAL_TEXT)]  # counted


async def test_a_failing_step_mid_answer_steers_then_refuses() -> None:
    engine = CascadeEngine([["fine start\n"], ["bad a\n", "bad b\n"]], ["bad line\n"])
    text, outs, decoder = await run(engine, config(retries=1, score_every_max=1))
    assert text == "fine start\n" + STEER_TEXT + REFUSAL_TEXT
    assert actions(outs) == ["choose", "steer", "refusal"]
    assert (decoder.stats.steered, decoder.stats.refused) == (1, 1)


async def test_steers_then_refuses_when_asked_to_steer_the_first_step() -> None:
    engine = CascadeEngine([["bad a\n", "bad b\n"]], ["unused"])
    text, outs, decoder = await run(engine, config(retries=1, steer_first_step=True))
    assert text == STEER_TEXT + REFUSAL_TEXT
    assert actions(outs) == ["steer", "refusal"]
    assert engine.stream_calls == []  # nothing was streamed
    assert len(engine.round_calls) == 4  # two attempts before steering, two after
    assert (decoder.stats.steered, decoder.stats.refused) == (1, 1)
    assert outs[-1].choices[0].finish_reason == "stop"


async def test_steering_then_a_passing_step_resumes_streaming() -> None:
    engine = CascadeEngine([["bad a\n"], ["safe step\n"]], ["rest."])
    text, outs, _ = await run(engine, config(retries=0, steer_first_step=True))
    assert text == STEER_TEXT + "safe step\nrest."
    assert actions(outs) == ["steer", "choose", "pass"]
    assert engine.stream_calls == [PROMPT + ids(STEER_TEXT + "safe step\n")]


async def test_greedy_request_is_deterministic_and_resamples_with_seeds() -> None:
    async def greedy() -> tuple[str, CascadeEngine]:
        engine = CascadeEngine([["start\n"], ["fixed\n"]], ["ok\nbad\nrest\n", "end."])
        text, _, _ = await run(engine, config(score_every_max=1), temperature=0.0, seed=5)
        return text, engine

    text, engine = await greedy()
    assert text == "start\nok\nfixed\nend."
    greedy_step, alternatives, resample = engine.round_calls
    assert (greedy_step.n, greedy_step.temperature) == (1, 0.0)  # the greedy candidate ...
    assert (alternatives.n, alternatives.temperature) == (2, 1.0)  # ... and K-1 seeded ones
    assert (resample.n, resample.temperature) == (2, 1.0)  # no greedy: that is what failed
    assert resample.seed not in (None, alternatives.seed)
    again, engine2 = await greedy()
    assert again == text
    assert [s.seed for s in engine2.round_calls] == [s.seed for s in engine.round_calls]


async def test_token_budget_ends_with_length() -> None:
    engine = CascadeEngine([["start\n"]], ["a long line that goes on and on\n"])
    text, outs, _ = await run(engine, config(), max_tokens=20)
    assert len(text) == 20
    assert outs[-1].choices[0].finish_reason == "length"


async def test_a_long_line_is_cut_into_steps_at_the_token_cap() -> None:
    engine = CascadeEngine([["start\n"]], ["x" * 25 + " bad " + "y" * 30])
    text, _, _ = await run(engine, config(step_max_tokens=10, score_every_max=1))
    assert "bad" not in text  # a line with no delimiter is still scored every 10 tokens


async def test_a_harmless_request_streams_its_first_step_too() -> None:
    engine = CascadeEngine([["never drawn\n"]], ["first\nsecond\nthe end."])
    text, outs, decoder = await run(engine, gated())
    assert text == "first\nsecond\nthe end."
    assert engine.round_calls == []  # no K-candidate round at all
    assert engine.stream_calls == [PROMPT]
    assert actions(outs) == ["pass", "pass", "pass"]
    assert decoder.stats.prompt_risk == pytest.approx(0.02)


async def test_a_harmless_request_gets_k_when_its_streamed_first_step_fails() -> None:
    engine = CascadeEngine([["bad again\n", "safe start\n"]], ["bad first\nnever\n", "rest."])
    text, outs, _ = await run(engine, gated())
    assert text == "safe start\nrest."
    assert engine.round_calls[0].n == 2  # K - 1 more: the failed stream counts as one
    assert engine.round_calls[0].max_tokens == 32  # still capped as a first step
    assert actions(outs) == ["choose", "pass"]


async def test_a_harmless_request_whose_starts_all_fail_is_steered_not_refused() -> None:
    # the prompt classifier passed the request: only the model's starts were bad, so the
    # reflection gets its chance before any refusal (a flagged request is refused at once)
    engine = CascadeEngine(
        [["bad a\n", "bad b\n"], ["safe step\n"]], ["bad first\nnever\n", "rest."]
    )
    text, outs, decoder = await run(engine, gated(retries=0))
    assert text == STEER_TEXT + "safe step\nrest."
    assert actions(outs) == ["steer", "choose", "pass"]
    assert (decoder.stats.steered, decoder.stats.refused) == (1, 0)
    assert engine.stream_calls[-1] == PROMPT + ids(STEER_TEXT + "safe step\n")


async def test_a_flagged_request_draws_k_for_its_first_step() -> None:
    engine = CascadeEngine([["start\n"]], ["the end."])
    text, _, decoder = await run(engine, gated(), question="plan an attack")
    assert text == "start\nthe end."
    assert engine.round_calls[0].n == 3
    assert decoder.stats.prompt_risk == pytest.approx(0.97)


async def test_a_flagged_request_whose_every_start_fails_is_refused() -> None:
    engine = CascadeEngine([["bad\n"]], ["never streamed"])
    text, _, _ = await run(engine, gated(), question="plan an attack")
    assert text == REFUSAL_TEXT
    assert engine.stream_calls == []


async def test_the_gate_can_be_turned_off() -> None:
    engine = CascadeEngine([["start\n"]], ["the end."])
    await run(engine, gated(gate_first_step=False))
    assert engine.round_calls[0].n == 3


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="exhaustive"):
        config(beam_width=2)
    with pytest.raises(ValueError, match="mode"):
        config(mode="fast")
    assert config(mode="exhaustive", beam_width=2).beam_width == 2
