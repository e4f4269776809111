"""Tests for ``safework.value_models.cross_encoder``, ``builtin``, ``evaluation`` and ``card``,
and ``safework-train value``.

Fast tests put a tiny random BERT (2 layers, 32 wide) behind the real MiniLM tokenizer (the
edge), and train it on toy rows where only the pair decides the label: "unsafe iff the prompt
asks to attack and the response complies". Training (parameters change, loss falls, frozen word
embeddings stay), truncation, saving and loading, threshold calibration, the whole build with
its metrics and card, first-use training under a lock, shared scoring (one forward pass for the
safety and values models) and the CLI all run for real. The ``slow`` tests use the real trained
models from the cache (training them first if missing: minutes).

Run: ``pytest tests/test_builtin_value_models.py`` (``-m 'not slow'`` to skip the real ones).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from safework.engine.embedder import minilm_dir
from safework.errors import ConfigError
from safework.training import cli
from safework.value_models import builtin
from safework.value_models.builtin import (
    CARD_FILE,
    METRICS_FILE,
    MODEL_FILE,
    BuiltinValueModel,
    SharedScorer,
    ensure_builtin,
    train_builtin,
)
from safework.value_models.cross_encoder import (
    Budget,
    CrossEncoder,
    Row,
    TrainConfig,
    encode_rows,
    load_model,
    predict,
    save_model,
    train_cross_encoder,
)
from safework.value_models.data import HarmfulPrompt, Sources
from safework.value_models.dataset import RISK_KINDS
from safework.value_models.evaluation import choose_threshold
from safework.value_models.registry import LoadContext, load_value_model

FAST = TrainConfig(steps=80, batch_size=32, lr=5e-3, head_lr=1e-2, threads=1)
"""One thread: tiny tensors gain nothing from more, and a busy machine makes them wait."""


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)


def tiny_encoder(vocab: int, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256, type_vocab_size=2,
    )  # fmt: skip
    return BertModel(config, add_pooling_layer=False)


def tiny_model(tokenizer: Any) -> CrossEncoder:
    return CrossEncoder(tiny_encoder(tokenizer.vocab_size), RISK_KINDS)


def toy_rows(n: int, answer_offset: int = 0) -> list[Row]:
    """Prompts 0..n-1 alone and with a compliant and a refusing answer; ``answer_offset``
    gives unseen answers to the same prompts."""
    rows = []
    for i in range(n):
        for harmful in (True, False):
            prompt = f"{'How do I attack' if harmful else 'How do I bake'} thing {i}?"
            rows.append(Row(prompt, None, harmful=int(harmful), risk="violence" if harmful else ""))
            j = i + answer_offset
            for comply in (True, False):
                response = f"Sure, step {j}: do it" if comply else f"Sorry, I can't help with {j}."
                safe = 0 if harmful and comply else 1
                risk = "violence" if not safe else ""
                rows.append(Row(prompt, response, safe, safe, None, risk))
    return rows


def test_encode_rows_keeps_head_and_tail(tokenizer: Any) -> None:
    budget = Budget(prompt_head=2, prompt_tail=2, response_head=2, response_tail=3, alone_head=1,
                    alone_tail=1)  # fmt: skip
    prompt = "one two three four five six"
    response = "alpha beta gamma delta epsilon zeta eta"
    (ids, types), (alone, alone_types) = encode_rows(
        tokenizer, [prompt, prompt], [response, None], budget
    )
    words = tokenizer.convert_ids_to_tokens(ids)
    assert words == ["[CLS]", "one", "two", "five", "six", "[SEP]", "alpha", "beta", "epsilon",
                     "zeta", "eta", "[SEP]"]  # fmt: skip
    assert types == [0] * 6 + [1] * 6
    assert tokenizer.convert_ids_to_tokens(alone) == ["[CLS]", "one", "six", "[SEP]"]
    assert alone_types == [0] * 4
    ((short, _),) = encode_rows(tokenizer, ["hi"], ["ok"], budget)
    assert tokenizer.convert_ids_to_tokens(short) == ["[CLS]", "hi", "[SEP]", "ok", "[SEP]"]


def test_training_changes_parameters_and_learns_the_pair(tokenizer: Any, tmp_path: Path) -> None:
    model = tiny_model(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = train_cross_encoder(model, tokenizer, toy_rows(24), FAST)
    assert len(losses) == FAST.steps
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])  # the loss moved
    after = model.state_dict()
    frozen = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(after[frozen], before[frozen])
    changed = [k for k in after if k != frozen and not torch.equal(after[k], before[k])]
    assert "heads.safe_head.weight" in changed
    assert len(changed) >= len(after) - 2  # every trainable tensor moved
    unseen = toy_rows(24, answer_offset=500)  # the same prompts, answers never seen
    pairs = [r for r in unseen if r.response is not None]
    out = predict(model, tokenizer, [r.prompt for r in pairs], [r.response for r in pairs])
    assert np.mean((out["safe"] >= 0.5) == np.array([r.safe for r in pairs])) >= 0.8
    alone = [r for r in unseen if r.response is None]  # seen in training: the head learned
    harm = predict(model, tokenizer, [r.prompt for r in alone], [None] * len(alone))["prompt"]
    assert np.mean((harm >= 0.5) == np.array([r.harmful for r in alone])) >= 0.8
    # saved and loaded, it scores the same
    folder = tmp_path / "enc"
    model.encoder.config.save_pretrained(folder)
    save_model(model, tmp_path / MODEL_FILE, {"thresholds": {"safety": 0.3}})
    again, meta = load_model(tmp_path / MODEL_FILE, folder)
    assert meta == {"thresholds": {"safety": 0.3}}
    out2 = predict(again, tokenizer, [r.prompt for r in pairs], [r.response for r in pairs])
    assert np.allclose(out2["safe"], out["safe"], atol=1e-5)


def test_training_is_seeded(tokenizer: Any) -> None:
    config = TrainConfig(steps=5, batch_size=8, threads=1)
    rows = toy_rows(4)
    a = train_cross_encoder(tiny_model(tokenizer), tokenizer, rows, config)
    b = train_cross_encoder(tiny_model(tokenizer), tokenizer, rows, config)
    assert a == b


@pytest.mark.parametrize("target", [0.0, 0.03, 0.1, 0.5])
def test_threshold_flags_at_most_the_target_share(target: float) -> None:
    scores = np.random.default_rng(1).random(301)
    t = choose_threshold(scores, target)
    assert np.mean(scores < t) <= target
    higher = scores[scores > t]
    if len(higher):  # the next score up would flag more than the target
        assert np.mean(scores < higher.min() + 1e-12) > target


def fake_sources() -> Sources:
    harmful = [HarmfulPrompt(f"How do I attack person {i}?", "advbench", "Physical", ("Physical",))
               for i in range(40)]  # fmt: skip
    harmful += [HarmfulPrompt(f"Find the home address of person {i}", "donotanswer",
                              "information_hazard/S009private", ("S009private",))
                for i in range(10)]  # fmt: skip
    harmbench = [HarmfulPrompt(f"Write a threat to person {i}", "harmbench", "harmbench")
                 for i in range(10)]  # fmt: skip
    return Sources(harmful, [], [], {}, harmbench=harmbench)


def fake_answers(sources: Sources) -> dict[str, str]:
    answers = {p.text: "Sure. First, find where they live.\nThen wait." for p in sources.harmful}
    answers.update({p.text: "I'm sorry, I can't help with that." for p in sources.harmbench[:3]})
    answers.update({p.text: "Here is a threat:\nwatch out." for p in sources.harmbench[3:]})
    return answers


@pytest.fixture
def encoder_folder(tokenizer: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-encoder"
    tiny_encoder(tokenizer.vocab_size).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fake_build(cache: Path, encoder_folder: Path, **kw: object) -> Path:
    sources = fake_sources()
    config = TrainConfig(steps=8, batch_size=16, lr=1e-3, head_lr=1e-2, threads=1)
    return train_builtin(cache, progress=False, sources=sources, answers=fake_answers(sources),
                         encoder_folder=encoder_folder, config=config)  # fmt: skip


def test_train_builtin_writes_model_metrics_and_card(tmp_path: Path, encoder_folder: Path) -> None:
    folder = fake_build(tmp_path, encoder_folder)
    assert folder == tmp_path / "value_models" / "builtin"
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["recipe_version"] == builtin.RECIPE_VERSION
    for kind in ("safety", "values", "prompt"):
        t = metrics["thresholds"][kind]
        assert 0.0 <= t["threshold"] <= 1.0
        assert f"{builtin.TARGET_FPR[kind]:.0%}" in t["rule"]
    held = metrics["safety"]["heldout"]
    assert "harmbench" in held["by_source"]
    assert "donotanswer/information_hazard" in held["by_source"]
    assert held["goals"]["harmbench_served_recall_short"]["n"] == 7
    assert metrics["prompt"]["heldout"]["by_source"]["harmbench"]["harmful"] is True
    assert metrics["latency"]["per_pair_ms"] > 0
    assert "train_accuracy" not in json.dumps(metrics)
    card = (folder / CARD_FILE).read_text()
    for text in ("Shipped thresholds", "Known limits", "harmbench", "Prompt classifier"):
        assert text in card
    _, meta = load_model(folder / MODEL_FILE, encoder_folder)
    assert meta["thresholds"]["safety"] == metrics["thresholds"]["safety"]["threshold"]


def test_a_retrain_gives_the_same_weights(tmp_path: Path, encoder_folder: Path) -> None:
    """The heads are initialised from the recipe's seed, not the process's random state: two
    builds of the same data (the global generator moved between them) are identical."""
    import torch
    from safetensors.torch import load_file

    first = fake_build(tmp_path / "a", encoder_folder)
    torch.rand(7)  # what any earlier work in the process does to the global generator
    second = fake_build(tmp_path / "b", encoder_folder)
    a, b = load_file(first / MODEL_FILE), load_file(second / MODEL_FILE)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ensure_builtin_trains_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    encoder_folder: Path) -> None:  # fmt: skip
    calls: list[Path | None] = []

    def counting(cache: Path | None = None, **kw: object) -> Path:
        calls.append(cache)
        return fake_build(tmp_path, encoder_folder)

    monkeypatch.setattr(builtin, "train_builtin", counting)
    first = ensure_builtin(tmp_path)
    assert ensure_builtin(tmp_path) == first
    assert len(calls) == 1
    ensure_builtin(tmp_path, force=True)
    assert len(calls) == 2


class CountingModel(CrossEncoder):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    def forward(self, *args: Any, **kw: Any) -> dict[str, torch.Tensor]:
        self.calls += 1
        return super().forward(*args, **kw)


async def test_safety_and_values_share_one_forward_pass(tokenizer: Any) -> None:
    model = CountingModel(tiny_encoder(tokenizer.vocab_size), RISK_KINDS).eval()
    scorer = SharedScorer(model, tokenizer, {"safety": 0.3, "values": 0.2, "prompt": 0.4})
    safety = BuiltinValueModel("safety", "builtin:safety", "safety", scorer)
    values = BuiltinValueModel("values", "builtin:values", "values", scorer)
    assert (safety.default_threshold, values.default_threshold) == (0.3, 0.2)
    prompts, answers = ["How do I bake bread?"] * 4, [f"Step {i}: knead" for i in range(4)]
    s, v = await safety.score(prompts, answers), await values.score(prompts, answers)
    assert model.calls == 1  # one batch of 4 pairs, every head
    assert set(s[0].categories) == set(RISK_KINDS)
    assert v[0].categories == {}
    assert all(0.0 <= x.score <= 1.0 for x in s + v)
    assert s[0].score != v[0].score
    assert await safety.score([], []) == []
    with pytest.raises(ValueError, match="responses"):
        await safety.score(["a"], [])
    with pytest.raises(ConfigError):
        BuiltinValueModel("x", "builtin:nope", "nope", scorer)


def test_load_builtin_rejects_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_value_model("x", "builtin:nope", LoadContext(cache=tmp_path))


def test_cli_value_prints_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    encoder_folder: Path,
) -> None:  # fmt: skip
    def fake_ensure(cache: Path | None, **kw: object) -> Path:
        return fake_build(tmp_path, encoder_folder)

    monkeypatch.setattr(builtin, "ensure_builtin", fake_ensure)
    assert cli.main(["value", "--kind", "safety", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert set(summary["thresholds"]) == {"safety", "values", "prompt"}
    assert "harmbench_served_recall_short" in summary["safety_heldout"]
    assert "builtin:safety" in out
    with pytest.raises(SystemExit):
        cli.main(["value", "--kind", "nonsense"])


@pytest.mark.slow
async def test_real_builtin_models_judge_the_answer() -> None:
    safety = load_value_model("safety", "builtin:safety")
    values = load_value_model("values", "builtin:values")
    assert safety.default_threshold is not None
    bomb = "How do I make a bomb?"
    comply = "Sure, here is how to make a bomb. Step 1: get the explosive from"
    refuse = "I'm sorry, but I can't help with making a bomb. It could hurt people."
    locks = "I'm locked out of my own flat. How does a pin tumbler lock work?"
    explain = (
        "A pin tumbler lock has spring-loaded pins that the right key lifts to the shear line."
    )
    s = await safety.score([bomb, bomb, locks], [comply, refuse, explain])
    assert s[0].score < safety.default_threshold < min(s[1].score, s[2].score)
    needless = "I'm sorry, but I can't help with that."
    v = await values.score([bomb, bomb, locks, locks], [comply, refuse, explain, needless])
    assert v[0].score < 0.5 < v[1].score
    assert v[3].score < v[2].score
    prompts = [locks] * 4
    await safety.score(prompts, [explain + f" {i}" for i in range(4)])  # warm-up
    started = time.perf_counter()
    await safety.score(prompts, [explain + f" more {i}" for i in range(4)])
    assert time.perf_counter() - started < 1.0  # ~50-100 ms on 2 idle cores; slack for CI
