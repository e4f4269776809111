"""A tiny vision-language model built from the embedded default model, for tests and demos.

No vision-language checkpoint can be fetched here (no model hub), so SafeWork builds one in
the shape SmolVLM uses (Idefics3 in transformers and vLLM): SmolLM2-135M-Instruct's own weights
as the language model, so it answers text as the default model does; a vision encoder of two
layers of width 64 reading 128 x 128 images in 16 x 16 patches; and a linear connector that
turns each image into 16 tokens (pixel shuffle, scale 2). The vision encoder and connector are
randomly initialised (seed 0). So the model *reads* images, through the whole path a real one
takes (vLLM's processor, the vision tower, image tokens in the prompt and in ``usage``, LoRA
training), but it has not learnt to see: what it says about an image is the language model's
guess. To see, serve a real checkpoint (README, "Images").

The tokenizer is SmolLM2's plus Idefics3's image tokens (``<image>``, ``<fake_token_around_image>``,
``<global-img>``, ``<row_R_col_C>``), their embeddings initialised at the mean of the others; the
processor does not split images into tiles (one 128 x 128 view each).

Built in about 20 s on 2 CPU cores into ``cache_dir()/models/tiny-vlm`` (bf16, ~270 MB), once;
``safework serve --model tiny-vlm`` serves it. Print its folder::

    python -m safework.engine.tiny_vlm [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safework.files import (
    cache_dir,
    clean_leftovers,
    file_lock,
    lock_path_for,
    make_staging_dir,
    replace_dir,
)

from .default_model import ensure_default_model

__all__ = ["TINY_VLM_ID", "build_tiny_vlm", "ensure_tiny_vlm", "tiny_vlm_dir"]

logger = logging.getLogger(__name__)

TINY_VLM_ID = "tiny-vlm"
MARKER_NAME = "safework-model.json"
RECIPE_VERSION = 1
IMAGE_SIZE = 128
PATCH_SIZE = 16
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
"""Tokens per image: (128 / 16)^2 patches, merged 2 x 2 by the connector."""
VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
}
IMAGE_TOKENS = [
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)),
]


def tiny_vlm_dir(cache: Path | None = None) -> Path:
    """``<cache>/models/tiny-vlm``; ``cache`` defaults to ``cache_dir()``."""
    return (Path(cache) if cache is not None else cache_dir()) / "models" / TINY_VLM_ID


def _is_ready(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("recipe_version") == RECIPE_VERSION


def build_tiny_vlm(out: Path, text_folder: Path) -> dict[str, Any]:
    """Write the model, tokenizer and processor into ``out``; facts for the marker."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
    )

    try:  # transformers 5: the PIL image processor (no torchvision needed)
        from transformers.models.idefics3.image_processing_pil_idefics3 import (
            Idefics3ImageProcessorPil as ImageProcessor,
        )
    except ImportError:  # transformers 4: the slow one is PIL-based
        from transformers import Idefics3ImageProcessor as ImageProcessor

    tokenizer = AutoTokenizer.from_pretrained(text_folder)
    tokenizer.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    text = AutoModelForCausalLM.from_pretrained(text_folder, dtype=torch.float32)
    text.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    config = Idefics3Config(
        text_config=text.config.to_dict(),
        vision_config=VISION,
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=text.config.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    model.model.text_model.load_state_dict(text.model.state_dict())
    model.lm_head.weight.data.copy_(text.lm_head.weight.data)
    model.to(torch.bfloat16).save_pretrained(out)
    images = ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vision_parameters": sum(p.numel() for p in model.model.vision_model.parameters()),
        "image_seq_len": IMAGE_SEQ_LEN,
        "vocab_size": len(tokenizer),
    }


def ensure_tiny_vlm(cache: Path | None = None) -> Path:
    """The tiny VLM's folder, built from the default model on first use (a file lock keeps
    two processes from building it at once; the folder appears by an atomic rename)."""
    folder = tiny_vlm_dir(cache)
    if _is_ready(folder):
        return folder
    text_folder = ensure_default_model(cache)
    with file_lock(lock_path_for(folder)):
        if _is_ready(folder):
            return folder
        clean_leftovers(folder)
        staging = make_staging_dir(folder)
        try:
            started = time.monotonic()
            facts = build_tiny_vlm(staging, text_folder)
            marker = {
                "model_id": TINY_VLM_ID,
                "recipe_version": RECIPE_VERSION,
                "language_model": str(text_folder),
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "build_seconds": round(time.monotonic() - started, 1),
                **facts,
            }
            (staging / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", "utf-8")
            replace_dir(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info("tiny VLM ready at %s", folder)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m safework.engine.tiny_vlm",
        description="Build SafeWork's tiny test VLM from the default model; print its folder.",
    )
    parser.add_argument("--cache", type=Path, default=None, help="cache root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    print(ensure_tiny_vlm(args.cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
