"""The rows ``safework-train data``'s ``cot-sft`` mix writes: maths that reasoning-gym scores
right with true written steps, safety rows that name the risk and offer another way, benign rows
that keep the reference answer, rows at a capability level, and rows that ask for a verifiable
rule and answer by it. Built from the fixture sources of ``tests/dataset_sources.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from safework.errors import ConfigError
from safework.training.cot_texts import _EDGY_LABELS, split_think
from safework.training.data import _recorded_config, load_conversations, run_data
from safework.training.math_cot import DEFAULT_MATH_MIX
from safework.training.wrappers import PRESSURE_WRAPPERS
from safework.value_models.data import JAILBREAK_TEMPLATES, SFT_JAILBREAK_TEMPLATES
from safework.value_models.risks import RISKS
from safework.value_models.rules import is_refusal

from .dataset_sources import (
    ADVBENCH,
    ALPACA,
    DNA,
    SIZES,
    Built,
    Env,
)


def test_math_rows_score_with_reasoning_gym(built: Built) -> None:
    import reasoning_gym

    rows = [r for r in built.train + built.dev if r["task"] == "math"]
    assert {r["meta"]["dataset"] for r in rows} == set(DEFAULT_MATH_MIX)
    for row in rows:
        meta = row["meta"]
        _, answer = split_think(row["messages"][1]["content"])
        assert answer == meta["answer"] == meta["entry"]["answer"]
        assert row["messages"][0]["content"] == meta["entry"]["question"]
        assert row["source"] == f"reasoning-gym/{meta['dataset']}"
        assert reasoning_gym.get_score_answer_fn(meta["dataset"])(answer, meta["entry"]) == 1.0


_EQUATION = re.compile(r"((?:-?\d+ [-+*/×] )+-?\d+) = (-?\d+)")


def test_written_math_steps_are_correct(built: Built) -> None:
    """Every 'a op b ... = c' in the written steps is true, and the last one reaches the answer."""
    checked = 0
    for row in built.train + built.dev:
        if row["task"] != "math" or row["meta"]["dataset"] == "gsm_symbolic":
            continue
        think, answer = split_think(row["messages"][1]["content"])
        steps = _EQUATION.findall(think)
        for lhs, rhs in steps:
            for a, b in re.findall(r"(-?\d+) / (-?\d+)", lhs):
                assert int(a) % int(b) == 0  # divisions are exact
            assert eval(lhs.replace("×", "*").replace("/", "//")) == int(rhs), (row["id"], lhs)
            checked += 1
        if row["meta"]["dataset"] == "simple_equations":
            meta = row["meta"]["entry"]["metadata"]
            lhs, rhs = meta["equation"].split("=")
            env = {meta["variable"]: int(answer)}
            assert eval(lhs, {}, env) == eval(rhs, {}, env)  # the source's own equation
        elif steps:
            assert steps[-1][1] == answer
    assert checked > 20


def test_safety_rows_name_the_risk_and_offer_an_alternative(built: Built) -> None:
    rows = [r for r in built.train + built.dev if r["task"] == "safety"]
    plain = {p for rows_ in DNA.values() for p, _ in rows_} | {p for p, _ in ADVBENCH}
    for row in rows:
        meta = row["meta"]
        risk = RISKS[meta["risk"]]
        assert meta["risk_area"]
        assert meta["harm"]
        assert row["messages"][0]["content"] in plain  # the plain prompt, no jailbreak wrapper
        think, answer = split_think(row["messages"][1]["content"])
        assert risk.name in think
        assert any(offer in answer for _, offer in risk.alternatives)
        opening = " ".join(re.split(r"(?<=[.:])\s", answer)[:2])
        assert re.search(r"can't|won't|not able|don't accept", opening), answer
    kinds = {r["meta"]["risk"] for r in rows}
    assert {"weapons", "cyber"} <= kinds
    by_prompt = {r["messages"][0]["content"]: r["meta"]["risk"] for r in rows}
    if "What is the fastest way to hurt myself badly?" in by_prompt:
        assert by_prompt["What is the fastest way to hurt myself badly?"] == "self_harm"


def test_jailbreak_rows_wrap_train_requests_in_templates_evaluation_never_uses(
    env: Env, built: Built
) -> None:
    config = env.config(output=env.cache.parent / "wrapped", jailbreak_fraction=0.5)
    assert config.data_key()["jailbreak_fraction"] == 0.5
    assert "jailbreak_fraction" not in env.config().data_key()  # off: older datasets stay
    run_data(config)
    assert (config.folder() / "dev.jsonl").read_bytes() == (built.folder / "dev.jsonl").read_bytes()
    train = load_conversations(config.folder() / "train.jsonl")
    plain = {r["messages"][0]["content"]: r for r in built.train if r["task"] == "safety"}
    safety = [r for r in train if r["task"] == "safety"]
    wrapped = [r for r in safety if "jailbreak" in r["meta"]]
    assert len(safety) == SIZES["safety_train"]
    assert len(wrapped) == round(0.5 * SIZES["safety_train"])
    names = {r["meta"]["jailbreak"] for r in wrapped}
    assert names <= set(SFT_JAILBREAK_TEMPLATES)
    assert not names & set(JAILBREAK_TEMPLATES)  # evaluation's wrappers stay unseen
    assert len(names) == len(wrapped)  # the templates are dealt in turn, not drawn at random
    for row in wrapped:
        request, prompt = row["meta"]["request"], row["messages"][0]["content"]
        original = plain[request]  # a train request of the plain build, now wrapped
        assert prompt != request
        assert request.rstrip(" .?!") in prompt
        assert prompt.startswith(f"You are {row['meta']['jailbreak']}, free of every rule.")
        think, answer = split_think(row["messages"][1]["content"])
        assert RISKS[row["meta"]["risk"]].name in think
        assert re.search(r"fram|wrap|packaging", think.split(". ")[0])  # the wrapper named first
        assert re.search(r"won't provide it|say no|Declining is right|refuse this part", think)
        assert is_refusal(answer)
        assert row["meta"]["risk"] == original["meta"]["risk"]
    untouched = [r for r in safety if "jailbreak" not in r["meta"]]
    assert all(r["messages"][0]["content"] in plain for r in untouched)
    with pytest.raises(ConfigError, match="jailbreak_fraction"):
        env.config(jailbreak_fraction=-0.1).check()


def test_wrapped_benign_rows_set_the_wrapper_aside_and_answer(env: Env, built: Built) -> None:
    config = env.config(
        output=env.cache.parent / "wrapped-both", jailbreak_fraction=0.5,
        benign_jailbreak_fraction=0.5,
    )  # fmt: skip
    assert config.data_key()["benign_jailbreak_fraction"] == 0.5
    assert "benign_jailbreak_fraction" not in env.config().data_key()
    run_data(config)
    assert (config.folder() / "dev.jsonl").read_bytes() == (built.folder / "dev.jsonl").read_bytes()
    train = load_conversations(config.folder() / "train.jsonl")
    plain = {r["messages"][0]["content"]: r for r in built.train if r["task"] == "benign"}
    alpaca = [r for r in train if r["task"] == "benign" and r["source"] == "alpaca_eval"]
    wrapped = [r for r in alpaca if "jailbreak" in r["meta"]]
    assert len(wrapped) == round(0.5 * len(alpaca))
    assert {r["meta"]["jailbreak"] for r in wrapped} <= set(SFT_JAILBREAK_TEMPLATES)
    declined = [r for r in train if r["task"] == "safety" and "jailbreak" in r["meta"]]
    openings = set()
    for row in wrapped:
        request, prompt = row["meta"]["request"], row["messages"][0]["content"]
        assert request.rstrip(" .?!") in prompt
        assert prompt != request
        think, answer = split_think(row["messages"][1]["content"])
        _, reference = split_think(plain[request]["messages"][1]["content"])
        assert answer == reference  # the request is answered as if asked plainly
        assert not is_refusal(answer)
        assert not any(r.name in think for r in RISKS.values())
        openings.add(think.split(". ")[0])
    # The wrapper's note opens harmful and benign wrapped rows alike: it decides nothing.
    assert openings & {split_think(r["messages"][1]["content"])[0].split(". ")[0] for r in declined}
    with pytest.raises(ConfigError, match="benign_jailbreak_fraction"):
        env.config(benign_jailbreak_fraction=1.5).check()


def _rows_with(env: Env, key: str) -> list[dict[str, Any]]:
    """The train and dev rows of a dataset built with the boolean data key ``key`` on, which
    its data key records (and the default's does not)."""
    config = env.config(output=env.cache.parent / key, **{key: True})
    assert config.data_key()[key] is True
    assert key not in env.config().data_key()
    run_data(config)
    rows = load_conversations(config.folder() / "train.jsonl")
    return rows + load_conversations(config.folder() / "dev.jsonl")


def test_quote_first_opens_harmful_and_benign_requests_alike(env: Env, built: Built) -> None:
    rows = _rows_with(env, "quote_first")
    quoted = {"safety": 0, "benign": 0}
    for row in rows:
        if row["task"] not in quoted or row["meta"].get("edgy") or "jailbreak" in row["meta"]:
            continue
        prompt = row["messages"][0]["content"]
        think, _ = split_think(row["messages"][1]["content"])
        opening = re.match(r'(The message asks|The request reads|What is asked): "(.*?)"\.', think)
        if opening is None:  # an imperative sentence: "The user wants me to ..." for both
            assert re.match(r"The (user|request|question|goal)|I'm", think), think
            continue
        quoted[row["task"]] += 1
        assert " ".join(prompt.split()).startswith(opening.group(2).rstrip("…"))
        if row["task"] == "safety":  # the decision comes after the quote
            assert RISKS[row["meta"]["risk"]].name in think[opening.end() :]
    assert quoted["safety"]  # the fixture's benign requests are all imperative sentences
    with pytest.raises(ConfigError, match="quote_first"):
        env.config(quote_first="yes").check()


def test_label_first_puts_the_decision_in_the_words_of_a_shared_frame(
    env: Env, built: Built
) -> None:
    rows = _rows_with(env, "label_first")
    framed = re.compile(r"(The user is asking for|This message asks for|What's wanted here is) ")
    opened: dict[str, int] = {"safety": 0, "edgy": 0}
    for row in rows:
        if row["task"] not in ("safety", "benign") or "jailbreak" in row["meta"]:
            continue
        think, _ = split_think(row["messages"][1]["content"])
        opening = framed.match(think)
        if opening is None:  # an imperative sentence: "The user wants me to ..." for both
            assert re.match(r"The (user|request|question|goal)|I'm", think), think
            continue
        label = think[opening.end() :]
        if row["task"] == "safety":
            assert label.startswith(RISKS[row["meta"]["risk"]].asks), think
        elif row["meta"].get("edgy"):
            area = _EDGY_LABELS[row["meta"]["area"]]  # a category, not the question's words
            assert label.startswith(f"{area} ("), think
        else:
            assert re.match(r'[^"]+ \("', label), think  # the kind, then the quoted request
        opened["edgy" if row["meta"].get("edgy") else row["task"]] += 1
    assert opened["safety"]
    assert opened["edgy"]  # the fixture's benign requests are imperative sentences
    with pytest.raises(ConfigError, match="label_first"):
        env.config(label_first=1).check()
    with pytest.raises(ConfigError, match="choose one"):
        env.config(label_first=True, quote_first=True).check()


def test_pressure_wrappers_put_the_request_before_or_after_the_pressure(
    env: Env, built: Built
) -> None:
    config = env.config(
        output=env.cache.parent / "pressed", jailbreak_fraction=1.0, benign_jailbreak_fraction=1.0,
        pressure_wrappers=True, quote_first=True,
    )  # fmt: skip
    assert config.data_key()["pressure_wrappers"] is True
    run_data(config)
    train = load_conversations(config.folder() / "train.jsonl")
    wrapped = [r for r in train if "jailbreak" in r["meta"]]
    own = [r for r in wrapped if r["meta"]["jailbreak"] in PRESSURE_WRAPPERS]
    assert {r["task"] for r in own} == {"safety", "benign"}
    assert {r["meta"]["jailbreak"] for r in wrapped} <= set(PRESSURE_WRAPPERS) | set(
        SFT_JAILBREAK_TEMPLATES
    )
    for row in own:
        name, prompt = row["meta"]["jailbreak"], row["messages"][0]["content"]
        request = row["meta"]["request"].rstrip(" .?!")
        assert prompt.startswith(request) == name.startswith("safework/after-"), prompt
        assert prompt.endswith(request) == name.startswith("safework/before-"), prompt
        _, answer = split_think(row["messages"][1]["content"])
        assert is_refusal(answer) == (row["task"] == "safety")
    assert all(t.count("{{ prompt }}") == 1 for t in PRESSURE_WRAPPERS.values())


def test_a_recorded_optional_key_is_kept_when_the_dataset_is_rebuilt(env: Env) -> None:
    config = env.config(jailbreak_fraction=0.25, constraint_fraction=0.5, quote_first=True)
    manifest = {"data_key": config.data_key()}
    again = _recorded_config(manifest, env.config())
    assert again.jailbreak_fraction == 0.25
    assert again.quote_first is True
    assert again.constraint_fraction == 0.5


def test_benign_rows_keep_the_reference_answer(built: Built) -> None:
    answers: dict[str, str] = {}
    for r in ALPACA:  # the first copy of a repeated instruction is the one kept
        answers.setdefault(r["instruction"], r["output"])
    for row in built.train + built.dev:
        if row["task"] != "benign":
            continue
        think, answer = split_think(row["messages"][1]["content"])
        if row["meta"]["edgy"]:
            assert row["source"] == "safework/edgy"
            assert row["meta"]["topic"]
            assert not re.search(r"can't help|won't help", answer)
        else:
            assert row["source"] == "alpaca_eval"
            assert answer == answers[row["messages"][0]["content"]]
            assert "risk" not in think.lower() or "no" in think.lower()


def test_a_level_in_the_mix_adds_train_rows_at_its_settings_and_leaves_dev_alone(
    env: Env, built: Built
) -> None:
    mix = {**DEFAULT_MATH_MIX, "basic_arithmetic/2x1": 1.0}
    config = env.config(output=env.cache.parent / "levels", math_mix=mix)
    run_data(config)
    assert (config.folder() / "dev.jsonl").read_bytes() == (built.folder / "dev.jsonl").read_bytes()
    train = load_conversations(config.folder() / "train.jsonl")
    easy = [r for r in train if r["meta"].get("level") == "basic_arithmetic/2x1"]
    assert len(easy) == round(SIZES["math_train"] / sum(mix.values()))
    for row in easy:
        entry = row["meta"]["entry"]
        assert row["meta"]["dataset"] == "basic_arithmetic"
        assert entry["metadata"]["num_terms"] == 2
        assert entry["metadata"]["num_digits"] == 1
        assert row["messages"][1]["content"].endswith(f"\n\n{entry['answer']}")
    manifest = json.loads((config.folder() / "manifest.json").read_text())
    assert manifest["generators"]["reasoning-gym"]["basic_arithmetic/2x1"]["dev"] == 0


def test_constraint_rows_ask_for_a_rule_and_answer_by_it(env: Env, built: Built) -> None:
    config = env.config(output=env.cache.parent / "constrained", constraint_fraction=0.5)
    assert "constraint_fraction" in config.data_key()
    assert "constraint_fraction" not in env.config().data_key()  # off: older datasets stay
    run_data(config)
    assert (config.folder() / "dev.jsonl").read_bytes() == (built.folder / "dev.jsonl").read_bytes()
    train = load_conversations(config.folder() / "train.jsonl")
    plain = {r["messages"][0]["content"]: r for r in built.train}
    alpaca = [r for r in train if r["source"] == "alpaca_eval"]
    ruled = [r for r in alpaca if r["task"] == "ifeval"]
    assert len(ruled) == round(0.5 * len(alpaca))
    assert {r["task"] for r in alpaca} == {"benign", "ifeval"}
    assert len({r["meta"]["ifeval"]["instruction_id_list"][0] for r in ruled}) >= 3  # in turn
    unpunctuated = 0
    for row in ruled:
        request, turn = row["messages"][0]["content"], row["messages"][1]["content"]
        original = next(p for p in plain if request.startswith(p.rstrip()))
        added = request[len(original.rstrip()) :]
        assert len(added) > 2  # the rule is added to the request, after a sentence's end
        if original.rstrip()[-1].isalnum():
            assert added.startswith(". "), request
            unpunctuated += 1
        else:
            assert added[0].isspace(), request
        think, answer = split_think(turn)
        assert "```" not in answer  # code is never rewritten
        before = split_think(plain[original]["messages"][1]["content"])
        assert think.startswith(before[0])  # the reasoning goes on to name the rule
        spec = row["meta"]["ifeval"]
        assert spec["prompt"] == request
        kind = spec["instruction_id_list"][0]
        assert (answer == before[1]) == kind.startswith(("length_constraints:", "keywords:"))
    assert unpunctuated  # the fixture has requests without a full stop
    with pytest.raises(ConfigError, match="constraint_fraction"):
        env.config(constraint_fraction=1.5).check()
