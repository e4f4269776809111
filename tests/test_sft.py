"""CoT-SFT: the assistant-only mask, batching, run folders, and a tiny-model training smoke test.

The smoke tests train a randomly initialised two-layer Llama (built from a config, with
SmolLM2's tokenizer) on arithmetic conversations: the loss falls, every trainable parameter
changes (with LoRA, only the adapted projections), the learning rate follows its schedule, and
a run interrupted after a checkpoint resumes to the same weights as one that was never
interrupted.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.training.checkpoint import checkpoints, claim_output
from safework.training.config import load_config
from safework.training.sft import SFTConfig, train
from safework.training.sft_data import IGNORE_INDEX, batch_order, collate, encode_conversation
from safework.training.sft_trainer import weighted_loss

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer(smollm_tokenizer):
    return smollm_tokenizer


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} plus {b}?"},
                    {
                        "role": "assistant",
                        "content": f"<think>\n{a} + {b} = {a + b}\n</think>\n\n{a + b}",
                    },
                ]
            }
        )
    return rows


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, n, seed in (("train.jsonl", 64, 0), ("dev.jsonl", 16, 1)):
        lines = [json.dumps(r) for r in _rows(n, seed)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _config(model: Path, data: Path, output: Path, **extra: object) -> SFTConfig:
    values = {
        "model": str(model),
        "data": str(data),
        "output": str(output),
        "method": "full",
        "batch_size": 8,
        "grad_accum": 2,
        "lr": 3e-3,
        "warmup_ratio": 0.0,
        "scheduler": "constant",
        "precision": "fp32",
        "max_length": 128,
        "save_every": 0,
        **extra,
    }
    return load_config(SFTConfig, None, values)


# --------------------------------------------------------------------------- the mask


def test_mask_covers_exactly_the_assistant_turns(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "<think>\ngreeting\n</think>\n\nHello!"},
        {"role": "user", "content": "And 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    item = encode_conversation(tokenizer, messages, max_length=512)
    assert len(item.labels) == len(item.input_ids)
    trained = [t for t in item.labels if t != IGNORE_INDEX]
    text = tokenizer.decode(trained)
    assert text == "<think>\ngreeting\n</think>\n\nHello!<|im_end|>\n4<|im_end|>\n"
    masked = tokenizer.decode(
        [t for t, lab in zip(item.input_ids, item.labels, strict=True) if lab == IGNORE_INDEX]
    )
    for hidden in ("Be brief.", "Hi there", "And 2+2?", "<|im_start|>assistant\n"):
        assert hidden in masked
    assert "Hello" not in masked


def test_mask_survives_truncation(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "word " * 50},
        {"role": "assistant", "content": "answer " * 50},
    ]
    full = encode_conversation(tokenizer, messages, max_length=4096)
    cut = encode_conversation(tokenizer, messages, max_length=110)
    assert len(cut.input_ids) == 110
    assert cut.labels == full.labels[:110]
    assert 0 < cut.trained_tokens < full.trained_tokens


def test_answer_openings_are_the_first_answer_tokens_after_the_reasoning(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Hi there"},
        {
            "role": "assistant",
            "content": "<think>\nIt's a greeting.\n</think>\n\nHello, nice to meet you!",
        },
        {"role": "user", "content": "And 2+2?"},
        {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},  # no reasoning: nothing marked
    ]
    item = encode_conversation(tokenizer, messages, max_length=512, answer_tokens=3)
    assert len(item.opening) == 3 + 2  # the second answer: "4" and its end-of-turn token
    assert all(item.labels[pos] != IGNORE_INDEX for pos in item.opening)
    first = tokenizer.decode([item.input_ids[pos] for pos in item.opening[:3]])
    assert first.replace(" ", "") == "Hello,nice"
    assert tokenizer.decode([item.input_ids[pos] for pos in item.opening[3:]]) == "4<|im_end|>"
    assert encode_conversation(tokenizer, messages, max_length=512).opening == ()
    cut = encode_conversation(tokenizer, messages, max_length=40, answer_tokens=3)
    assert all(pos < 40 for pos in cut.opening)


def test_the_weighted_loss_is_the_models_own_at_weight_one(tokenizer, tiny_model: Path) -> None:
    """Weight 1 everywhere reproduces the model's loss; weighing the openings up raises
    exactly their share of it."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float32)
    items = [
        encode_conversation(tokenizer, row["messages"], 64, answer_tokens=2) for row in _rows(3, 0)
    ]
    plain = collate(items, tokenizer.pad_token_id)
    n_items = (plain["labels"][:, 1:] != IGNORE_INDEX).sum()
    with torch.no_grad():
        own = model(**plain, num_items_in_batch=n_items).loss
        ones = collate(items, tokenizer.pad_token_id, answer_weight=1.0 + 1e-9)
        same = weighted_loss(model, ones, ones.pop("loss_weights"), n_items)
        heavy = collate(items, tokenizer.pad_token_id, answer_weight=3.0)
        weights = heavy.pop("loss_weights")
        assert int((weights == 3.0).sum()) == sum(len(i.opening) for i in items) == 6
        weighed = weighted_loss(model, heavy, weights, n_items)
    assert float(same) == pytest.approx(float(own), rel=1e-5)
    assert float(weighed) > float(own)


