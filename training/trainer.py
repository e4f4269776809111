"""The training machinery both stages share: ``Trainer``, held by ``SFTRun`` (``sft_trainer.py``)
and ``RLRun`` (``rl_trainer.py``) as ``run.trainer``.

A stage decides what a step trains on and what its loss is; the trainer does the rest, the same
way for both: the output folder claimed and the checkpoint to resume from found, the model
(full or LoRA) with its AdamW optimizer and schedule, DeepSpeed under its launcher, bf16 or not
(``use_bf16``), backward passes and optimizer steps (clipping, gradient accumulation), the
``log.jsonl`` lines, checkpoints that resume exactly (weights, optimizer, schedule, RNG states,
the stage's own position) and the final servable folder (``export.py``).

Accumulation comes in two kinds: DeepSpeed may count micro-batches itself (``grad_accum`` of
``prepare``; SFT, whose accumulation groups have a fixed size), or the stage marks where an
accumulation ends (``grad_accum=None``; RL, whose mini-batches vary in size).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from safework.errors import ConfigError
from safework.files import write_json_atomic

from .checkpoint import (
    LOG_FILE,
    STATE_FILE,
    claim_output,
    latest_checkpoint,
    prune_checkpoints,
    read_state,
    trim_log,
)
from .distributed import DistInfo, barrier, deepspeed_config
from .rl_config import RLConfig
from .sft_config import SFTConfig
from .vision import Vision

__all__ = [
    "Trainer",
    "bf16_supported",
    "load_tokenizer",
    "load_trusted_tensors",
    "use_bf16",
]

logger = logging.getLogger(__name__)

_OPTIMIZER_FILE = "optimizer.pt"
_DS_TAG = "deepspeed"


def load_tokenizer(config: SFTConfig | RLConfig, model_dir: Path, **options: Any) -> Any:
    """The model's tokenizer with the configured chat template and a pad token (``options``
    go to ``AutoTokenizer.from_pretrained``)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, **options)
    if config.chat_template is not None:
        tokenizer.chat_template = config.chat_template.read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise ConfigError(f"{model_dir} has no chat template; set chat_template=FILE.jinja")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class Trainer:
    """One run's model, optimizer, checkpoints and log; built when the stage has checked its
    inputs (it claims the output folder), then ``prepare()`` before the first step."""

    def __init__(
        self,
        config: SFTConfig | RLConfig,
        model_dir: Path,
        tokenizer: Any,
        dist: DistInfo,
        vision: Vision | None = None,
    ) -> None:
        self.config = config
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.vision = vision
        """A vision-language model's processor (written beside the final weights)."""
        self.dist = dist
        self.model: Any = None
        self.device: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.engine: Any = None  # the DeepSpeed engine, under its launcher
        self.trainable: list[Any] = []
        self._stage_marks_ends = False  # whether the stage marks accumulation boundaries
        self._claim()

    # ------------------------------------------------------------------ setup

    def _claim(self) -> None:
        """DeepSpeed (under its launcher) and bf16 decided, the output folder claimed by rank 0
        (the others then see it as rank 0 left it), and the checkpoint to resume from found."""
        config = self.config
        self.use_deepspeed = config.deepspeed is not None and self.dist.launched
        if config.deepspeed is not None and not self.use_deepspeed:
            logger.warning(
                "deepspeed=%s is ignored outside the deepspeed launcher", config.deepspeed
            )
        self.bf16 = use_bf16(config.precision)
        if self.use_deepspeed:
            import deepspeed

            deepspeed.init_distributed()
        same_run = True
        if self.dist.is_main:
            same_run = claim_output(config.output, config.identity(), overwrite=config.overwrite)
        barrier()
        self.resume_from = self._find_resume(same_run)
        self.log_path = config.output / LOG_FILE

    def _find_resume(self, same_run: bool) -> Path | None:
        config = self.config
        if config.resume not in ("auto", "never"):
            return Path(config.resume)
        latest = latest_checkpoint(config.output) if same_run else None
        if latest is not None and config.resume == "never":
            raise ConfigError(
                f"output {config.output} holds checkpoints of this run; set resume=auto to "
                "continue it or overwrite=true to start over"
            )
        return latest

    def _device(self) -> Any:
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _build_model(self) -> Any:
        import torch

        from .vision import freeze_vision, language_model_prefix, load_causal_model

        config = self.config
        resume = self.resume_from
        full_from = (
            resume if resume and config.method == "full" and not self.use_deepspeed else None
        )
        model = load_causal_model(full_from or self.model_dir, dtype=torch.float32)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if config.method == "full":
            prefix = language_model_prefix(model)
            if prefix is not None:  # a vision-language model trains its language model only
                freeze_vision(model, prefix)
            return model
        from peft import PeftModel, get_peft_model

        if resume and not self.use_deepspeed:
            return PeftModel.from_pretrained(model, resume, is_trainable=True)
        try:
            return get_peft_model(model, config.lora.peft_config(model))
        except ValueError as exc:
            raise ConfigError(f"lora.target_modules: {exc}") from None

    def _optimizer_and_scheduler(self, model: Any, total_steps: int) -> tuple[Any, Any]:
        import torch
        from transformers import get_scheduler

        config = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]],  # ZeRO drops empty groups; keep them in step
            lr=config.lr,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        warmup = int(config.warmup_ratio * total_steps)
        name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
        scheduler = get_scheduler(name, optimizer, warmup, total_steps)
        return optimizer, scheduler

    def prepare(self, total_steps: int, micro_batch_size: int, grad_accum: int | None) -> None:
        """The seeded model, its optimizer and a schedule over ``total_steps`` optimizer steps,
        wrapped by DeepSpeed under the launcher. ``grad_accum``: micro-batches per optimizer
        step, counted by DeepSpeed; None when the stage marks the boundaries itself
        (``backward(loss, last=...)``)."""
        import torch

        config = self.config
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        model = self._build_model()
        device = self._device()
        optimizer, scheduler = self._optimizer_and_scheduler(model, total_steps)
        self._stage_marks_ends = grad_accum is None
        if self.use_deepspeed:
            import deepspeed

            assert config.deepspeed is not None
            ds_config = deepspeed_config(
                config.deepspeed,
                micro_batch_size=micro_batch_size,
                grad_accum=grad_accum if grad_accum is not None else 1,
                world_size=self.dist.world_size,
                max_grad_norm=config.max_grad_norm,
                bf16=self.bf16,
            )
            self.engine, optimizer, _, scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
            )
            device = self.engine.device
        else:
            model.to(device)
        self.model, self.device = model, device
        self.optimizer, self.scheduler = optimizer, scheduler
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    @property
    def policy(self) -> Any:
        """The model being trained (DeepSpeed's module under its launcher)."""
        return self.engine.module if self.engine is not None else self.model

    # ------------------------------------------------------------------ steps

    @property
    def rank_scale(self) -> float:
        """What a loss is multiplied by so that DeepSpeed's mean over ranks is their sum."""
        return float(self.dist.world_size) if self.dist.world_size > 1 else 1.0

    def backward(self, loss: Any, *, last: bool | None = None) -> None:
        """Backpropagate one micro-batch's loss. ``last``: whether it ends the accumulation
        (the stage's own count, ``prepare(grad_accum=None)``); DeepSpeed otherwise counts."""
        engine = self.engine
        if engine is None:
            loss.backward()
        elif self._stage_marks_ends:
            engine.set_gradient_accumulation_boundary(bool(last))
            engine.backward(loss, scale_wrt_gas=False)
        else:
            engine.backward(loss, scale_wrt_gas=False)
            engine.step()

    def optimizer_step(self) -> float:
        """End an accumulation: clip to ``max_grad_norm``, step the optimizer and schedule,
        clear the gradients (DeepSpeed does all of it in its step); returns the gradient norm."""
        import torch

        engine = self.engine
        if engine is not None:
            if self._stage_marks_ends:
                engine.step()
            return float(engine.get_global_grad_norm() or 0.0)
        limit = self.config.max_grad_norm or float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, limit))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    @property
    def lr(self) -> float:
        """The learning rate of the latest step."""
        return self.scheduler.get_last_lr()[0]

    # ------------------------------------------------------------------ log and results

    def log(self, record: dict[str, Any]) -> None:
        """Append a line to ``log.jsonl`` (rank 0), stamped with the time."""
        if not self.dist.is_main:
            return
        record = {"time": time.time(), **record}
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def progress(self, total: int, initial: int, desc: str) -> Any:
        """A tqdm bar over the run's steps (rank 0 only)."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=initial, disable=not self.dist.is_main, desc=desc, unit="step"
        )

    def write_metrics(self, summary: dict[str, Any]) -> None:
        """The run's summary as ``metrics.json`` (rank 0)."""
        if self.dist.is_main:
            write_json_atomic(self.config.output / "metrics.json", summary)

    def save_final(self) -> None:
        """The servable HF folder (LoRA merged), its tokenizer and chat template."""
        from .export import export_final

        export_final(self, self.policy, self.engine)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(
        self, step: int, tokens: int, elapsed: float, extra: dict[str, Any] | None = None
    ) -> None:
        """``checkpoint-{step}``: weights, optimizer, schedule and RNG states, and in
        ``trainer_state.json`` the position (``step``, ``tokens``, ``elapsed_s``) with the
        stage's ``extra``; written aside and renamed into place, older ones pruned."""
        import torch

        output = self.config.output
        final = output / f"checkpoint-{step}"
        tmp = output / f".checkpoint-{step}.tmp"
        if self.dist.is_main and tmp.exists():
            shutil.rmtree(tmp)
        barrier()
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.engine is not None:
            self.engine.save_checkpoint(
                str(tmp), tag=_DS_TAG, client_state={"rng": rng}, save_latest=False
            )
        elif self.dist.is_main:
            tmp.mkdir(parents=True)
            self.model.save_pretrained(tmp)
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            }
            torch.save({**state, "rng": rng}, tmp / _OPTIMIZER_FILE)
        barrier()
        if self.dist.is_main:
            state = {
                "step": step,
                "tokens": tokens,
                "elapsed_s": elapsed,
                "method": self.config.method,
                **(extra or {}),
            }
            write_json_atomic(tmp / STATE_FILE, state)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            prune_checkpoints(output, self.config.save_total_limit)
            self.log({"step": step, "checkpoint": final.name})
        barrier()

    def resume(self) -> tuple[int, int, float]:
        """Load the checkpoint to resume from, if any, and trim the log after it: returns
        ``(step, tokens, elapsed seconds)``, zeros for a fresh run. A fresh run in a folder an
        interrupted one left before its first checkpoint starts its log over."""
        if self.resume_from is None:
            if self.dist.is_main:
                trim_log(self.config.output, -1)
            return 0, 0, 0.0
        position = self._load_state(self.resume_from)
        logger.info("resuming from %s at step %d", self.resume_from, position[0])
        if self.dist.is_main:
            trim_log(self.config.output, position[0])
        return position

    def resumed_state(self) -> dict[str, Any]:
        """The ``trainer_state.json`` of the checkpoint resumed from ({} for a fresh run)."""
        return read_state(self.resume_from) if self.resume_from is not None else {}

    def _load_state(self, checkpoint: Path) -> tuple[int, int, float]:
        import torch

        state = read_state(checkpoint)
        if self.engine is not None:
            safe_deepspeed_loads(self.engine)
            _, saved = self.engine.load_checkpoint(str(checkpoint), tag=_DS_TAG)
            saved = saved or {}
        else:
            saved = load_trusted_tensors(checkpoint / _OPTIMIZER_FILE)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
        if "rng" in saved:
            torch.set_rng_state(saved["rng"]["torch"])
            random.setstate(saved["rng"]["python"])
            if "cuda" in saved["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        return int(state["step"]), int(state.get("tokens", 0)), float(state.get("elapsed_s", 0.0))


def bf16_supported() -> bool:
    """Whether bf16 autocast is fast here: CUDA with bf16, or a CPU with AMX tiles.

    AVX512-BF16 alone is not enough: on such a CPU (this project's CI machine) a LoRA step on
    SmolLM2-135M ran 5x slower under bf16 autocast than in fp32 (17 against 84 tokens/s).
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_amx_tile_supported())


def use_bf16(precision: str) -> bool:
    """Whether a run with ``precision`` (auto, bf16 or fp32) trains under bf16 autocast."""
    if precision == "bf16" and not bf16_supported():
        logger.warning("precision=bf16 on hardware without fast bf16: expect it to be slow")
    return precision == "bf16" or (precision == "auto" and bf16_supported())


def load_trusted_tensors(path: Path) -> Any:
    """A ``torch.save`` file read without running code from it (``weights_only=True``):
    tensors, numbers, strings and containers only, which is all a checkpoint's optimizer,
    scheduler and RNG states hold. A file that needs more (a pickled object, a planted
    ``__reduce__``) is refused with ``pickle.UnpicklingError`` instead of executed."""
    import torch

    return torch.load(path, weights_only=True)


def deepspeed_safe_globals() -> list[Any]:
    """The few classes DeepSpeed pickles into its checkpoints besides tensors (its ZeRO stage
    enum and loss scalers): allowed by name, and nothing else."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    return [ZeroStageEnum, LossScaler, DynamicLossScaler]


def safe_deepspeed_loads(engine: Any) -> None:
    """Make ``engine.load_checkpoint`` read its files with ``weights_only=True`` too.

    DeepSpeed's own checkpoint engine calls ``torch.load(weights_only=False)``; every file
    ``load_checkpoint`` reads goes through ``engine.checkpoint_engine.load``, which this
    replaces for the engine given (DeepSpeed's classes it needs are allowed by name)."""
    import torch

    allowed = deepspeed_safe_globals()

    def load(path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    engine.checkpoint_engine.load = load
