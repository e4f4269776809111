"""``SFTConfig``: the settings of ``safework-train sft`` (``sft.py`` starts it,
``sft_trainer.py``'s ``SFTRun`` runs it on ``trainer.py``'s shared ``Trainer``).

The config on its own, so the trainer (``sft_trainer.py``) and the stage's entry (``sft.py``) both
read it and the RL stages reuse its pieces (``RUN_SWITCHES``, ``LoraSettings``) without importing
either. Importing this module is cheap: ``--help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safework.errors import ConfigError

from .config import config_to_dict

__all__ = ["LLAMA_LINEAR", "RUN_SWITCHES", "LoraSettings", "SFTConfig"]

LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RUN_SWITCHES = (
    "output",
    "cache",
    "resume",
    "overwrite",
    "log_every",
    "save_every",
    "save_total_limit",
)
"""Keys that change how a run is carried out, not which run it is."""


@dataclass
class LoraSettings:
    r: int = field(default=16, metadata={"help": "LoRA rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha/r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR),
        metadata={"help": "module names that get adapters (default: every Llama projection)"},
    )

    def check(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("lora.target_modules is empty; name at least one module")

    def peft_config(self, model: Any) -> Any:
        """peft's ``LoraConfig`` for ``model``; on a vision-language model the target modules
        are matched in its language model only, so the vision tower gets no adapters."""
        from peft import LoraConfig

        from .vision import language_model_prefix, lora_target_pattern

        targets: list[str] | str = list(self.target_modules)
        prefix = language_model_prefix(model)
        if prefix is not None:
            targets = lora_target_pattern(prefix, self.target_modules)
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )


@dataclass
class SFTConfig:
    model: str = field(
        default="default",
        metadata={"help": "HF model folder, or 'default' for the embedded SmolLM2-135M-Instruct"},
    )
    data: str = field(
        default="cot-sft",
        metadata={
            "help": "dataset folder (train.jsonl, dev.jsonl), a .jsonl file, or a built-in "
            "recipe name (built by `safework-train data` into the cache)"
        },
    )
    output: Path = field(default=Path("runs/sft"), metadata={"help": "run folder"})
    method: Literal["lora", "full"] = field(
        default="lora", metadata={"help": "train LoRA adapters (merged at the end) or all weights"}
    )
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA settings"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data (if max_steps=0)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = use epochs"})
    batch_size: int = field(default=4, metadata={"help": "conversations per micro-batch"})
    grad_accum: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    max_length: int = field(default=1024, metadata={"help": "tokens per conversation (cut)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (full: try 2e-5)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps warming up"})
    scheduler: Literal["cosine", "linear", "constant"] = field(
        default="cosine", metadata={"help": "learning-rate schedule after warmup"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    precision: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata={"help": "bf16 autocast (auto: where the hardware supports it)"}
    )
    answer_weight: float = field(
        default=1.0,
        metadata={
            "help": "loss weight of the first answer_tokens tokens of each answer after its "
            "reasoning (</think>); 1 = every trained token alike"
        },
    )
    answer_tokens: int = field(
        default=8, metadata={"help": "answer tokens (not whitespace) that answer_weight weighs"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations to save memory"}
    )
    dev_rows: int = field(default=128, metadata={"help": "dev conversations for the dev loss"})
    eval_every: int = field(default=0, metadata={"help": "dev loss every N steps; 0 = at end"})
    log_every: int = field(default=1, metadata={"help": "log a line every N steps"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every N steps; 0 = end"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept; 0 = all"})
    resume: str = field(
        default="auto",
        metadata={
            "help": "'auto' continues this run from its latest checkpoint, 'never' refuses to "
            "reuse the folder, or a checkpoint folder to resume from"
        },
    )
    overwrite: bool = field(
        default=False, metadata={"help": "empty an output folder that holds another run"}
    )
    deepspeed: Path | None = field(
        default=None, metadata={"help": "DeepSpeed JSON (ZeRO-2/3); used under the launcher"}
    )
    chat_template: Path | None = field(
        default=None, metadata={"help": "Jinja chat template to use instead of the model's"}
    )
    save_dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata={"help": "dtype of the final model (auto: the base model's)"}
    )
    seed: int = field(default=0, metadata={"help": "data order, LoRA init and dropout"})
    cache: Path | None = field(default=None, metadata={"help": "cache root ($SAFEWORK_CACHE)"})

    def check(self) -> None:
        for key in ("batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("max_steps", "dev_rows", "eval_every", "save_every", "save_total_limit"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be 0 or more, got {getattr(self, key)}")
        if self.max_steps == 0 and self.epochs <= 0:
            raise ConfigError("set max_steps=N or epochs>0: with both at 0 nothing is trained")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr} (LoRA: 2e-4, full: 2e-5)")
        if self.answer_weight <= 0:
            raise ConfigError(f"answer_weight must be positive, got {self.answer_weight}")
        if self.answer_tokens < 1:
            raise ConfigError(f"answer_tokens must be at least 1, got {self.answer_tokens}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_grad_norm < 0 or self.weight_decay < 0:
            raise ConfigError("max_grad_norm and weight_decay must be 0 or more")
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise ConfigError(f"resume={self.resume!r}: not 'auto', 'never' or a checkpoint folder")

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (the output folder remembers it)."""
        data = config_to_dict(self)
        return {k: v for k, v in data.items() if k not in RUN_SWITCHES}