def test_template_that_is_not_prefix_stable_is_refused(tokenizer) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    # renders the number of messages first: earlier renderings are not prefixes
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ConfigError, match="prefixes"):
        encode_conversation(
            tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], 64
        )


def test_batches_are_length_grouped_and_deterministic() -> None:
    lengths = [random.Random(i).randint(5, 500) for i in range(400)]
    order = batch_order(lengths, 8, seed=3, epoch=1)
    assert order == batch_order(lengths, 8, seed=3, epoch=1)
    assert order != batch_order(lengths, 8, seed=3, epoch=2)
    assert sorted(i for b in order for i in b) == list(range(400))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in order) / len(
        order
    )
    random_spread = sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b)
        for b in batch_order(lengths, 8, seed=3, epoch=1, group_by_length=False)
    ) / len(order)
    assert spread < random_spread / 4


# --------------------------------------------------------------------------- configs and folders


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"lr": -1}, "lr must be positive"),
        ({"max_steps": 0, "epochs": 0}, "set max_steps"),
        ({"method": "qlora"}, "method"),
        ({"lora.r": 0}, "lora.r must be at least 1"),
        ({"lora.dropout": 1.5}, r"lora.dropout must be in \[0, 1\)"),
        ({"learning_rate": 1e-4}, "did you mean 'lr'"),
        ({"resume": "/nonexistent/ckpt"}, "resume="),
        ({"answer_weight": 0}, "answer_weight must be positive"),
        ({"answer_tokens": 0}, "answer_tokens must be at least 1"),
    ],
)
def test_config_errors_name_the_key(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(SFTConfig, None, override)


def test_output_holding_another_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert claim_output(out, {"lr": 1.0}, overwrite=False) is False
    assert claim_output(out, {"lr": 1.0}, overwrite=False) is True
    with pytest.raises(ConfigError, match=r"different run.*overwrite=true"):
        claim_output(out, {"lr": 2.0}, overwrite=False)
    (out / "keep.txt").write_text("x")
    assert claim_output(out, {"lr": 2.0}, overwrite=True) is False
    assert not (out / "keep.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="not a run's"):
        claim_output(other, {"lr": 1.0}, overwrite=False)


def test_malformed_row_is_reported_and_nothing_written(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    lines = (dataset / "train.jsonl").read_text().splitlines()
    lines[6] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    (dataset / "train.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"train.jsonl:7"):
        train(_config(tiny_model, dataset, out, max_steps=2))
    assert not out.exists()


def test_missing_model_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model=default"):
        train(_config(tmp_path / "no-model", dataset, tmp_path / "out", max_steps=2))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- training


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_full_finetune_lowers_loss_and_changes_every_parameter(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    summary = train(_config(tiny_model, dataset, out, max_steps=30))
    assert summary["steps"] == 30
    assert summary["dev_loss_end"] < summary["dev_loss_start"] * 0.7
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.7
    before, after = _weights(tiny_model), _weights(out)
    assert before.keys() == after.keys()
    unchanged = [k for k in before if torch.equal(before[k].float(), after[k].float())]
    assert unchanged == []
    # a servable folder: tokenizer with its chat template beside the weights
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.chat_template
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30


def test_lora_trains_every_adapter_and_merges(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    summary = train(_config(tiny_model, dataset, out, method="lora", lr=1e-2, max_steps=20))
    assert summary["dev_loss_end"] < summary["dev_loss_start"]
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # the training loss fell too
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert all("lora_A" in k or "lora_B" in k for k in adapter)  # only adapters were trained
    lora_b = [k for k in adapter if "lora_B" in k]
    assert lora_b
    assert all(adapter[k].abs().sum() > 0 for k in lora_b)  # B starts at zero
    before, after = _weights(tiny_model), _weights(out)
    assert after.keys() == before.keys()  # merged: plain weights, no adapter names
    changed = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert changed == {k for k in before if any(t in k for t in targets)}


def test_a_run_with_weighed_answer_openings_trains_and_learns(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "weighed"
    summary = train(_config(tiny_model, dataset, out, max_steps=20, answer_weight=4.0))
    assert summary["steps"] == 20
    assert summary["dev_loss_end"] < summary["dev_loss_start"] * 0.8


class _Stop(Exception):
    pass


def test_resume_continues_from_the_saved_step(
    tiny_model: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.training import trainer

    reference = tmp_path / "reference"
    train(
        _config(tiny_model, dataset, reference, method="lora", lr=1e-2, max_steps=8, save_every=4)
    )

    out = tmp_path / "interrupted"
    original = trainer.Trainer.save_checkpoint

    def save_then_die(self, step, *args, **kwargs):
        original(self, step, *args, **kwargs)
        raise _Stop

    monkeypatch.setattr(trainer.Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(_Stop):
        train(_config(tiny_model, dataset, out, method="lora", lr=1e-2, max_steps=8, save_every=4))
    monkeypatch.undo()
    assert [s for s, _ in checkpoints(out)] == [4]

    summary = train(
        _config(tiny_model, dataset, out, method="lora", lr=1e-2, max_steps=8, save_every=4)
    )
    assert summary["resumed_from_step"] == 4
    assert summary["steps"] == 8
    steps = [r["step"] for r in _log(out) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]  # nothing trained twice
    ref, got = _weights(reference), _weights(out)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)


def test_a_run_stopped_before_its_first_checkpoint_starts_its_log_over(
    tiny_model: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.training import trainer

    out = tmp_path / "run"
    original = trainer.Trainer.log

    def log_then_die(self, record):
        original(self, record)
        if record.get("step") == 3 and "loss" in record:
            raise _Stop

    monkeypatch.setattr(trainer.Trainer, "log", log_then_die)
    with pytest.raises(_Stop):
        train(_config(tiny_model, dataset, out, method="lora", lr=1e-2, max_steps=6, save_every=4))
    monkeypatch.undo()
    assert checkpoints(out) == []
    assert [r["step"] for r in _log(out) if "loss" in r] == [1, 2, 3]

    summary = train(
        _config(tiny_model, dataset, out, method="lora", lr=1e-2, max_steps=6, save_every=4)
    )
    assert summary["resumed_from_step"] == 0
    log = _log(out)
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]  # one history
    assert next(r["step"] for r in log if "dev_loss" in r) == 0
    assert sum(r["step"] == 0 and "dev_loss" in r for r in log) == 1


def test_same_run_without_resume_is_refused(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train(_config(tiny_model, dataset, out, max_steps=2, save_every=1))
    with pytest.raises(ConfigError, match="resume=auto"):
        train(_config(tiny_model, dataset, out, max_steps=2, save_every=1, resume="never"))
    with pytest.raises(ConfigError, match="different run"):
        train(_config(tiny_model, dataset, out, max_steps=3))


# --------------------------------------------------------------------------- shipped configs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["sft-lora.yaml", "sft-full-zero3.yaml"])
def test_shipped_sft_configs_load_as_written(name: str) -> None:
    """Every key of the shipped YAML reaches the config with its value (none dropped or
    renamed on the way), and a DeepSpeed file it names is one the repository ships."""
    import yaml

    written = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    config = load_config(SFTConfig, CONFIGS / name)
    for key, value in written.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                assert getattr(getattr(config, key), sub) == sub_value, f"{key}.{sub}"
        elif isinstance(getattr(config, key), Path):
            assert getattr(config, key) == Path(value), key
        else:
            assert getattr(config, key) == value, key
    if config.deepspeed is not None:
        assert (CONFIGS.parent / config.deepspeed).is_file()


def test_learning_rate_follows_warmup_then_cosine(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    """warmup_ratio=0.25 of 8 steps: the logged rate climbs for 2 steps to ``lr``, then the
    cosine brings it down every step to 0 at the last."""
    out = tmp_path / "schedule"
    train(_config(tiny_model, dataset, out, max_steps=8, warmup_ratio=0.25, scheduler="cosine"))
    lrs = [r["lr"] for r in _log(out) if "lr" in r]
    assert len(lrs) == 8
    assert 0 < lrs[0] < lrs[1]
    assert lrs[1] == pytest.approx(3e-3)  # the peak is the configured lr
    assert all(a > b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] < lrs[1] * 0.01


def test_deepspeed_auto_fields_are_filled_and_conflicts_refused(tmp_path: Path) -> None:
    from safework.training.distributed import deepspeed_config

    filled = deepspeed_config(
        CONFIGS / "zero3.json", micro_batch_size=4, grad_accum=2, world_size=8, max_grad_norm=1.0,
        bf16=True,
    )  # fmt: skip
    assert filled["train_batch_size"] == 64
    assert filled["gradient_accumulation_steps"] == 2
    assert filled["bf16"]["enabled"] is True
    assert filled["zero_optimization"]["stage"] == 3
    clash = tmp_path / "ds.json"
    clash.write_text(
        json.dumps({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 8})
    )
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=8 disagrees"):
        deepspeed_config(
            clash, micro_batch_size=4, grad_accum=2, world_size=1, max_grad_norm=1.0, bf16=False
        )
    clash.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        deepspeed_config(
            clash, micro_batch_size=4, grad_accum=2, world_size=1, max_grad_norm=1.0, bf16=False
        )
