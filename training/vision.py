"""Images in training: the data format, the model's placeholder, and what the processor makes.

A training row may carry images, as the released SafeWork training data does: ``"images"`` is a
list of file paths (relative to the JSONL file's folder) and each ``<image>`` in a *user* turn
marks where one of them goes, in order::

    {"messages": [{"role": "user", "content": "<image>\\nWhat does the sign say?"},
                  {"role": "assistant", "content": "<think>\\n...\\n</think>\\n\\n..."}],
     "images": ["images/sign.png"]}

On a vision-language model (``Vision.load`` finds its processor) every marker becomes the
prompt text the model reads one image as (``placeholder``: ``<image>`` for Idefics3/SmolVLM,
``<|vision_start|><|image_pad|><|vision_end|>`` for Qwen2-VL; what the model's own processor
template writes for an image part, as vLLM writes it when serving), the conversation is
tokenized as text, and each image token is then spliced into the image's full token run
(``expand``: the processor's expansion of that one image, ``<fake_token_around_image>``,
``<global-img>`` and 16 ``<image>`` tokens for the tiny VLM). The pixel tensors come from the
processor's image processor (``pixel_inputs``) for a whole batch at once, in token order: the
models scatter image features into image-token positions across the batch in that order, so
rows without images simply contribute none.

Rollouts keep a prompt unexpanded (one image token per image), the form the engines take with
``images=``; the trainer expands it when it scores the trajectory.

What trains: LoRA adapters go on the language model only (``language_model_prefix``); the vision
tower and connector stay frozen, with full fine-tuning too (``freeze_vision``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

__all__ = [
    "IMAGE_MARKER",
    "Vision",
    "freeze_vision",
    "is_vision_language",
    "language_model_prefix",
    "load_causal_model",
    "lora_target_pattern",
    "open_image",
]

IMAGE_MARKER = "<image>"
"""Where an image goes in a training row's user turn."""


def is_vision_language(model_dir: Path) -> bool:
    """Whether the HF folder holds a model transformers loads as image-text-to-text."""
    from safework.engine.faithful import is_vision_language as reads_images

    return reads_images(model_dir)


def load_causal_model(model_dir: Path, **options: Any) -> Any:
    """The model of ``model_dir`` with its LM head: a vision-language model as one (its
    vision tower included), any other as a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if is_vision_language(model_dir) else AutoModelForCausalLM
    return auto.from_pretrained(model_dir, **options)


def language_model_prefix(model: Any) -> str | None:
    """The module name of a vision-language model's language model (``model.text_model``,
    ``model.language_model``); None for a text-only model."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if getattr(model.config, "model_type", None) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return None
    decoder = model.get_decoder()
    for name, module in model.named_modules():
        if module is decoder:
            return name
    raise ConfigError(f"{type(model).__name__}: cannot find its language model")


def lora_target_pattern(prefix: str, targets: Sequence[str]) -> str:
    """peft's ``target_modules`` regex for the ``targets`` under the language model only."""
    names = "|".join(re.escape(t) for t in targets)
    return rf"^{re.escape(prefix)}\..*\.(?:{names})$"


def freeze_vision(model: Any, prefix: str) -> int:
    """Freeze every parameter outside the language model and its LM head; returns how many
    tensors were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if not (name.startswith(prefix + ".") or name.startswith("lm_head.")):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def open_image(path: str | Path) -> Any:
    """A training image as RGB (``ConfigError`` naming the file when it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.seek(0)
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"image {path}: cannot be read ({exc})") from None


@dataclass
class Vision:
    """A vision-language model's processor and how its prompts carry images."""

    processor: Any
    placeholder: str
    """The prompt text standing for one image before expansion."""
    image_token_id: int
    """The token the processor expands (one per image in an unexpanded prompt)."""

    @classmethod
    def load(cls, model_dir: Path, tokenizer: Any) -> Vision | None:
        """The model's ``Vision``, sharing ``tokenizer`` (its chat template and padding);
        None for a text-only model."""
        if not is_vision_language(model_dir):
            return None
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(model_dir)
        token = getattr(processor, "image_token", None)
        if not isinstance(token, str) or getattr(processor, "image_processor", None) is None:
            raise ConfigError(f"{model_dir}: its processor does not say how images are tokenized")
        processor.tokenizer = tokenizer
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(f"{model_dir}: the image token {token!r} is not a single token")
        return cls(processor, _placeholder(processor, token), ids[0])

    # ------------------------------------------------------------------ text

    def render_messages(
        self, messages: Sequence[dict[str, Any]], images: int
    ) -> list[dict[str, Any]]:
        """``messages`` with the ``<image>`` markers of user turns replaced by
        ``placeholder``; ``images`` of them are expected (``ConfigError`` otherwise). Image
        tokens typed anywhere else are broken (``< image>``), as the server breaks them, so
        only a row's images put image tokens in its prompt."""
        from safework.engine.base import hide_placeholder

        token = self.processor.tokenizer.decode([self.image_token_id])
        markers = tuple(dict.fromkeys((self.placeholder, token, IMAGE_MARKER)))
        out: list[dict[str, Any]] = []
        found = 0
        for m in messages:
            if m["role"] == "user" and images:
                pieces = m["content"].split(IMAGE_MARKER)
                found += len(pieces) - 1
                content = self.placeholder.join(hide_placeholder(p, markers) for p in pieces)
            else:
                content = hide_placeholder(m["content"], markers)
            out.append({**m, "content": content})
        if found != images:
            raise ConfigError(f"user turns hold {found} {IMAGE_MARKER} markers for {images} images")
        return out

    def expansion(self, image: Any) -> list[int]:
        """The token run one image becomes (the processor's own expansion)."""
        out = self.processor(
            text=[self.processor.image_token], images=[[image]], add_special_tokens=False
        )
        return list(out["input_ids"][0])

    def expand(
        self, ids: Sequence[int], images: Sequence[Any]
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """``ids`` with its k-th image token replaced by image k's run, and the runs'
        ``[start, end)`` positions. A count that does not match is a ``ConfigError``."""
        at = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if len(at) != len(images):
            raise ConfigError(
                f"the prompt holds {len(at)} image placeholders for {len(images)} images"
            )
        out: list[int] = []
        spans: list[tuple[int, int]] = []
        last = 0
        for pos, image in zip(at, images, strict=True):
            out.extend(ids[last:pos])
            run = self.expansion(image)
            spans.append((len(out), len(out) + len(run)))
            out.extend(run)
            last = pos + 1
        out.extend(ids[last:])
        return out, spans

    # ------------------------------------------------------------------ pixels

    def pixel_inputs(self, images_per_row: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """The model's image tensors for a batch (``pixel_values`` and what goes with them),
        rows in order; {} when no row has an image."""
        rows = [list(r) for r in images_per_row if r]
        if not rows:
            return {}
        out = self.processor.image_processor(images=rows, return_tensors="pt")
        return {k: v for k, v in out.items() if hasattr(v, "to")}


def _placeholder(processor: Any, token: str) -> str:
    """What the processor's chat template writes for one image part (the wrapper tokens of
    Qwen2-VL included), else the image token alone."""
    a, b = "\x01A\x01", "\x01B\x01"
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": a},
                {"type": "image"},
                {"type": "text", "text": b},
            ],
        }
    ]
    try:
        text = processor.apply_chat_template(messages, tokenize=False)
    except Exception:  # no template, or one that takes text content only
        return token
    start, end = text.find(a), text.find(b)
    between = text[start + len(a) : end].strip() if 0 <= start < end else ""
    return between if between.count(token) == 1 else token
