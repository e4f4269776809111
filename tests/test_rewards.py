"""Tests for ``safework.training.rewards`` and ``reward_fns``: every reward on hand-written
completions (a real reasoning-gym entry, the real IFEval checkers when cached, the cheap
``value:rules:pii`` value model, search-reward numbers worked out by hand), the adaptive lambda,
and the routing: weighted means, per-label means, and configuration errors raised before any
model loads. No learned value model is loaded.

Run: ``pytest tests/test_rewards.py``.
"""

from __future__ import annotations

import doctest
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safework.errors import ConfigError
from safework.training import reward_fns, rewards
from safework.training.rewards import (
    DEFAULT_ROUTES,
    REWARDS,
    AdaptiveLambda,
    MultiObjectiveReward,
    RewardContext,
    RewardResult,
    check_reward_name,
    confidently_wrong_rate,
    load_reward,
    parse_routes,
    reliability,
    reward_names,
)
from safework.value_models import registry
from safework.value_models.base import ValueModel, ValueScore

GOOD = "<think>2 + 2 is 4.</think>\n\nThe answer is 4."
SEARCH_GOOD = (
    "<search>capital of France</search>\n<information>\nParis is the capital.\n</information>\n"
    "<answer>Paris</answer><confidence>9</confidence>"
)


def call(name: str, completions: list[str], **meta: Any) -> list[float | None]:
    fn = load_reward(name, RewardContext())
    return fn(["a prompt"] * len(completions), completions, **meta)


def test_doctests() -> None:
    assert doctest.testmod(rewards).failed == 0


def test_import_is_cheap() -> None:
    code = (
        "import sys, safework.training.rewards; "
        "print(sorted(m for m in ('torch', 'reasoning_gym', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("text", "finish", "expected"),
    [
        (GOOD, "stop", 1.0),
        ("  \n" + GOOD, None, 1.0),
        ("<think>2 + 2 is 4. The answer", "stop", 0.0),  # never closed
        ("<think>2 + 2 is 4.</think>\n  ", "stop", 0.0),  # empty answer
        ("<think> </think>4", "stop", 0.0),  # blank reasoning
        ("<think>a</think><think>b</think>4", "stop", 0.0),  # two blocks
        ("<think>a</think>4</think>", "stop", 0.0),  # a stray close tag
        ("The answer is 4.", "stop", 0.0),  # no think block
        ("Hi <think>a</think>4", "stop", 0.0),  # not at the start
        (GOOD, "length", 0.0),  # cut by max_tokens
    ],
)
def test_format_of_think_completions(text: str, finish: str | None, expected: float) -> None:
    assert call("format", [text], finish_reason=[finish], label=["math"]) == [expected]


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        (SEARCH_GOOD, "search", 1.0),
        ("<think>look it up</think><answer>Paris</answer>", "search", 1.0),
        ("<answer>4</answer>", None, 1.0),  # an answer tag makes it a search transcript
        ("<answer>  </answer>", "search", 0.0),  # empty answer
        ("<answer>Paris", "search", 0.0),  # unclosed
        ("<search>x</search><answer>Paris</answer><confidence>9", "search", 0.0),  # unbalanced
        ("<answer><search>Paris</answer></search>", "search", 0.0),  # misnested
        ("<search>x</search> I think it is Paris.", "search", 0.0),  # no answer tag
    ],
)
def test_format_of_search_transcripts(text: str, label: str | None, expected: float) -> None:
    assert call("format", [text], label=[label], unrelated=[1]) == [expected]
    assert call("format", [GOOD, "x"]) == [1.0, 0.0]  # no meta at all


# --------------------------------------------------------------------------- reasoning-gym


@pytest.fixture(scope="module")
def arithmetic() -> list[dict[str, Any]]:
    import reasoning_gym

    return list(reasoning_gym.create_dataset("basic_arithmetic", size=2, seed=1))


def test_reasoning_gym_scores_the_visible_answer(arithmetic: list[dict[str, Any]]) -> None:
    entry = arithmetic[0]
    gold = entry["answer"]
    wrong = str(int(gold) + 7)
    completions = [
        f"<think>Compute step by step.</think>\n\nThe result is {gold}.",
        f"<think>Compute.</think>\n\n{wrong}",
        f"<think>It is {gold} probably",  # unclosed think block: no answer
        f"<think>x</think>{gold}",
    ]
    datasets = ["basic_arithmetic"] * 3 + [None]
    values = call("reasoning_gym", completions, dataset=datasets, entry=[entry] * 4, answer=gold)
    assert values == [1.0, 0.0, 0.0, None]


