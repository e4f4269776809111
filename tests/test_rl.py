"""The RL stages: config errors before compute, rollouts and masks, and tiny-model smoke runs.

The smoke runs train ``peaked_model`` (conftest): a random two-layer Llama with SmolLM2's
tokenizer whose weights are drawn wide, so a few dozen steps can move its preferences. The
learnable reward is ``spaces`` of ``tests/rl_rewards.py``, named ``py:tests.rl_rewards:spaces``
as users name their own reward functions. Over 30 steps of CPGD the mean reward of the last
steps must beat the first ones, for each stage. The efficient run also records its length term:
computed on the samples' own reasoning lengths, added to the rewards, never given to a bad
sample, and larger for the shorter of two good ones. (Whether the policy then writes shorter
reasoning is not tested here: a random tiny policy never samples the end of its reasoning, so
its lengths differ by a token or two, and which seed shortens them varies.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from safework.engine.base import SamplingConfig
from safework.errors import ConfigError
from safework.search.deliberative import SearchConfig
from safework.training.cli import main
from safework.training.config import load_config
from safework.training.rl import RLConfig, train_rl
from safework.training.rl_config import SearchSection

torch = pytest.importorskip("torch")


SPACES = "py:tests.rl_rewards:spaces"


def _prompts(path: Path, labels: dict[str, int]) -> Path:
    rows = []
    for label, n in labels.items():
        for i in range(n):
            rows.append({"id": f"{label}-{i}", "label": label, "prompt": f"Say {i} {label}."})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stage": "ppo"}, "unknown stage 'ppo'"),
        ({"group_size": 1}, "group_size must be at least 2"),
        ({"rewards": {"math": {"format": -0.5}}, "phase2_labels": ["math"]}, "must be 0 or more"),
        ({"rewards": {"math": {"nonsense": 1.0}}, "phase2_labels": ["math"]}, "unknown reward"),
        ({"rewards": {"math": {"format": 1.0}}}, "no reward route"),
        ({"cpgd": {"clip_eps": 1.5}}, "clip_eps"),
        ({"temperature": 0}, "temperature"),
        ({"micro_batch_tokens": -1}, "micro_batch_tokens must be 0 or more"),
    ],
)
def test_bad_settings_are_refused_before_any_compute(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(RLConfig, None, values)


def test_search_section_fills_the_loops_config() -> None:
    section = SearchSection(max_turns=2, read=False)
    config = section.search_config()
    assert (config.max_turns, config.read, config.top_k, config.prior_check) == (2, False, 3, False)
    ours, loops = get_type_hints(SearchSection), get_type_hints(SearchConfig)
    for f in fields(SearchSection):
        if f.name != "backend":
            assert ours[f.name] == loops[f.name], f.name


def test_cli_reports_bad_input_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rl", "--stage", "m3rl", "group_size=1"]) == 1
    assert "group_size must be at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rl", "--stage", "grpo"])


def test_missing_label_in_data_is_named(tiny_model: Path, tmp_path: Path) -> None:
    data = _prompts(tmp_path / "p.jsonl", {"math": 4})
    config = load_config(
        RLConfig, None, {"model": str(tiny_model), "data": str(data), "output": str(tmp_path / "o")}
    )
    with pytest.raises(ConfigError, match=r"no prompts labelled \['benign', 'safety'\]"):
        train_rl(config)


# --------------------------------------------------------------------------- rollouts


def test_groups_share_one_batched_generate(policy: Any) -> None:
    from safework.training.rollout import sample_group

    calls = []
    real = policy._generate_rows

    def counting(prompts: list[list[int]], s: SamplingConfig, *rest: Any) -> Any:
        calls.append(len(prompts))
        return real(prompts, s, *rest)

    policy._generate_rows = counting
    sampling = SamplingConfig(max_tokens=6, temperature=1.0)

    async def run() -> list[Any]:
        return await asyncio.gather(
            sample_group(policy, [1, 2, 3], 4, sampling, "a"),
            sample_group(policy, [4, 5], 4, sampling, "b"),
        )

    try:
        groups = asyncio.run(run())
    finally:
        policy._generate_rows = real
    assert calls == [8]  # both groups' 8 rows in one left-padded generate
    for group in groups:
        assert len(group) == 4
        for t in group:
            assert 1 <= len(t.completion_ids) <= 6
            assert t.loss_mask == [1] * len(t.completion_ids)
    assert groups[1][0].prompt_ids == [4, 5]


def test_stop_strings_cut_the_choice(policy: Any) -> None:
    tok = policy.tokenizer
    ids = tok("alpha beta gamma", add_special_tokens=False)["input_ids"]
    s = SamplingConfig(max_tokens=8, stop=[" beta"], include_stop_str_in_output=True)
    choice = policy._choice(0, [*ids, 7, 7], None, s)
    assert choice.text == "alpha beta"
    assert choice.finish_reason == "stop"
    assert choice.stop_reason == " beta"
    assert tok.decode(choice.token_ids).endswith("beta")
    s2 = SamplingConfig(max_tokens=8)
    eos = next(iter(policy.eos_ids))
    cut = policy._choice(0, [ids[0], eos, ids[1]], None, s2)
    assert list(cut.token_ids) == [ids[0], eos]  # the end token is kept: the policy chose it
    assert cut.finish_reason == "stop"


def test_search_rollout_masks_inserted_text(policy: Any) -> None:
    from safework.search.deliberative import DeliberativeSearch, SearchConfig
    from safework.training.reward_fns import search_format_ok
    from safework.training.rollout import search_group
    from tests.fakes import SEARCH_DOCS, BagOfWordsEncoder, FakeSearchBackend

    backend = FakeSearchBackend(SEARCH_DOCS)
    config = SearchConfig(max_turns=2, turn_max_tokens=8, answer_max_tokens=4, prior_check=False)
    messages = [{"role": "user", "content": "What is the atomic number of tungsten?"}]
    strategies = [
        DeliberativeSearch(config, backend, messages, messages[0]["content"], BagOfWordsEncoder())
        for _ in range(2)
    ]
    sampling = SamplingConfig(max_tokens=24, temperature=1.0)
    group = asyncio.run(search_group(policy, strategies, [1, 2, 3], sampling, "s"))
    tok = policy.tokenizer
    for t in group:
        assert len(t.completion_ids) == len(t.loss_mask)
        pairs = list(zip(t.completion_ids, t.loss_mask, strict=True))
        inserted = tok.decode([i for i, m in pairs if m == 0])
        generated = [i for i, m in pairs if m == 1]
        assert "<information>" in inserted  # the retrieved results are never trained
        assert generated, "the model's own turn is trained"
        assert "<information>" not in tok.decode(generated)
        # the transcript is whole: the think block the loop opened is closed (inserted text)
        assert t.text.startswith("<think>")
        assert t.text.rstrip().endswith("</think>")
        assert search_format_ok(t.text)
        # who answered: the loop's fallback inserts its <answer> (masked), the policy writes its own
        assert t.protocol == ("fallback" if "<answer>" in inserted else "model")


def test_batch_mask_lines_up_with_the_completion(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from safework.training.rl_update import collate_samples
    from safework.training.rollout import Trajectory

    pad = AutoTokenizer.from_pretrained(tiny_model).pad_token_id
    t = Trajectory([11, 12, 13], [21, 22, 23, 24], [1, 0, 0, 1], "x")
    short = Trajectory([11], [31], [1], "y")
    batch = collate_samples([(t, 0.5), (short, -1.0)], pad, torch.device("cpu"))
    # targets are input positions 1..; the completion starts at target index len(prompt) - 1
    assert batch["mask"][0].tolist() == [0, 0, 1, 0, 0, 1]
    assert batch["mask"][1].tolist() == [1, 0, 0, 0, 0, 0]
    assert batch["input_ids"][0].tolist() == [11, 12, 13, 21, 22, 23, 24]
    assert batch["advantages"].tolist() == [0.5, -1.0]


@pytest.mark.parametrize(
    ("lengths", "size", "tokens", "runs"),
    [
        ([5, 3, 4, 1], 8, 0, [[3, 1, 2, 0]]),  # sorted by length, one run
        ([5, 3, 4, 1], 2, 0, [[3, 1], [2, 0]]),
        ([100, 10, 10, 10, 60], 8, 120, [[1, 2, 3], [4], [0]]),  # 4 x 60 > 120
        ([500, 20], 8, 100, [[1], [0]]),  # longer than the budget: alone
    ],
)
def test_micro_batches_hold_at_most_size_sequences_and_the_token_budget(
    lengths: list[int], size: int, tokens: int, runs: list[list[int]]
) -> None:
    from safework.training.rl_update import micro_batches

    got = micro_batches(lengths, size, tokens)
    assert got == runs
    assert sorted(i for run in got for i in run) == list(range(len(lengths)))
    for run in got:
        width = max(lengths[i] for i in run)
        assert len(run) <= size
        assert not tokens or len(run) == 1 or len(run) * width <= tokens


# --------------------------------------------------------------------------- smoke runs


def _rise(output: Path, k: int = 6, last: int | None = None) -> tuple[float, float]:
    """Mean reward of the first ``k`` steps and of the last ``last`` (default ``k``)."""
    rows = [json.loads(x) for x in (output / "log.jsonl").read_text().splitlines()]
    rewards_ = [r["reward/total"] for r in rows if "reward/total" in r]
    last = last or k
    return sum(rewards_[:k]) / k, sum(rewards_[-last:]) / last


def _smoke(
    model: Path, tmp_path: Path, stage: str, labels: dict, encoder: Any = None, **extra: Any
) -> Path:
    data = _prompts(tmp_path / "prompts.jsonl", labels)
    values = {
        "stage": stage,
        "model": str(model),
        "data": str(data),
        "output": str(tmp_path / stage),
        "method": "full",
        "max_steps": extra.pop("max_steps", 30),
        "prompts_per_step": 4,
        "group_size": 4,
        "max_new_tokens": 8,
        "lr": 1e-2,
        "held_out": 0,
        "save_every": 0,
        **extra,
    }
    summary = train_rl(load_config(RLConfig, None, values), encoder)
    assert summary["steps"] == values["max_steps"]
    assert (tmp_path / stage / "config.json").is_file()  # servable folder
    return tmp_path / stage


def test_m3rl_smoke_reward_rises_through_both_phases(peaked_model: Path, tmp_path: Path) -> None:
    routes = {"math": {SPACES: 1.0}, "safety": {SPACES: 1.0}}
    out = _smoke(
        peaked_model,
        tmp_path,
        "m3rl",
        {"math": 8, "safety": 8},
        rewards=routes,
        phase1_labels=["math"],
        phase2_labels=["math", "safety"],
    )
    first, last = _rise(out)
    assert last > first + 0.05, (first, last)
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in rows if "phase" in r]
    assert phases[:15] == [1] * 15
    assert phases[15:] == [2] * 15
    assert any("reward/safety/total" in r for r in rows[15:])  # each label logged


THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
"""SmolLM2's template with the assistant turn opened in ``<think>``: the whole completion is
reasoning, so the tiny policy's samples have reasoning of different lengths."""


