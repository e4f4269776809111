"""The SFT stage's run behind ``safework-train sft`` (``sft.py`` starts it, ``sft_config.py``
holds its config, ``trainer.py``'s ``Trainer`` does the model, steps, log and checkpoints).

Micro-batches form one stream across epochs: optimizer step ``k`` consumes micro-batches
``k * grad_accum`` to ``(k + 1) * grad_accum - 1`` of that stream, and the stream's order is a
function of ``(seed, epoch)`` only, so a run resumed from the checkpoint of step ``k`` trains on
exactly the batches the uninterrupted run would have.

The loss of a micro-batch is the summed token cross-entropy divided by the number of trained
tokens in its whole accumulation group (``num_items_in_batch`` of the HF models), so the update
does not depend on how the group was split into micro-batches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

from .distributed import dist_info
from .sft_config import SFTConfig
from .sft_data import IGNORE_INDEX, Encoded, batch_order, collate, encode_dataset
from .trainer import Trainer, load_tokenizer
from .vision import Vision

__all__ = ["SFTRun"]

logger = logging.getLogger(__name__)


class SFTRun:
    """One SFT run: data encoded, output claimed (``self.trainer``), then ``fit()``."""

    def __init__(
        self, config: SFTConfig, model_dir: Path, train_rows: list[dict], dev_rows: list[dict]
    ) -> None:
        self.config = config
        self.dist = dist_info()
        self.tokenizer = load_tokenizer(config, model_dir)
        self.vision = Vision.load(model_dir, self.tokenizer)
        length = config.max_length
        # answer openings are marked only when they are weighed
        opening = config.answer_tokens if config.answer_weight != 1.0 else 0
        self.train_data, dropped = encode_dataset(
            self.tokenizer, train_rows, length, self.vision, answer_tokens=opening
        )
        self.dev_data, _ = encode_dataset(self.tokenizer, dev_rows, length, self.vision)
        if dropped:
            logger.warning("%d conversations had no assistant token within max_length", dropped)
        if not self.train_data:
            raise ConfigError("no conversation has an assistant token within max_length")
        self.trainer = Trainer(config, model_dir, self.tokenizer, self.dist, self.vision)

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

    def fit(self) -> dict[str, Any]:
        config, trainer = self.config, self.trainer
        trainer.prepare(self.total_steps, config.batch_size, config.grad_accum)
        step, tokens, elapsed = trainer.resume()
        summary: dict[str, Any] = {"output": str(config.output), "resumed_from_step": step}
        if step == 0 and self.dev_data:
            summary["dev_loss_start"] = self._dev_loss()
            trainer.log({"step": 0, "dev_loss": summary["dev_loss_start"]})
        stream = self._micro_batches(step * config.grad_accum)
        progress = trainer.progress(self.total_steps, step, "sft")
        train_time = 0.0
        train_tokens = 0
        last_saved = step
        while step < self.total_steps:
            started = time.perf_counter()
            loss_sum, step_tokens = self._train_step(stream)
            grad_norm = trainer.optimizer_step()
            step += 1
            tokens += step_tokens
            train_tokens += step_tokens
            spent = time.perf_counter() - started
            train_time += spent
            elapsed += spent
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.4f}")
            if step % config.log_every == 0 or step == self.total_steps:
                trainer.log(
                    {
                        "step": step,
                        "loss": loss_sum,
                        "lr": trainer.lr,
                        "grad_norm": grad_norm,
                        "tokens": tokens,
                        "tokens_per_s": train_tokens / train_time if train_time else 0.0,
                        "elapsed_s": elapsed,
                    }
                )
            due = config.eval_every and step % config.eval_every == 0
            if due and self.dev_data and step < self.total_steps:
                trainer.log({"step": step, "dev_loss": self._dev_loss()})
            if config.save_every and step % config.save_every == 0 and step < self.total_steps:
                trainer.save_checkpoint(step, tokens, elapsed)
                last_saved = step
        progress.close()
        if last_saved != step:
            trainer.save_checkpoint(step, tokens, elapsed)
        if self.dev_data:
            summary["dev_loss_end"] = self._dev_loss()
            trainer.log({"step": step, "dev_loss": summary["dev_loss_end"]})
        trainer.save_final()
        summary.update(
            steps=step,
            tokens=tokens,
            seconds=round(elapsed, 2),
            train_tokens_per_s=round(train_tokens / train_time, 1) if train_time else None,
            precision="bf16" if trainer.bf16 else "fp32",
            method=config.method,
            train_conversations=len(self.train_data),
            dev_conversations=len(self.dev_data),
        )
        trainer.write_metrics(summary)
        return summary

    def _train_step(self, stream: Iterator[list[Encoded]]) -> tuple[float, int]:
        """Backward passes over one accumulation group of ``grad_accum`` micro-batches:
        returns the group's loss (summed over ranks) and this rank's tokens."""
        import torch

        trainer = self.trainer
        model, device = trainer.model, trainer.device
        autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=trainer.bf16 and not trainer.engine
        )
        model.train()
        pad = self.tokenizer.pad_token_id
        weight = self.config.answer_weight
        group = [
            collate(next(stream), pad, self.vision, weight) for _ in range(self.config.grad_accum)
        ]
        n_items = torch.tensor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in group))
        if self.dist.world_size > 1:
            torch.distributed.all_reduce(n_items)
        loss_sum, tokens = 0.0, 0
        for batch in group:
            batch = {k: v.to(device) for k, v in batch.items()}
            weights = batch.pop("loss_weights", None)
            with autocast:
                if weights is None:
                    loss = model(**batch, num_items_in_batch=n_items.to(device)).loss
                else:
                    loss = weighted_loss(model, batch, weights, n_items.to(device))
            trainer.backward(loss * trainer.rank_scale)
            loss_sum += float(loss.detach())
            tokens += int(batch["attention_mask"].sum())
        if self.dist.world_size > 1:  # log the global loss, not this rank's share
            reduced = torch.tensor([loss_sum])
            torch.distributed.all_reduce(reduced)
            loss_sum = float(reduced[0])
        return loss_sum, tokens

    def _dev_loss(self) -> float:
        """Mean token cross-entropy over the dev conversations (assistant tokens)."""
        import torch

        model, device = self.trainer.model, self.trainer.device
        model.eval()
        total, count = 0.0, 0
        order = sorted(range(len(self.dev_data)), key=lambda i: len(self.dev_data[i].input_ids))
        size = self.config.batch_size
        bf16 = self.trainer.bf16
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            for start in range(0, len(order), size):
                items = [self.dev_data[i] for i in order[start : start + size]]
                batch = {
                    k: v.to(device)
                    for k, v in collate(items, self.tokenizer.pad_token_id, self.vision).items()
                }
                n = int((batch["labels"][:, 1:] != -100).sum())
                out = model(**batch, num_items_in_batch=torch.tensor(n, device=device))
                total += float(out.loss) * n
                count += n
        model.train()
        return total / max(count, 1)


def weighted_loss(model: Any, batch: dict[str, Any], weights: Any, n_items: Any) -> Any:
    """The summed token cross-entropy of ``batch``, each token's term times its weight, over
    ``n_items`` (the accumulation group's trained tokens, as the model's own loss divides):
    with every weight 1 it equals the model's loss."""
    import torch

    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    target = labels[:, 1:]
    terms = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return (terms * weights[:, 1:].reshape(-1)).sum() / n_items
