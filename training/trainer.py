"""The SFT training loop behind ``safework-train sft`` (``sft.py`` starts it, ``sft_config.py``
holds its config; ``use_bf16`` decides the precision).

Micro-batches form one stream across epochs: optimizer step ``k`` consumes micro-batches
``k * grad_accum`` to ``(k + 1) * grad_accum - 1`` of that stream, and the stream's order is a
function of ``(seed, epoch)`` only, so a run resumed from the checkpoint of step ``k`` trains on
exactly the batches the uninterrupted run would have.

The loss of a micro-batch is the summed token cross-entropy divided by the number of trained
tokens in its whole accumulation group (``num_items_in_batch`` of the HF models), so the update
does not depend on how the group was split into micro-batches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
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
from .distributed import barrier, deepspeed_config, dist_info
from .sft_config import SFTConfig
from .sft_data import Encoded, batch_order, collate, encode_dataset

__all__ = ["SFTRun", "bf16_supported", "use_bf16"]

logger = logging.getLogger(__name__)

_OPTIMIZER_FILE = "optimizer.pt"
_DS_TAG = "deepspeed"


class SFTRun:
    """One SFT run: data encoded, output claimed, then ``fit()``."""

    def __init__(
        self, config: SFTConfig, model_dir: Path, train_rows: list[dict], dev_rows: list[dict]
    ) -> None:
        from transformers import AutoTokenizer

        self.config = config
        self.model_dir = model_dir
        self.dist = dist_info()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if config.chat_template is not None:
            self.tokenizer.chat_template = config.chat_template.read_text(encoding="utf-8")
        if not self.tokenizer.chat_template:
            raise ConfigError(f"{model_dir} has no chat template; set chat_template=FILE.jinja")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.train_data, dropped = encode_dataset(self.tokenizer, train_rows, config.max_length)
        self.dev_data, _ = encode_dataset(self.tokenizer, dev_rows, config.max_length)
        if dropped:
            logger.warning("%d conversations had no assistant token within max_length", dropped)
        if not self.train_data:
            raise ConfigError("no conversation has an assistant token within max_length")
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
        self._resume_from = self._find_resume(same_run)
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

    @property
    def micro_per_epoch(self) -> int:
        n_batches = math.ceil(len(self.train_data) / self.config.batch_size)
        return max(1, n_batches // self.dist.world_size)

    @property
    def total_steps(self) -> int:
        config = self.config
        if config.max_steps:
            return config.max_steps
        return max(1, math.ceil(config.epochs * self.micro_per_epoch / config.grad_accum))

    def _device(self) -> Any:
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _build_model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        config = self.config
        resume = self._resume_from
        full_from = (
            resume if resume and config.method == "full" and not self.use_deepspeed else None
        )
        model = AutoModelForCausalLM.from_pretrained(
            full_from or self.model_dir, dtype=torch.float32
        )
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if config.method == "lora":
            from peft import LoraConfig, PeftModel, get_peft_model

            if resume and not self.use_deepspeed:
                return PeftModel.from_pretrained(model, resume, is_trainable=True)
            lora = config.lora
            peft_config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            )
            try:
                model = get_peft_model(model, peft_config)
            except ValueError as exc:
                raise ConfigError(f"lora.target_modules: {exc}") from None
        return model

    def _optimizer_and_scheduler(self, model: Any) -> tuple[Any, Any]:
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
        warmup = int(config.warmup_ratio * self.total_steps)
        name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
        scheduler = get_scheduler(name, optimizer, warmup, self.total_steps)
        return optimizer, scheduler

    # ------------------------------------------------------------------ data

    def _micro_batches(self, start_micro: int) -> Iterator[list[Encoded]]:
        """The micro-batch stream of this rank from index ``start_micro`` on (all epochs)."""
        lengths = [len(item.input_ids) for item in self.train_data]
        per_epoch = self.micro_per_epoch
        epoch, pos = divmod(start_micro, per_epoch)
        while True:
            order = batch_order(lengths, self.config.batch_size, self.config.seed, epoch)
            mine = order[: per_epoch * self.dist.world_size][self.dist.rank :: self.dist.world_size]
            for batch in mine[pos:]:
                yield [self.train_data[i] for i in batch]
            epoch, pos = epoch + 1, 0

    # ------------------------------------------------------------------ the loop

    def _prepare(self, micro_batch_size: int, grad_accum: int) -> tuple[Any, Any, Any, Any, Any]:
        """The seeded model, its optimizer and scheduler, wrapped by DeepSpeed under the
        launcher: ``(model, device, optimizer, scheduler, DeepSpeed engine or None)``."""
        import torch

        config = self.config
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        model = self._build_model()
        device = self._device()
        optimizer, scheduler = self._optimizer_and_scheduler(model)
        engine = None
        if self.use_deepspeed:
            import deepspeed

            assert config.deepspeed is not None
            ds_config = deepspeed_config(
                config.deepspeed,
                micro_batch_size=micro_batch_size,
                grad_accum=grad_accum,
                world_size=self.dist.world_size,
                max_grad_norm=config.max_grad_norm,
                bf16=self.bf16,
            )
            engine, optimizer, _, scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
            )
            device = engine.device
        else:
            model.to(device)
        return model, device, optimizer, scheduler, engine

    def fit(self) -> dict[str, Any]:
        import torch

        config = self.config
        model, device, optimizer, scheduler, engine = self._prepare(
            config.batch_size, config.grad_accum
        )
        step, tokens, elapsed = 0, 0, 0.0
        if self._resume_from is not None:
            step, tokens, elapsed = self._load_state(
                self._resume_from, optimizer, scheduler, engine
            )
            logger.info("resuming from %s at step %d", self._resume_from, step)
            if self.dist.is_main:
                trim_log(config.output, step)
        summary: dict[str, Any] = {"output": str(config.output), "resumed_from_step": step}
        if step == 0 and self.dev_data:
            summary["dev_loss_start"] = self._dev_loss(model, device)
            self._log({"step": 0, "dev_loss": summary["dev_loss_start"]})
        trainable = [p for p in model.parameters() if p.requires_grad]
        stream = self._micro_batches(step * config.grad_accum)
        autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=self.bf16 and not engine
        )
        progress = _progress(self.total_steps, step, self.dist.is_main)
        train_time = 0.0
        train_tokens = 0
        last_saved = step
        while step < self.total_steps:
            started = time.perf_counter()
            model.train()
            group = [
                collate(next(stream), self.tokenizer.pad_token_id) for _ in range(config.grad_accum)
            ]
            n_items = torch.tensor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in group))
            scale = 1.0
            if self.dist.world_size > 1:
                torch.distributed.all_reduce(n_items)
                scale = float(self.dist.world_size)  # DeepSpeed averages gradients over ranks
            loss_sum = 0.0
            for batch in group:
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast:
                    out = model(**batch, num_items_in_batch=n_items.to(device))
                loss = out.loss * scale
                if engine is not None:
                    engine.backward(loss, scale_wrt_gas=False)
                    engine.step()
                else:
                    loss.backward()
                loss_sum += float(out.loss.detach())
                tokens += int(batch["attention_mask"].sum())
                train_tokens += int(batch["attention_mask"].sum())
            if self.dist.world_size > 1:  # log the global loss, not this rank's share
                reduced = torch.tensor([loss_sum])
                torch.distributed.all_reduce(reduced)
                loss_sum = float(reduced[0])
            if engine is not None:
                grad_norm = float(engine.get_global_grad_norm() or 0.0)
            else:
                limit = config.max_grad_norm or float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, limit))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step += 1
            spent = time.perf_counter() - started
            train_time += spent
            elapsed += spent
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.4f}")
            if step % config.log_every == 0 or step == self.total_steps:
                self._log(
                    {
                        "step": step,
                        "loss": loss_sum,
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm,
                        "tokens": tokens,
                        "tokens_per_s": train_tokens / train_time if train_time else 0.0,
                        "elapsed_s": elapsed,
                    }
                )
            due = config.eval_every and step % config.eval_every == 0
            if due and self.dev_data and step < self.total_steps:
                self._log({"step": step, "dev_loss": self._dev_loss(model, device)})
            if config.save_every and step % config.save_every == 0 and step < self.total_steps:
                self._save_checkpoint(step, tokens, elapsed, model, optimizer, scheduler, engine)
                last_saved = step
        progress.close()
        if last_saved != step:
            self._save_checkpoint(step, tokens, elapsed, model, optimizer, scheduler, engine)
        if self.dev_data:
            summary["dev_loss_end"] = self._dev_loss(model, device)
            self._log({"step": step, "dev_loss": summary["dev_loss_end"]})
        self._save_final(model, engine)
        summary.update(
            steps=step,
            tokens=tokens,
            seconds=round(elapsed, 2),
            train_tokens_per_s=round(train_tokens / train_time, 1) if train_time else None,
            precision="bf16" if self.bf16 else "fp32",
            method=config.method,
            train_conversations=len(self.train_data),
            dev_conversations=len(self.dev_data),
        )
        if self.dist.is_main:
            write_json_atomic(config.output / "metrics.json", summary)
        return summary

    def _dev_loss(self, model: Any, device: Any) -> float:
        """Mean token cross-entropy over the dev conversations (assistant tokens)."""
        import torch

        model.eval()
        total, count = 0.0, 0
        order = sorted(range(len(self.dev_data)), key=lambda i: len(self.dev_data[i].input_ids))
        size = self.config.batch_size
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=self.bf16):
            for start in range(0, len(order), size):
                items = [self.dev_data[i] for i in order[start : start + size]]
                batch = {
                    k: v.to(device) for k, v in collate(items, self.tokenizer.pad_token_id).items()
                }
                n = int((batch["labels"][:, 1:] != -100).sum())
                out = model(**batch, num_items_in_batch=torch.tensor(n, device=device))
                total += float(out.loss) * n
                count += n
        model.train()
        return total / max(count, 1)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        record = {"time": time.time(), **record}
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(
        self,
        step: int,
        tokens: int,
        elapsed: float,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        engine: Any,
    ) -> None:
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
        if engine is not None:
            engine.save_checkpoint(
                str(tmp), tag=_DS_TAG, client_state={"rng": rng}, save_latest=False
            )
        elif self.dist.is_main:
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp)
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            torch.save({**state, "rng": rng}, tmp / _OPTIMIZER_FILE)
        barrier()
        if self.dist.is_main:
            state = {
                "step": step,
                "tokens": tokens,
                "elapsed_s": elapsed,
                "method": self.config.method,
                **self._extra_state(),
            }
            write_json_atomic(tmp / STATE_FILE, state)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            prune_checkpoints(output, self.config.save_total_limit)
            self._log({"step": step, "checkpoint": final.name})
        barrier()

    def _extra_state(self) -> dict[str, Any]:
        """More of the run's position for ``trainer_state.json`` (subclasses add theirs)."""
        return {}

    def _load_state(
        self, checkpoint: Path, optimizer: Any, scheduler: Any, engine: Any
    ) -> tuple[int, int, float]:
        import torch

        state = read_state(checkpoint)
        if engine is not None:
            safe_deepspeed_loads(engine)
            _, saved = engine.load_checkpoint(str(checkpoint), tag=_DS_TAG)
            saved = saved or {}
        else:
            saved = load_trusted_tensors(checkpoint / _OPTIMIZER_FILE)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        if "rng" in saved:
            torch.set_rng_state(saved["rng"]["torch"])
            random.setstate(saved["rng"]["python"])
            if "cuda" in saved["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        return int(state["step"]), int(state.get("tokens", 0)), float(state.get("elapsed_s", 0.0))

    def _save_final(self, model: Any, engine: Any) -> None:
        """The servable HF folder (LoRA merged), its tokenizer and chat template."""
        from .export import export_final

        export_final(self, model, engine)


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


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="sft", unit="step")