def test_efficient_smoke_rewards_shorter_reasoning(
    peaked_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The efficient stage's length term is computed on the samples' real reasoning lengths,
    reaches the advantages, goes only to good samples, and to the shorter ones among them."""
    from safework.training import cpgd

    seen: list[tuple[list[float], list[bool], list[float]]] = []
    real = cpgd.length_bonus

    def recording(lengths: Any, good: Any, group_size: int) -> Any:
        bonus = real(lengths, good, group_size)
        seen.append((lengths.tolist(), good.tolist(), bonus.tolist()))
        return bonus

    monkeypatch.setattr(cpgd, "length_bonus", recording)
    # the tiny policy never reaches its end token within 8 tokens, and a sample cut off at the
    # limit is never good; read each rollout as finished, so the good rule decides on rewards
    from safework.training.rl_trainer import RLRun

    real_rollout = RLRun.rollout

    def finished(self: Any, *args: Any, **kwargs: Any) -> Any:
        groups = real_rollout(self, *args, **kwargs)
        return [[replace(t, finish_reason="stop") for t in g] for g in groups]

    monkeypatch.setattr(RLRun, "rollout", finished)
    template = tmp_path / "think.jinja"
    template.write_text(THINK_TEMPLATE, encoding="utf-8")
    out = _smoke(
        peaked_model,
        tmp_path,
        "efficient",
        {"math": 8},
        rewards={"math": {SPACES: 1.0}},
        chat_template=str(template),
    )
    first, last = _rise(out)
    assert last > first + 0.05, (first, last)
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/total" in r]
    assert len(seen) == len(steps) == 30  # the term is computed at every step
    for (lengths, good, _), row in zip(seen, steps, strict=True):
        # on the step's own samples: the lengths are the reasoning the log reports
        assert sum(lengths) / len(lengths) == pytest.approx(row["reasoning_tokens_mean"])
        assert sum(good) / len(good) == pytest.approx(row["good_share"])
        # and it is added to the rewards the advantages are computed from (weight 0.5)
        shaped = row["reward/total"] + 0.5 * row["length_bonus_mean"]
        assert row["shaped_reward_mean"] == pytest.approx(shaped, abs=1e-5)
    rewarded, longest = [], []
    for lengths, good, bonus in seen:
        for at in range(0, len(lengths), 4):  # group by group
            group = list(
                zip(lengths[at : at + 4], good[at : at + 4], bonus[at : at + 4], strict=True)
            )
            assert all(b == 0 for _, ok, b in group if not ok)  # bad samples never earn it
            kept = [(n, b) for n, ok, b in group if ok]
            for (n1, b1), (n2, b2) in itertools.combinations(kept, 2):
                if n1 != n2:  # the shorter of two good samples earns more
                    assert (b1 > b2) == (n1 < n2), group
            rewarded += [n for n, b in kept if b > 0]
            longest += [n for n, b in kept if b == 0 and len({m for m, _ in kept}) > 1]
    assert len(rewarded) >= 10, "too few groups with good samples of different lengths"
    assert sum(rewarded) / len(rewarded) < sum(longest) / len(longest)


def test_search_smoke(peaked_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safework.search import base as search_base
    from tests.fakes import BagOfWordsEncoder

    monkeypatch.setitem(search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
    out = _smoke(
        peaked_model,
        tmp_path,
        "search",
        {"search": 8},
        encoder=BagOfWordsEncoder(),
        rewards={"search": {SPACES: 1.0}},
        max_new_tokens=16,
        max_steps=40,
        max_grad_norm=0,
        lr=2e-2,
        **{
            "search": {
                "backend": "fake:docs",
                "max_turns": 1,
                "turn_max_tokens": 8,
                "info_max_chars": 240,
                "read": False,
            }
        },
    )
    # Rollouts are seeded by step and prompt, and a seeded request draws the same tokens in any
    # batch, so the run is reproducible on one machine. Another CPU's rounding gives another
    # run: with the run's seed set to 0..7 the second half beat the first six steps by 0.11
    # to 0.35 (first six 0.59-0.69).
    first, last = _rise(out, last=20)
    assert last > first + 0.05, (first, last)
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/total" in r]
    assert all("lam" in r for r in steps)
    # who answered, every step: the tiny policy never writes <answer>, so the loop always did
    assert [r["protocol_model"] for r in steps] == [0.0] * len(steps)


# --------------------------------------------------------------------------- step logic


def _bare_run(tiny_model: Path, **values: Any) -> Any:
    """An ``RLRun`` with only what scoring and prompt drawing read (no model, no folder)."""
    from transformers import AutoTokenizer

    from safework.training.rl_scoring import Scoring
    from safework.training.rl_trainer import RLRun

    run = RLRun.__new__(RLRun)
    run.rl = load_config(RLConfig, None, values)
    run.tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    run.scoring = Scoring(run.rl, run.tokenizer, reward=None, lam=None, opens_reasoning=False)
    run.dist = type("Dist", (), {"rank": 0, "world_size": 1, "is_main": True})()
    return run


def test_efficient_length_term_rewards_only_good_short_reasoning(tiny_model: Path) -> None:
    from safework.training.rewards import RewardResult
    from safework.training.rollout import Trajectory

    run = _bare_run(tiny_model, stage="efficient", length_weight=0.5, advantage="mean")
    words = [10, 30, 5, 20]  # reasoning lengths; sample 2 is wrong (and the shortest)
    flat = [Trajectory([1], [2], [1], f"<think>{' word' * n}</think>\n\nA") for n in words]
    result = RewardResult(
        total=[1.0, 1.0, 0.2, 1.0],
        terms={"format": [1.0, 1.0, 1.0, 1.0], "reasoning_gym": [1.0, 1.0, 0.0, 1.0]},
    )
    adv, keep, info = run.scoring.advantages(result, flat)
    # good lengths 10, 30, 20 -> bonus 1, 0, 0.5; the wrong sample gets none
    shaped = [1.5, 1.0, 0.2, 1.25]
    mean = sum(shaped) / 4
    assert adv == pytest.approx([s - mean for s in shaped])
    assert keep == [True] * 4
    assert info["good_share"] == 0.75


def test_efficient_good_rule_reads_outcomes_not_format_and_drops_cut_off_samples(
    tiny_model: Path,
) -> None:
    """A right answer whose format term failed is still good (the report's conditional length
    reward: brevity among correct answers); a sample cut off at the token limit never is;
    ``good_ignores=[]`` makes every routed term decide."""
    from safework.training.rewards import RewardResult
    from safework.training.rollout import Trajectory

    words = [10, 30, 5, 20]
    finish = ["stop", "stop", "stop", "length"]
    flat = [
        Trajectory([1], [2], [1], f"<think>{' word' * n}</think>\n\nA", finish_reason=f)
        for n, f in zip(words, finish, strict=True)
    ]
    result = RewardResult(
        total=[0.8, 0.8, 0.8, 0.8],
        terms={"format": [0.0, 1.0, 0.0, 1.0], "reasoning_gym": [1.0, 1.0, 1.0, 1.0]},
    )
    run = _bare_run(tiny_model, stage="efficient", length_weight=0.5, advantage="mean")
    assert [run.scoring.good(result, flat, i) for i in range(4)] == [True, True, True, False]
    _, _, info = run.scoring.advantages(result, flat)
    assert info["good_share"] == 0.75
    # good lengths 10, 30, 5 -> bonus 0.8, 0, 1; the cut-off one gets none
    assert info["length_bonus_mean"] == pytest.approx((0.8 + 0.0 + 1.0 + 0.0) / 4)
    strict = _bare_run(tiny_model, stage="efficient", good_ignores=[])
    assert [strict.scoring.good(result, flat, i) for i in range(4)] == [False, True, False, False]


def _pools(n: int) -> dict[str, list[Any]]:
    """``n`` one-line prompts for each of math, safety and benign (ids ``label-i``)."""
    from safework.training.rl_data import RLPrompt

    user = [{"role": "user", "content": "q"}]
    labels = ("math", "safety", "benign")
    return {label: [RLPrompt(f"{label}-{i}", label, user) for i in range(n)] for label in labels}


def test_prompts_follow_the_curriculum_and_are_a_function_of_the_step(tiny_model: Path) -> None:
    run = _bare_run(
        tiny_model,
        stage="m3rl",
        max_steps=10,
        prompts_per_step=4,
        phase1_share=0.3,
        phase2_labels=["math", "safety", "benign"],
    )
    run.pools = _pools(5)
    labels = [[p.label for p in run.step_prompts(s)] for s in range(10)]
    assert all(set(ls) == {"math"} for ls in labels[:3])  # phase 1: 30% of 10 steps
    assert all({"safety", "benign"} <= set(ls) for ls in labels[3:])
    again = [[p.id for p in run.step_prompts(s)] for s in range(10)]
    assert again == [[p.id for p in run.step_prompts(s)] for s in range(10)]
    math_ids = [p.id for s in range(3) for p in run.step_prompts(s)]
    assert sorted(math_ids[:5]) == [f"math-{i}" for i in range(5)]  # an epoch sees each once


def test_a_stage_gets_the_default_routes_of_the_labels_it_names() -> None:
    m3rl = RLConfig(stage="m3rl", phase1_labels=["math", "ifeval"])
    assert set(m3rl.routes()) == {"math", "ifeval", "safety", "benign"}
    assert m3rl.routes()["ifeval"] == {"format": 0.2, "ifeval": 0.8}
    assert set(RLConfig(stage="m3rl").routes()) == {"math", "safety", "benign"}
    assert set(RLConfig(stage="efficient").routes()) == {"math", "safety", "benign"}
    assert set(RLConfig(stage="efficient", labels=["math"]).routes()) == {"math"}
    with pytest.raises(ConfigError, match="no reward route"):
        RLConfig(stage="efficient", labels=["poetry"]).check()


def test_a_label_listed_twice_is_drawn_twice_as_often_without_repeats(tiny_model: Path) -> None:
    from collections import Counter

    run = _bare_run(
        tiny_model,
        stage="efficient",
        max_steps=6,
        prompts_per_step=8,
        labels=["math", "safety", "benign", "benign"],
    )
    run.pools = _pools(12)
    drawn = [p for s in range(3) for p in run.step_prompts(s)]
    assert Counter(p.label for p in drawn) == {"benign": 12, "math": 6, "safety": 6}
    benign = [p.id for p in drawn if p.label == "benign"]
    assert sorted(benign) == sorted(f"benign-{i}" for i in range(12))  # one epoch, each once


class _Crash(Exception):
    pass


def test_interrupted_run_resumes_at_its_checkpoint(
    peaked_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed during step 5 with a checkpoint at 3: the rerun trims steps 4-5 from the log,
    redoes them from the checkpoint's RNG state and ends on the uninterrupted run's weights."""
    from safetensors.torch import load_file

    from safework.training.rl_trainer import RLRun

    data = _prompts(tmp_path / "prompts.jsonl", {"math": 8})
    values = {
        "stage": "efficient",
        "model": str(peaked_model),
        "data": str(data),
        "method": "full",
        "rewards": {"math": {SPACES: 1.0}},
        "max_steps": 6,
        "prompts_per_step": 2,
        "group_size": 4,
        "max_new_tokens": 6,
        "lr": 1e-2,
        "held_out": 0,
        "save_every": 3,
    }
    train_rl(load_config(RLConfig, None, {**values, "output": str(tmp_path / "ref")}))
    original = RLRun.update
    calls = []

    def crash_in_step_5(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:
            raise _Crash
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RLRun, "update", crash_in_step_5)
    out = tmp_path / "run"
    with pytest.raises(_Crash):
        train_rl(load_config(RLConfig, None, {**values, "output": str(out)}))
    monkeypatch.undo()
    summary = train_rl(load_config(RLConfig, None, {**values, "output": str(out)}))
    assert summary["resumed_from_step"] == 3
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "reward/total" in r] == [1, 2, 3, 4, 5, 6]
    ref, got = (
        load_file(tmp_path / "ref" / "model.safetensors"),
        load_file(out / "model.safetensors"),
    )
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
