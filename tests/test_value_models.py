"""Value models: spec parsing, YAML config, threshold precedence, rule verifiers, HF
classifiers/reward models on a tiny random model, and the generative judge's verdict scoring on
a fake engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig, TokenLogprob, TopLogprob
from safework.errors import ConfigError
from safework.server.alignment import resolve_threshold
from safework.server.protocol import ValueModelSetting
from safework.value_models.base import ValueModel, ValueScore
from safework.value_models.judge import TEMPLATES, JudgeValueModel, verdict_score
from safework.value_models.registry import (
    LoadContext,
    ValueModelEntry,
    ValueModelsConfig,
    load_value_model,
    parse_value_model_arg,
)
from safework.value_models.rules import find_pii, is_refusal

from .fakes import FakeEngine


def test_parse_value_model_arg() -> None:
    assert parse_value_model_arg("safety=builtin:safety") == ("safety", "builtin:safety")
    assert parse_value_model_arg("rules:refusal") == ("refusal", "rules:refusal")
    assert parse_value_model_arg("hf:/models/rm-7b")[0] == "rm-7b"
    for bad in ("x=nothing:here", "x=builtin", "bad name=rules:pii", "x=rules:"):
        with pytest.raises(ConfigError):
            parse_value_model_arg(bad)


def test_yaml_config(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text(
        "value_models:\n"
        "  safety: {spec: 'rules:refusal', weight: 0.6, threshold: 0.3}\n"
        "  pii: 'rules:pii'\n"
        "alignment: {candidates: 6, retries: 2}\n"
    )
    config = ValueModelsConfig.from_yaml(path)
    assert config.models["safety"].weight == 0.6
    assert config.models["pii"].threshold is None  # the model's own
    assert config.models["safety"].threshold == 0.3
    assert config.alignment == {"candidates": 6, "retries": 2}
    path.write_text("value_models:\n  s: {spec: 'rules:pii', threshold: 2}\n")
    with pytest.raises(ConfigError, match="threshold"):
        ValueModelsConfig.from_yaml(path)
    path.write_text("value_modelz: {}\n")
    with pytest.raises(ConfigError, match="unknown top-level"):
        ValueModelsConfig.from_yaml(path)


class _Calibrated(ValueModel):
    def __init__(self, default: float | None) -> None:
        self.name, self.spec, self.default_threshold = "m", "rules:refusal", default

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        return []


@pytest.mark.parametrize(
    ("request_setting", "configured", "default", "expected"),
    [
        (None, None, 0.42, 0.42),  # the model's own calibrated threshold
        (None, None, None, 0.0),  # none anywhere: no constraint
        (None, 0.3, 0.42, 0.3),  # the YAML config wins over the model's own
        ({"weight": 1.0}, 0.3, 0.42, 0.3),  # a request naming only a weight keeps it
        ({"weight": 1.0}, None, 0.42, 0.42),
        ({"weight": 1.0, "threshold": 0.1}, 0.3, 0.42, 0.1),  # the request wins
        ({"weight": 1.0, "threshold": 0.0}, None, 0.42, 0.0),  # even an explicit 0
    ],
)
def test_threshold_precedence(
    request_setting: dict | None, configured: float | None, default: float | None, expected: float
) -> None:
    setting = None if request_setting is None else ValueModelSetting(**request_setting)
    entry = ValueModelEntry("rules:refusal", threshold=configured)
    assert resolve_threshold(setting, entry, _Calibrated(default)) == expected


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot provide instructions for building weapons.", True),
        ("As an AI language model, I am not able to do this.", True),
        ("I won’t assist with hacking into accounts.", True),
        ("Sure! Here are three tips for better sleep.", False),
        ("The capital of France is Paris.", False),
        ("I can help with that: first, preheat the oven.", False),
    ],
)
def test_refusal_detection(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


def test_pii_detection() -> None:
    assert find_pii("card 4111 1111 1111 1111 ok") == {"card"}
    assert find_pii("card 4111 1111 1111 1112 ok") == set()  # fails the Luhn check
    assert find_pii("ssn 123-45-6789") == {"ssn"}
    assert find_pii("nothing personal here") == set()


async def test_rule_value_models(tmp_path: Path) -> None:
    refusal = load_value_model("r", "rules:refusal")
    scores = await refusal.score(["q", "q"], ["I can't help with that.", "Paris."])
    assert [s.score for s in scores] == [0.0, 1.0]
    patterns = tmp_path / "forbidden.txt"
    patterns.write_text("# comment\nnerve agent\n")
    forbidden = load_value_model("f", f"rules:forbidden={patterns}")
    scores = await forbidden.score(["q", "q"], ["Sarin is a nerve agent used...", "Hello"])
    assert [s.score for s in scores] == [0.0, 1.0]
    with pytest.raises(ConfigError):
        load_value_model("f", "rules:forbidden=/no/such/file")
    with pytest.raises(ConfigError):
        load_value_model("x", "rules:astrology")


def _tiny_classifier(path: Path, num_labels: int, labels: list[str] | None = None) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "how", "do", "i", "make", "a", "bomb", "cake", "sorry", "sure"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    id2label = dict(enumerate(labels or [f"LABEL_{i}" for i in range(num_labels)]))
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_labels=num_labels, pad_token_id=0,
        id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


async def test_hf_reward_model(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path / "rm", 1)
    model = load_value_model("rm", f"hf:{path}")
    scores = await model.score(["how do i make a cake"] * 2, ["sure", "sorry"])
    assert all(0.0 < s.score < 1.0 for s in scores)
    assert scores[0].score != scores[1].score


async def test_hf_classifier_labels(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path / "clf", 2, ["safe", "unsafe"])
    model = load_value_model("clf", f"hf:{path}")
    (s,) = await model.score(["how do i make a bomb"], ["sure"])
    assert s.score == pytest.approx(s.categories["safe"], abs=1e-3)
    generic = _tiny_classifier(tmp_path / "generic", 2)
    with pytest.raises(ConfigError, match="bad=LABEL"):
        load_value_model("g", f"hf:{generic}")
    g = load_value_model("g", f"hf:{generic}?bad=LABEL_1")
    (s,) = await g.score(["how"], ["sure"])
    assert s.score == pytest.approx(s.categories["LABEL_0"], abs=1e-3)
    with pytest.raises(ConfigError):
        load_value_model("x", f"hf:{tmp_path / 'missing'}")


def test_verdict_score_and_parse() -> None:
    guard = TEMPLATES["llama-guard"]
    assert verdict_score(guard, {"safe": 0.0}) == 1.0
    assert verdict_score(guard, {"un": math.log(0.9), "safe": math.log(0.1)}) == pytest.approx(0.1)
    assert verdict_score(guard, {"maybe": 0.0}) is None
    assert guard.parse("unsafe\nS1,S9") == ("unsafe", ["S1", "S9"])
    rm = TEMPLATES["safework-rm"]
    assert verdict_score(rm, {"Contro": math.log(0.5), "Safe": math.log(0.5)}) == 0.75
    assert rm.parse("Controversial\nS6")[0] == "controversial"


class JudgeEngine(FakeEngine):
    """Answers every judge prompt with a verdict whose first token has given logprobs."""

    def __init__(self, verdict: str, top: dict[str, float]) -> None:
        super().__init__()
        self.verdict, self.top = verdict, top

    async def _steps(self, prompt: list[int], s: SamplingConfig, rid: str) -> Any:
        first = self.verdict.split("\n")[0]
        lp = TokenLogprob(first, self.top.get(first, -5.0),
                          tuple(TopLogprob(t, v) for t, v in self.top.items()))  # fmt: skip
        yield EngineOutput(
            rid,
            len(prompt),
            [
                ChoiceDelta(
                    index=0, text=self.verdict, token_ids=[1], logprobs=[lp], finish_reason="stop"
                )
            ],
            True,
        )


async def test_judge_scores_from_verdict_probability() -> None:
    engine = JudgeEngine("unsafe\nS9", {"unsafe": math.log(0.8), "safe": math.log(0.2)})
    judge = load_value_model("guard", "judge:served", LoadContext(engine=engine))
    assert isinstance(judge, JudgeValueModel)
    (s,) = await judge.score(["How do I build a bomb?"], ["Step 1: get ..."])
    assert s.score == pytest.approx(0.2)
    assert s.categories == {"Indiscriminate Weapons": 1.0}
    assert "How do I build a bomb?" in engine.prompts[0]
    with pytest.raises(ConfigError):
        load_value_model("guard", "judge:served")  # no engine to serve it
    with pytest.raises(ConfigError):
        load_value_model("guard", "judge:served?template=nope", LoadContext(engine=engine))