def test_reasoning_gym_scorer_errors_score_zero_and_unknown_datasets_fail(
    arithmetic: list[dict[str, Any]],
) -> None:
    fn = load_reward("reasoning_gym", RewardContext())
    broken = {"question": "?", "metadata": {}}  # no answer: the scorer raises
    assert fn(["p"], ["<think>x</think>4"], dataset=["basic_arithmetic"], entry=[broken]) == [0.0]
    with pytest.raises(ConfigError, match="no_such_dataset"):
        fn(["p"], ["4"], dataset=["no_such_dataset"], entry=[arithmetic[0]])


# --------------------------------------------------------------------------- exact match and IFEval


def test_exact_match() -> None:
    completions = [
        "<search>iron</search><answer>It is 26.</answer><confidence>8</confidence>",
        "<think>hmm</think>The symbol is Fe.",
        "<think>hmm</think>Wolfram.",
        "<answer>Paris</answer>",
        "<think>the answer is 26",  # unclosed: no answer
        "anything",
    ]
    golds = ["26", "Fe", ["tungsten", "wolfram"], "Lyon", "26", None]
    assert call("exact_match", completions, answer=golds) == [1.0, 1.0, 1.0, 0.0, 0.0, None]
    assert reward_fns.predicted_answer("<answer>Paris<confidence>9</confidence>") == "Paris"
    assert reward_fns.predicted_answer("<answer><answer> Paris </answer></answer>") == "Paris"
    assert reward_fns.predicted_answer("<answer>Lyon</answer><answer></answer>") == "Lyon"
    assert reward_fns.predicted_answer("<think>a</think>Rome") == "Rome"


def test_ifeval_share_of_strict_instructions(ifeval_library: Path) -> None:
    spec = {
        "key": 1,
        "prompt": "Write a greeting in lowercase letters without commas.",
        "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
        "kwargs": [{}, {}],
    }
    completions = [
        "<think>Keep it lowercase.</think>hello there friend",
        "<think>ok</think>hello there, friend",
        "<think>ok</think>Hello there, friend",
        "plain",
    ]
    specs = [dict(spec, library=str(ifeval_library)), spec, spec, None]
    assert call("ifeval", completions, ifeval=specs) == [1.0, 0.5, 0.0, None]
    with pytest.raises(ConfigError, match="instruction_id_list"):
        call("ifeval", ["x"], ifeval=[{"key": 1, "library": str(ifeval_library)}])


# ----------------------------------------------------------------------- refusals and value models


def test_refusal_and_no_refusal() -> None:
    completions = [
        "<think>This is harmful.</think>I'm sorry, but I can't help with that.",
        "<think>Fine.</think>Sure! Paris is the capital of France.",
        "<think>I cannot help with that request, it is",  # unclosed: its reasoning is judged
        "I won't provide that information.",
    ]
    assert call("refusal", completions) == [1.0, 0.0, 1.0, 1.0]
    assert call("no_refusal", completions) == [0.0, 1.0, 0.0, 0.0]


def test_value_rules_pii_scores_the_visible_answer() -> None:
    fn = load_reward("value:rules:pii", RewardContext())
    completions = [
        "<think>mail a.b@example.org?</think>I will not share contact details.",
        "<think>ok</think>Write to a.b@example.org.",
    ]
    try:
        assert fn(["who?", "who?"], completions, label=["benign"] * 2) == [1.0, 0.0]
        assert fn([], []) == []
    finally:
        fn.close()  # type: ignore[attr-defined]


async def test_value_reward_works_inside_a_running_event_loop() -> None:
    fn = load_reward("value:rules:pii", RewardContext())
    values = fn(["q"], ["call +1 415-555-0133"])
    fn.close()  # type: ignore[attr-defined]
    assert values == [0.0]


class FakeValueModel(ValueModel):
    def __init__(self, name: str, spec: str) -> None:
        self.name, self.spec = name, spec

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        return [ValueScore(self.name, 0.25 if "bad" in r else 1.0) for r in responses]


