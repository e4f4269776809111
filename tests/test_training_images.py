"""Training with images: rows with ``images`` and ``<image>`` markers, their tokens, and one SFT
and one RL step on a tiny vision-language model (``tiny_vlm_model``: the tiny VLM recipe on a
2-layer Llama) that change exactly the language model's LoRA weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safework.errors import ConfigError
from safework.training.config import load_config
from safework.training.data import load_conversations, row_problem
from safework.training.sft_data import IGNORE_INDEX, collate, encode_conversation

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _row(image: str, colour: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": "<image>\nWhat colour is this?"},
            {"role": "assistant", "content": f"<think>\nIt looks {colour}.\n</think>\n\n{colour}"},
        ],
        "images": [image],
    }


@pytest.fixture
def image_data(tmp_path: Path) -> Path:
    """Sixteen one-image conversations (red or blue pictures of varying sizes) in train.jsonl,
    their images in ``img/`` beside it."""
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(16):
        colour = "red" if i % 2 == 0 else "blue"
        Image.new("RGB", (48 + 8 * i, 40 + 4 * i), COLOURS[colour]).save(folder / f"img/{i}.png")
        rows.append(_row(f"img/{i}.png", colour))
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def vision(tiny_vlm_model: Path) -> Any:
    from safework.training.vision import Vision

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_vlm_model)
    found = Vision.load(tiny_vlm_model, tokenizer)
    assert found is not None
    return found


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(folder / "model.safetensors").items()}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize(
    ("images", "content", "message"),
    [
        (["a.png", "b.png"], "<image> one marker", "1 <image> markers for 2 images"),
        (["a.png"], "no marker", "0 <image> markers for 1 images"),
        ("a.png", "<image>", "'images' must be a list of image file paths"),
        ([""], "<image>", "'images' must be a list of image file paths"),
    ],
)
def test_malformed_images_are_named(images: Any, content: str, message: str) -> None:
    row = {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "x"}],
        "images": images,
    }
    assert message in (row_problem(row) or "")


def test_image_paths_are_relative_to_the_file_and_must_exist(image_data: Path) -> None:
    rows = load_conversations(image_data / "train.jsonl")
    assert rows[3]["images"] == [str((image_data / "img/3.png").resolve())]
    bad = image_data / "bad.jsonl"
    bad.write_text(json.dumps(_row("img/missing.png", "red")) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: image 'img/missing.png' is not a file"):
        load_conversations(bad)


# --------------------------------------------------------------------------- tokens


def test_image_tokens_are_the_processors_expansion_and_never_trained(
    vision: Any, tmp_path: Path
) -> None:
    tokenizer = vision.processor.tokenizer
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    Image.new("RGB", (300, 90), (10, 200, 10)).save(wide)
    Image.new("RGB", (40, 250), (200, 10, 200)).save(tall)
    messages = [
        {"role": "user", "content": "<image> and <image>: which is wider?"},
        {"role": "assistant", "content": "The first."},
    ]
    item = encode_conversation(
        tokenizer, messages, 512, images=[str(wide), str(tall)], vision=vision
    )
    # exactly what the processor makes of the whole rendered prompt and both images
    rendered = tokenizer.apply_chat_template(vision.render_messages(messages, 2), tokenize=False)
    whole = vision.processor(
        text=[rendered],
        images=[[Image.open(wide).convert("RGB"), Image.open(tall).convert("RGB")]],
        add_special_tokens=False,
    )
    assert item.input_ids == list(whole["input_ids"][0])
    image_ids = set(tokenizer.convert_tokens_to_ids(["<image>", "<fake_token_around_image>"]))
    at_images = [i for i, t in enumerate(item.input_ids) if t in image_ids]
    assert len(at_images) == 2 * 18  # 16 image tokens and 2 wrappers each (+ <global-img>)
    assert all(item.labels[i] == IGNORE_INDEX for i in at_images)
    trained = tokenizer.decode([t for t in item.labels if t != IGNORE_INDEX])
    assert trained.startswith("The first.")
    # the same conversation as text: the same trained tokens
    text_only = encode_conversation(
        tokenizer, [{**messages[0], "content": "which is wider?"}, messages[1]], 512
    )
    assert [t for t in text_only.labels if t != IGNORE_INDEX] == [
        t for t in item.labels if t != IGNORE_INDEX
    ]
    # a cut through an image drops the conversation rather than splitting the image
    assert (
        encode_conversation(
            tokenizer, messages, 40, images=[str(wide), str(tall)], vision=vision
        ).input_ids
        == []
    )


def test_typed_image_tokens_stand_for_no_image(vision: Any) -> None:
    tokenizer = vision.processor.tokenizer
    messages = [
        {"role": "user", "content": "What does <image> mean in HTML?"},
        {"role": "assistant", "content": "Nothing: <image> is no HTML tag."},
    ]
    item = encode_conversation(tokenizer, messages, 256, vision=vision)
    assert vision.image_token_id not in item.input_ids
    assert tokenizer.decode(item.input_ids).count("< image>") == 2


def test_the_pixels_reach_the_loss(vision: Any, tiny_vlm_model: Path, image_data: Path) -> None:
    from safework.training.vision import load_causal_model

    tokenizer = vision.processor.tokenizer
    model = load_causal_model(tiny_vlm_model, dtype=torch.float32).eval()
    losses = []
    for name in ("img/0.png", "img/1.png"):  # red, then blue, the same text
        row = _row(str(image_data / name), "red")
        item = encode_conversation(
            tokenizer, row["messages"], 256, images=row["images"], vision=vision
        )
        batch = collate([item], tokenizer.pad_token_id, vision)
        assert batch["pixel_values"].shape[:2] == (1, 1)
        with torch.no_grad():
            losses.append(float(model(**batch).loss))
    assert abs(losses[0] - losses[1]) > 1e-6


# --------------------------------------------------------------------------- training


def test_sft_step_with_images_changes_exactly_the_language_models_lora(
    tiny_vlm_model: Path, image_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from safework.training import vision as vision_module
    from safework.training.sft import SFTConfig, train

    seen: list[int] = []
    pixel_inputs = vision_module.Vision.pixel_inputs

    def spy(self: Any, rows: Any) -> dict[str, Any]:
        seen.append(sum(len(r) for r in rows))
        return pixel_inputs(self, rows)

    monkeypatch.setattr(vision_module.Vision, "pixel_inputs", spy)
    out = tmp_path / "sft"
    values = {
        "model": str(tiny_vlm_model),
        "data": str(image_data),
        "output": str(out),
        "method": "lora",
        "batch_size": 4,
        "grad_accum": 1,
        "lr": 1e-2,
        "max_steps": 1,
        "save_every": 0,
        "precision": "fp32",
        "save_dtype": "fp32",
        "max_length": 128,
    }
    summary = train(load_config(SFTConfig, None, values))
    assert summary["steps"] == 1
    assert seen == [4]  # the step's four images went into the forward pass
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter
    assert all(".model.text_model.layers." in k for k in adapter)
    assert all(adapter[k].abs().sum() > 0 for k in adapter if "lora_B" in k)
    changed = _changed(_weights(tiny_vlm_model), _weights(out))
    assert changed == {
        k
        for k in _weights(tiny_vlm_model)
        if k.startswith("model.text_model.layers.") and any(t in k for t in TARGETS)
    }
    # servable: the processor is written beside the weights
    processor = transformers.AutoProcessor.from_pretrained(out)
    assert processor.image_seq_len == 16


def test_full_finetune_freezes_the_vision_tower(
    tiny_vlm_model: Path, image_data: Path, tmp_path: Path
) -> None:
    from safework.training.sft import SFTConfig, train

    out = tmp_path / "full"
    values = {
        "model": str(tiny_vlm_model),
        "data": str(image_data),
        "output": str(out),
        "method": "full",
        "batch_size": 4,
        "grad_accum": 1,
        "lr": 1e-3,
        "max_steps": 1,
        "save_every": 0,
        "precision": "fp32",
        "save_dtype": "fp32",
        "max_length": 128,
    }
    train(load_config(SFTConfig, None, values))
    changed = _changed(_weights(tiny_vlm_model), _weights(out))
    assert changed
    assert all(k.startswith(("model.text_model.", "lm_head.")) for k in changed)


def _image_prompts(image_data: Path, n: int) -> Path:
    rows = [
        {
            "id": f"p{i}",
            "label": "math",
            "prompt": "<image>\nDescribe the picture.",
            "images": [f"data/img/{i}.png"],
        }
        for i in range(n)
    ]
    path = image_data.parent / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _rl_values(model: Path, data: Path, output: Path) -> dict[str, Any]:
    return {
        "stage": "m3rl",
        "model": str(model),
        "data": str(data),
        "output": str(output),
        "method": "lora",
        "max_steps": 1,
        "prompts_per_step": 2,
        "group_size": 4,
        "max_new_tokens": 8,
        "temperature": 1.0,
        "lr": 1e-2,
        "held_out": 0,
        "save_every": 0,
        "save_dtype": "fp32",
        "rewards": {"math": {"py:tests.rl_rewards:spaces": 1.0}},
        "phase1_labels": ["math"],
        "phase2_labels": ["math"],
    }


def test_rl_step_with_images_changes_exactly_the_language_models_lora(
    tiny_vlm_model: Path, image_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safework.training import rollout
    from safework.training.rl import RLConfig, train_rl

    prompts: list[tuple[int, int]] = []  # (prompt width, images) of each rollout generate call
    generate_rows = rollout.PolicyEngine._generate_rows

    def spy(self: Any, rows: Any, s: Any, images: Any = (), seeds: Any = ()) -> Any:
        prompts.append((max(len(r) for r in rows), len(images)))
        return generate_rows(self, rows, s, images, seeds)

    monkeypatch.setattr(rollout.PolicyEngine, "_generate_rows", spy)
    data = _image_prompts(image_data, 8)
    out = tmp_path / "rl"
    summary = train_rl(load_config(RLConfig, None, _rl_values(tiny_vlm_model, data, out)))
    assert summary["steps"] == 1
    assert len(prompts) == 2
    assert all(n == 1 for _, n in prompts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_vlm_model)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "<image>\nDescribe the picture."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    unexpanded = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert unexpanded.count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    assert all(width == len(unexpanded) - 1 + 19 for width, _ in prompts)  # the image's run
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("step") == 1 and "loss" in r for r in log)
    changed = _changed(_weights(tiny_vlm_model), _weights(out))
    assert changed == {
        k
        for k in _weights(tiny_vlm_model)
        if k.startswith("model.text_model.layers.") and any(t in k for t in TARGETS)
    }


def test_a_text_model_refuses_image_rows(
    tiny_model: Path, image_data: Path, tmp_path: Path
) -> None:
    from safework.training.rl import RLConfig, train_rl
    from safework.training.sft import SFTConfig, train

    data = _image_prompts(image_data, 4)
    with pytest.raises(ConfigError, match="does not read images"):
        train_rl(load_config(RLConfig, None, _rl_values(tiny_model, data, tmp_path / "rl")))
    values = {"model": str(tiny_model), "data": str(image_data), "output": str(tmp_path / "s")}
    with pytest.raises(ConfigError, match="does not read images"):
        train(load_config(SFTConfig, None, values))
    assert not (tmp_path / "s").exists()
    assert not (tmp_path / "rl").exists()


# --------------------------------------------------------------------------- the image dataset


def test_image_dataset_asks_the_text_rows_in_pictures(tmp_path: Path) -> None:
    from safework.training.image_data import main

    source = tmp_path / "text"
    source.mkdir()
    for split, n in (("train", 6), ("dev", 4)):
        rows = []
        for i in range(n):
            for task in ("safety", "benign", "math"):
                answer = f"<think>\nabout {task} {i}\n</think>\n\nanswer {i}"
                rows.append(
                    {
                        "id": f"{split}-{task}-{i}",
                        "task": task,
                        "source": "test",
                        "meta": {},
                        "messages": [
                            {"role": "user", "content": f"A {task} question number {i}?"},
                            {"role": "assistant", "content": answer},
                        ],
                    }
                )
        (source / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "images"
    assert main(["--data", str(source), "--output", str(out), "--rows", "4"]) == 0
    train = load_conversations(out / "train.jsonl")  # valid image rows, files checked
    dev = load_conversations(out / "dev.jsonl")
    assert len(train) == len(dev) == 4
    assert {r["task"] for r in train} == {"safety", "benign"}  # two of each, no maths
    assert all(r["id"].startswith("dev-") for r in dev)  # dev pictures come from dev rows
    for row in train:
        user, answer = row["messages"]
        assert user["content"].startswith("<image>\n")
        assert "question number" not in user["content"]  # the request is only in the picture
        assert "question number" in row["meta"]["image_text"]
        assert answer["content"].startswith("<think>")
        with Image.open(row["images"][0]) as picture:
            assert picture.width == 512
    assert main(["--data", str(source), "--output", str(out)]) == 1  # never over a dataset


def test_a_vision_language_model_is_served_in_float32_on_a_cpu(tiny_vlm_model: Path) -> None:
    """The CPU dtype check reads text models only; a VLM skips it (no reference is run)."""
    from safework.engine.faithful import faithful_cpu_dtype

    assert faithful_cpu_dtype(tiny_vlm_model) == "float32"
