"""The policy update of one RL step: batch preparation, then CPGD optimizer steps.

``CPGDUpdate`` is a collaborator of ``RLRun`` (``rl_trainer.py``), which hands it a step's kept
samples (trajectory, advantage). ``prepare`` sorts them into micro-batches of at most
``micro_batch_size`` sequences and ``micro_batch_tokens`` padded tokens (same-length neighbours
together; ``micro_batches``), so long search transcripts run a few at a time, and measures the
sampling policy's and the reference policy's log-probs before anything changes; then
``ppo_epochs`` passes each run ``mini_batches`` CPGD steps (``step``) over a seeded split of
the micro-batches. The loss of a micro-batch is normalised by the trained tokens (or
sequences) of its whole mini-batch, so micro-batching never changes the update. Backward
passes and optimizer steps are the shared ``Trainer``'s (``trainer.py``).

Under the ``deepspeed`` launcher the normaliser is summed over ranks, and ranks with fewer
micro-batches run zero-weighted ones (the step's ``filler`` trajectory) so every rank joins the
same number of ZeRO collectives.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .rl_config import RLConfig
from .rollout import Trajectory
from .trainer import Trainer
from .vision import Vision

__all__ = ["CPGDUpdate", "PreparedStep", "collate_samples", "micro_batches"]

Sample = tuple[Trajectory, float]  # a trajectory and its advantage


def micro_batches(lengths: Sequence[int], size: int, tokens: int = 0) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length and cut into runs of at most ``size`` whose
    padded width (count x longest) is at most ``tokens`` (0: no token limit). A sequence
    longer than ``tokens`` goes alone. The forward pass's memory grows with the padded
    tokens, so a token budget keeps a batch of long transcripts from holding all of them at
    once while short ones still go ``size`` at a time."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    for i in order:
        run = out[-1] if out else None
        # sorted ascending: this sequence is the run's longest
        if run and len(run) < size and (not tokens or (len(run) + 1) * lengths[i] <= tokens):
            run.append(i)
        else:
            out.append([i])
    return out


def collate_samples(
    items: Sequence[Sample], pad_id: int, device: Any, vision: Vision | None = None
) -> dict[str, Any]:
    """Right-padded ids, the trained-token mask over the shifted targets, advantages; with
    images (a vision-language policy) the prompts' image tokens expanded and ``images``, the
    batch's image tensors."""
    import torch

    prompts = [_expanded_prompt(t, vision) for t, _ in items]
    seqs = [p + t.completion_ids for p, (t, _) in zip(prompts, items, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(items), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(items), width - 1), dtype=torch.float32)  # (B, T-1)
    for row, ((t, _), prompt, seq) in enumerate(zip(items, prompts, seqs, strict=True)):
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        start = len(prompt) - 1  # target position of the first completion token
        mask[row, start : start + len(t.completion_ids)] = torch.tensor(
            t.loss_mask, dtype=torch.float32
        )
    adv = torch.tensor([a for _, a in items], dtype=torch.float32)  # (B,)
    pixels = vision.pixel_inputs([t.images for t, _ in items]) if vision is not None else {}
    return {
        "input_ids": ids.to(device),
        "attention_mask": attention.to(device),
        "mask": mask.to(device),
        "advantages": adv.to(device),
        "images": {k: v.to(device) for k, v in pixels.items()},
    }


def _expanded_prompt(t: Trajectory, vision: Vision | None) -> list[int]:
    """The prompt as the policy reads it: each image token grown into its image's run."""
    if not t.images:
        return t.prompt_ids
    if vision is None:
        raise ValueError("a trajectory has images but the policy does not read images")
    return vision.expand(t.prompt_ids, t.images)[0]


@dataclass
class PreparedStep:
    """One step's micro-batches with the log-probs measured before the update."""

    batches: list[dict[str, Any]]
    sizes: list[int]  # sequences per micro-batch
    old: list[Any | None]  # sampling policy's log-probs; None: the update is on-policy
    ref: list[Any | None]  # reference policy's log-probs; None without a KL term
    spare: dict[str, Any] | None  # the zero-weighted filler micro-batch