def test_aliases_share_one_loaded_value_model(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[tuple[str, str]] = []

    def fake_load(name: str, spec: str, ctx: Any = None) -> ValueModel:
        loaded.append((name, spec))
        return FakeValueModel(name, spec)

    monkeypatch.setattr(registry, "load_value_model", fake_load)
    reward = MultiObjectiveReward({"safety": {"safety": 1.0, "value:builtin:safety": 1.0}})
    result = reward(["p", "p"], ["<think>x</think>ok", "bad"], ["safety", "safety"])
    reward.close()
    assert loaded == [("builtin:safety", "builtin:safety")]
    assert result.terms == {"safety": [1.0, 0.25], "value:builtin:safety": [1.0, 0.25]}
    assert result.total == [1.0, 0.25]


# --------------------------------------------------------------- search reward and adaptive lambda


def test_search_reward_by_hand() -> None:
    right = "<search>q</search><answer>Paris</answer><confidence>9</confidence>"
    wrong = "<answer>Lyon</answer><confidence>9</confidence>"
    values = call(
        "search",
        [right, wrong, "<search>q</search> no answer", right],
        answer=["Paris", "Paris", "Paris", None],
        confidence=[0.9, 0.9, 0.9, 0.9],
        lam=0.5,
        label=["search"] * 4,
    )
    assert values[0] == pytest.approx(1.495)  # 1 * (0.1 + 0.9 + 0.5 * (1 - 0.01))
    assert values[1] == pytest.approx(0.195)  # 0.1 + 0 + 0.5 * (1 - 0.81)
    assert values[2:] == [0.0, None]


def test_search_reward_confidence_fallbacks_and_cut_generations() -> None:
    tagged = "<answer>Paris</answer><confidence>7</confidence>"
    untagged = "<answer>Paris</answer>"
    values = call(
        "search",
        [tagged, untagged, tagged],
        answer=["Paris"] * 3,
        confidence=[None, None, 0.9],
        lam=[1.0, 1.0, 1.0],
        finish_reason=[None, None, "length"],
    )
    assert values[0] == pytest.approx(1.0 + (1 - 0.3**2))  # parsed from the tag: 0.7
    assert values[1] == pytest.approx(1.0 + 0.75)  # no confidence at all: 0.5
    assert values[2] == 0.0  # cut by max_tokens: format 0
    default_lam = call("search", [untagged], answer=["Paris"], confidence=[1.0])
    assert default_lam == [pytest.approx(1.0 + reward_fns.DEFAULT_LAMBDA)]


def test_search_reward_gives_a_fallback_answer_no_protocol_credit() -> None:
    """The loop's fallback writes a well-formed, even right, ``<answer>`` for a policy that
    never wrote one; only the policy's own answer earns the protocol term (and so anything)."""
    text = "<search>capital of France</search><answer>Paris</answer><confidence>8</confidence>"
    values = call(
        "search",
        [text, text, text],
        answer=["Paris"] * 3,
        confidence=[0.8] * 3,
        lam=[0.5] * 3,
        protocol=["model", "fallback", None],
    )
    own = 0.1 + 0.9 + 0.5 * (1 - 0.2**2)
    assert values == [pytest.approx(own), 0.0, pytest.approx(own)]  # None: not a loop rollout


def test_reliability() -> None:
    pairs = [(1.0, 1.0), (1.0, 0.0), (0.5, 0.0), (0.9, 1.0), (1.5, -1.0)]  # the last: clamped
    assert [reliability(c, k) for c, k in pairs] == pytest.approx([1.0, 0.0, 0.75, 0.99, 0.0])


def test_confidently_wrong_rate() -> None:
    assert confidently_wrong_rate([0.9, 0.7, 0.2, 0.9], [0.0, 0.0, 0.0, 1.0], 0.7) == 0.5
    assert confidently_wrong_rate([None, None], [0.0, 0.0], 0.5) == 1.0  # None counts as 0.5
    assert confidently_wrong_rate([None], [0.0], 0.7) == confidently_wrong_rate([], [], 0.7) == 0
    with pytest.raises(ValueError, match="confidences"):
        confidently_wrong_rate([0.9], [], 0.7)


def test_adaptive_lambda_rises_falls_and_clips() -> None:
    lam = AdaptiveLambda(value=0.5, target=0.1, step=0.5)
    assert lam.update([0.9] * 4, [0.0, 0.0, 1.0, 1.0]) == pytest.approx(0.5 + 0.5 * 0.4)
    assert lam.update([0.9] * 4, [1.0] * 4) == pytest.approx(0.7 - 0.05)  # rate 0 < target
    assert lam.update([], []) == pytest.approx(0.65)  # an empty batch changes nothing
    high = AdaptiveLambda(value=1.9, step=1.0, high=2.0)
    assert high.update([1.0], [0.0]) == 2.0
    low = AdaptiveLambda(value=0.02, step=1.0, low=0.0)
    assert low.update([0.1], [0.0]) == 0.0


def test_adaptive_lambda_state_round_trip_and_checks() -> None:
    lam = AdaptiveLambda(value=0.8, target=0.2, step=0.25, high=1.5, threshold=0.6)
    lam.update([0.9], [0.0])
    restored = AdaptiveLambda()
    restored.load_state_dict(lam.state_dict())
    assert restored == lam
    with pytest.raises(ConfigError, match="unknown keys"):
        restored.load_state_dict({"valu": 1.0})
    with pytest.raises(ConfigError, match=r"lam\.value"):
        restored.load_state_dict({"value": 9.0})
    assert restored == lam  # a rejected state changes nothing
    with pytest.raises(ConfigError, match=r"lam\.value must be within"):
        AdaptiveLambda(value=3.0)
    with pytest.raises(ConfigError, match=r"lam\.low must be"):
        AdaptiveLambda(low=1.0, high=0.5)
    with pytest.raises(ConfigError, match="threshold"):
        AdaptiveLambda(threshold=1.5)


# --------------------------------------------------------------------------- routing


def test_weighted_mean_terms_and_means(arithmetic: list[dict[str, Any]]) -> None:
    routes = {"math": {"format": 0.2, "reasoning_gym": 0.8}, "harm": {"refusal": 1.0}}
    reward = MultiObjectiveReward(routes)
    entry = arithmetic[0]
    wrong = str(int(entry["answer"]) + 7)
    result = reward(
        ["math q", "harm q", "math q"],
        [f"<think>x</think>{wrong}", "I'm sorry, but I can't help with that.", "<think>x</think>3"],
        ["math", "harm", "math"],
        dataset=["basic_arithmetic", None, None],
        entry=[entry, None, None],
        answer=[entry["answer"], None, None],
        finish_reason=["stop"] * 3,
    )
    assert isinstance(result, RewardResult)
    assert result.terms == {
        "format": [1.0, None, 1.0],
        "reasoning_gym": [0.0, None, None],  # the third has no entry: not applicable
        "refusal": [None, 1.0, None],
    }
    assert result.total == [pytest.approx(0.2), 1.0, 1.0]
    names = ["format", "reasoning_gym", "refusal", "total", "math/total", "harm/total"]
    expected = dict(zip([f"reward/{n}" for n in names], [1, 0, 1, 2.2 / 3, 0.6, 1], strict=True))
    assert result.means(["math", "harm", "math"]) == pytest.approx(expected)
    assert reward.labels == ["math", "harm"]
    assert reward.routes == parse_routes(routes)
    reward.routes["math"]["format"] = 9.0  # a copy
    assert reward.routes["math"]["format"] == 0.2


def test_sub_batches_get_sliced_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], dict[str, Any]]] = []

    def probe(prompts: list[str], completions: list[str], **meta: Any) -> list[float | None]:
        seen.append((prompts, meta))
        return [0.5, None]

    monkeypatch.setitem(REWARDS, "probe", lambda ctx: probe)
    reward = MultiObjectiveReward({"a": {"probe": 1.0, "format": 0.0}, "b": {"format": 1.0}})
    result = reward(
        ["p0", "p1", "p2", "p3"],
        ["x", GOOD, "y", GOOD],
        ["b", "a", "b", "a"],
        answer=["g0", "g1", "g2", "g3"],
        lam=0.7,
    )
    assert seen == [(["p1", "p3"], {"answer": ["g1", "g3"], "lam": 0.7, "label": ["a", "a"]})]
    assert result.terms["probe"] == [None, 0.5, None, None]
    assert result.terms["format"] == [0.0, 1.0, 0.0, 1.0]  # weight 0: logged, not trained on
    assert result.total == [0.0, 0.5, 0.0, 0.0]  # the last: only a weight-0 term applies


