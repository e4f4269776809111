"""``safework-train sft``: CoT supervised fine-tuning, the first SafeLadder stage.

The loss is the mean cross-entropy over assistant tokens only (``sft_data.py`` builds the mask),
normalised by the number of trained tokens in the whole accumulated step, so gradient
accumulation gives the same update as one large batch. Full fine-tuning or LoRA (peft); bf16
autocast where the hardware has it; DeepSpeed ZeRO-2/3 under the ``deepspeed`` launcher
(``distributed.py``). Every ``save_every`` steps a checkpoint holds everything needed to resume at
the exact next batch; the run ends with a servable HF folder (LoRA merged in), its tokenizer and
chat template (``checkpoint.py`` describes the folder). The settings are ``sft_config.py``'s,
the loop ``sft_trainer.py``'s (on the ``Trainer`` of ``trainer.py``, which RL shares); this
module resolves the model and data and starts the run.

Run::

    safework-train sft                                   # LoRA on the embedded SmolLM2-135M,
                                                         # the built-in cot-sft mix -> runs/sft
    safework-train sft --config sft.yaml max_steps=50 output=runs/try
    safework serve --model runs/try
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

from .sft_config import SFTConfig
from .sft_trainer import SFTRun

__all__ = ["SFTConfig", "load_data", "resolve_model", "train"]


# --------------------------------------------------------------------------- inputs


def resolve_model(model: str, cache: Path | None = None) -> Path:
    """The HF folder ``model`` names ('default': the embedded SmolLM2, fetched if needed;
    'tiny-vlm': the tiny vision-language model built from it, ``engine/tiny_vlm.py``)."""
    if model == "default":
        from safework.engine.default_model import ensure_default_model

        return ensure_default_model(cache)
    if model == "tiny-vlm":
        from safework.engine.tiny_vlm import ensure_tiny_vlm

        return ensure_tiny_vlm(cache)
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model {model!r} is not an HF model folder (no config.json there); set "
            "model=default for the embedded SmolLM2-135M, model=tiny-vlm for the tiny "
            "vision-language model built from it, or model=PATH to a checkpoint"
        )
    return path


def load_data(data: str, cache: Path | None) -> tuple[list[dict], list[dict]]:
    """Validated train and dev conversations (dev may be empty)."""
    from .data import ensure_dataset, load_conversations

    path = Path(data).expanduser()
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise ConfigError(f"data file {path} does not exist; set data=FILE.jsonl or FOLDER")
        return load_conversations(path), []
    if not path.is_dir():
        if "/" in data or data.startswith("."):
            raise ConfigError(f"data folder {path} does not exist; set data=FOLDER")
        path = ensure_dataset(data, cache)
    train_file, dev_file = path / "train.jsonl", path / "dev.jsonl"
    if not train_file.is_file():
        raise ConfigError(f"data folder {path} has no train.jsonl; set data=FOLDER or FILE.jsonl")
    dev = load_conversations(dev_file) if dev_file.is_file() else []
    return load_conversations(train_file), dev


# --------------------------------------------------------------------------- training


def train(config: SFTConfig) -> dict[str, Any]:
    """Run (or resume) SFT as configured; returns the summary also written to metrics.json."""
    model_dir = resolve_model(config.model, config.cache)
    train_rows, dev_rows = load_data(config.data, config.cache)
    if not train_rows:
        raise ConfigError(f"data {config.data}: train split is empty")
    random.Random(config.seed).shuffle(dev_rows)
    run = SFTRun(config, model_dir, train_rows, dev_rows[: config.dev_rows])
    return run.fit()