@dataclass
class _Totals:
    """Running sums of the loss statistics over the real micro-batches."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    grad_norm: float = 0.0

    def add(self, stats: dict[str, float], loss: float) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss
        self.count += 1

    def result(self) -> dict[str, float]:
        """Statistics averaged over micro-batches; the loss summed, the last gradient norm."""
        sums = self.sums
        out = {k: v / max(self.count, 1) for k, v in sums.items() if k != "loss"}
        out["loss"] = sums.get("loss", 0.0)
        out["grad_norm"] = self.grad_norm
        return out


class CPGDUpdate:
    """The CPGD update of an RL run, on the ``trainer``'s model and optimizer."""

    def __init__(self, config: RLConfig, trainer: Trainer) -> None:
        self.config = config
        self.trainer = trainer
        self._ref_model: Any = None

    # ------------------------------------------------------------------ log-probs

    def logp(self, model: Any, batch: dict[str, Any]) -> Any:
        """Log-probs of every target token ``(B, T-1)``; the vocabulary projection runs only
        from the first trained position on (prompts are never scored)."""
        import torch

        from .cpgd import token_logprobs

        ids = batch["input_ids"]  # (B, T)
        trained = batch["mask"].sum(0).nonzero()
        start = int(trained[0]) if len(trained) else ids.shape[1] - 2
        keep = ids.shape[1] - start  # logits of positions start .. T-1
        autocast = torch.autocast(ids.device.type, torch.bfloat16, enabled=self.trainer.bf16)
        with autocast:
            logits = model(
                input_ids=ids,
                attention_mask=batch["attention_mask"],
                logits_to_keep=keep,
                **batch.get("images", {}),
            ).logits  # (B, keep, vocab)
        logp = token_logprobs(logits[:, :-1], ids[:, start + 1 :], self.config.temperature)
        return torch.nn.functional.pad(logp, (start, 0))

    def _reference_logp(self, model: Any, batch: dict[str, Any]) -> Any:
        """Log-probs under the starting policy: LoRA with the adapter off, else a frozen copy."""
        import torch

        with torch.no_grad():
            if self.config.method == "lora":
                with model.disable_adapter():
                    return self.logp(model, batch)
            if self._ref_model is None:
                from .vision import load_causal_model

                ref = load_causal_model(self.trainer.model_dir, dtype=torch.float32)
                self._ref_model = ref.to(batch["input_ids"].device).eval()
            return self.logp(self._ref_model, batch)

    # ------------------------------------------------------------------ the update

    def prepare(self, samples: list[Sample], filler: Trajectory | None) -> PreparedStep:
        """Micro-batches of the kept samples (sorted by length) and the log-probs the loss
        compares against, measured without dropout before the first optimizer step."""
        import torch

        config, trainer = self.config, self.trainer
        model, device, micro = trainer.policy, trainer.device, config.micro_batch_size
        pad = trainer.tokenizer.pad_token_id
        lengths = [len(t.prompt_ids) + len(t.completion_ids) for t, _ in samples]
        runs = micro_batches(lengths, micro, config.micro_batch_tokens)
        chunks = [[samples[i] for i in run] for run in runs]
        vision = self.trainer.vision
        batches = [collate_samples(c, pad, device, vision) for c in chunks]
        spare = None if filler is None else collate_samples([(filler, 0.0)], pad, device, vision)
        fresh = config.ppo_epochs == 1 and config.mini_batches == 1
        old: list[Any | None] = []
        ref: list[Any | None] = []
        model.eval()  # no dropout while measuring the sampling policy
        for b in batches:
            with torch.no_grad():
                old.append(None if fresh else self.logp(model, b))
            ref.append(self._reference_logp(model, b) if config.cpgd.kl_coef > 0 else None)
        model.train()
        return PreparedStep(batches, [len(c) for c in chunks], old, ref, spare)

    def update(
        self, samples: list[Sample], step: int, filler: Trajectory | None = None
    ) -> dict[str, float]:
        """The CPGD passes over one step's kept samples; returns averaged stats.

        ``filler``: any trajectory of the step, run with zero weight by a rank that has fewer
        micro-batches than another (or none kept), so every rank joins the same collectives.
        """
        config = self.config
        prepared = self.prepare(samples, filler)
        totals = _Totals()
        for epoch in range(config.ppo_epochs):
            order = list(range(len(prepared.batches)))
            random.Random(f"{config.seed}-{step}-{epoch}").shuffle(order)
            per = math.ceil(len(order) / config.mini_batches)
            for m in range(config.mini_batches):
                self.step(prepared, order[m * per : (m + 1) * per], totals)
        return totals.result()

    def _normaliser(self, prepared: PreparedStep, mine: list[int]) -> tuple[float, int]:
        """The mini-batch's trained tokens (or sequences) and micro-batch rounds, over ranks."""
        import torch

        token_norm = self.config.cpgd.loss_norm == "token"
        norm = sum(
            float(prepared.batches[i]["mask"].sum()) if token_norm else prepared.sizes[i]
            for i in mine
        )
        n_micro = len(mine)
        if self.trainer.dist.world_size > 1:
            reduced = torch.tensor([norm, float(n_micro)])
            torch.distributed.all_reduce(reduced)
            norm = float(reduced[0])
            rounds = torch.tensor([n_micro])
            torch.distributed.all_reduce(rounds, op=torch.distributed.ReduceOp.MAX)
            n_micro = int(rounds[0])
        return norm, n_micro

    def step(self, prepared: PreparedStep, mine: list[int], totals: _Totals) -> None:
        """One CPGD optimizer step over the micro-batches ``mine`` (a mini-batch)."""
        from .cpgd import cpgd_loss

        trainer = self.trainer
        norm, n_micro = self._normaliser(prepared, mine)
        if norm <= 0:  # nothing to learn from: keep the schedule in step anyway
            trainer.scheduler.step()
            return
        scale = trainer.rank_scale
        model = trainer.policy
        for k in range(n_micro):
            real = k < len(mine)
            b = prepared.batches[mine[k]] if real else prepared.spare
            if b is None:
                raise RuntimeError("a rank ran short of micro-batches without a filler")
            logp = self.logp(model, b)
            old = prepared.old[mine[k]] if real else None
            loss, stats = cpgd_loss(
                logp,
                old if old is not None else logp.detach(),
                b["advantages"],
                b["mask"],
                self.config.cpgd,
                ref_logp=prepared.ref[mine[k]] if real else logp.detach(),
                normalizer=norm,
            )
            loss = loss * (scale if real else 0.0)
            trainer.backward(loss, last=k == n_micro - 1)
            if real:
                totals.add(stats, float(loss.detach()) / scale)
        totals.grad_norm = trainer.optimizer_step()