def test_sample_without_any_applicable_term_scores_zero_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reward = MultiObjectiveReward({"qa": {"exact_match": 1.0}})
    with caplog.at_level(logging.WARNING, logger="safework.training.rewards"):
        result = reward(["q", "q", "q"], ["<answer>x</answer>"] * 3, ["qa"] * 3, answer=[None] * 3)
        reward(["q"], ["x"], ["qa"], answer=[None])
    assert result.total == [0.0, 0.0, 0.0]
    assert result.terms == {"exact_match": [None, None, None]}
    assert result.means(["qa"] * 3) == {"reward/total": 0.0, "reward/qa/total": 0.0}
    assert sum("no reward applied" in r.message for r in caplog.records) == 1


def test_call_time_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REWARDS, "short", lambda ctx: lambda p, c, **m: [1.0])
    reward = MultiObjectiveReward({"math": {"format": 1.0}, "odd": {"short": 1.0}})
    with pytest.raises(ConfigError, match=r"label 'poetry' has no reward route.*math, odd"):
        reward(["q"], [GOOD], ["poetry"])
    with pytest.raises(ValueError, match="answer"):
        reward(["q"], [GOOD], ["math"], answer=["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        reward(["q"], [GOOD], ["math", "math"])
    with pytest.raises(RuntimeError, match="short"):
        reward(["q", "q"], [GOOD, GOOD], ["odd", "odd"])


@pytest.mark.parametrize(
    ("routes", "match"),
    [
        (["math"], "expected a mapping"),
        ({}, "expected a mapping"),
        ({"": {"format": 1.0}}, "non-empty string"),
        ({"math": {}}, r"routes\.math: expected a mapping"),
        ({"math": "format"}, r"routes\.math: expected a mapping"),
        ({"math": {"formatt": 1.0}}, "unknown reward 'formatt'; known: .*value:SPEC"),
        ({"math": {"format": "1"}}, r"routes\.math\.format: expected a number"),
        ({"math": {"format": True}}, "expected a number"),
        ({"math": {"format": -0.5}}, "must be 0 or more"),
        ({"math": {"format": float("nan")}}, "must be 0 or more"),
        ({"math": {"format": 0, "refusal": 0.0}}, "all weights are 0"),
        ({"math": {"value:nope:x": 1.0}}, "reward 'value:nope:x': unknown value model spec"),
        ({"math": {"value:hf:": 1.0}}, "unknown value model spec"),
    ],
)
def test_route_errors(routes: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_routes(routes)


@pytest.mark.parametrize(
    "routes",
    [
        {"a": {"value:rules:pii": 1.0}, "b": {"bogus": 1.0}},
        {"a": {"safety": 1.0, "values": 1.0}, "b": {"format": -1.0}},
        {"a": {"value:builtin:safety": 1.0}, "b": {"value:judge": 1.0}},
    ],
)
def test_bad_routes_fail_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, routes: dict[str, dict[str, float]]
) -> None:
    def must_not_load(*args: Any, **kwargs: Any) -> ValueModel:
        raise AssertionError("a value model was loaded before the routes were checked")

    monkeypatch.setattr(registry, "load_value_model", must_not_load)
    with pytest.raises(ConfigError):
        MultiObjectiveReward(routes)


def test_names_and_default_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {"format", "reasoning_gym", "exact_match", "ifeval", "refusal", "no_refusal"}
    assert expected | {"safety", "values", "search"} == set(REWARDS)
    assert reward_names()[-2:] == ["value:SPEC", "py:MODULE:FUNCTION"]
    monkeypatch.setattr(registry, "load_value_model", None)  # checks must not load
    check_reward_name("value:builtin:safety")
    check_reward_name("value:rules:pii")
    with pytest.raises(ConfigError, match="unknown reward 'length'"):
        check_reward_name("length")
    assert parse_routes(DEFAULT_ROUTES) == DEFAULT_ROUTES


def test_python_rewards_are_imported_by_name() -> None:
    fn = load_reward("py:tests.rl_rewards:spaces")
    assert fn(["p"], ["a b c"]) == [0.25]
    with pytest.raises(ConfigError, match=r"write py:package\.module:function"):
        check_reward_name("py:tests.rl_rewards")
    with pytest.raises(ConfigError, match="cannot import it"):
        check_reward_name("py:tests.rl_rewards:missing")
    with pytest.raises(ConfigError, match="cannot import it"):
        check_reward_name("py:no_such_module_here:fn")
