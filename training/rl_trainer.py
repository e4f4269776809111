"""The RL loop behind ``safework-train rl`` (``rl.py`` starts it; ``rl_config.py``: settings).

One step: draw this step's prompts (a function of the step number, so a resumed run draws what
the uninterrupted one would), roll out ``G`` completions each, score them, compute advantages,
drop groups without reward variance, then ``ppo_epochs`` passes of ``mini_batches`` optimizer
steps with the CPGD loss over micro-batches. The loss of a micro-batch is normalised by the
trained tokens (or sequences) of its whole mini-batch, so micro-batching never changes the
update. The model setup, optimizer, checkpoints and final export are the SFT trainer's
(``RLRun`` extends ``SFTRun``).

Under the ``deepspeed`` launcher every rank rolls out its share of the step's prompts; the
normaliser is summed over ranks, and ranks with fewer micro-batches run zero-weighted ones so
every rank joins the same number of ZeRO collectives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safework.engine.base import Engine, SamplingConfig
from safework.engine.embedder import Encoder
from safework.errors import ConfigError

from .checkpoint import read_state, trim_log
from .distributed import dist_info
from .rl_config import RLConfig
from .rl_data import RLPrompt
from .rl_scoring import Scoring
from .rollout import PolicyEngine, Trajectory, sample_group, search_group
from .trainer import SFTRun

__all__ = ["RLRun"]

logger = logging.getLogger(__name__)


class RLRun(Scoring, SFTRun):
    """One RL run: prompts tokenised, output claimed, then ``fit()``."""

    def __init__(
        self,
        config: RLConfig,
        model_dir: Path,
        train: Sequence[RLPrompt],
        held_out: Sequence[RLPrompt],
        encoder: Encoder | None = None,
    ) -> None:
        """``encoder`` embeds for the search stage's relevance filter (default: MiniLM, loaded
        when the first search rollout needs it)."""
        from transformers import AutoTokenizer

        from .rewards import AdaptiveLambda, MultiObjectiveReward, RewardContext

        self.config = config  # type: ignore[assignment]
        self.rl = config
        self.model_dir = model_dir
        self.dist = dist_info()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if config.chat_template is not None:
            self.tokenizer.chat_template = config.chat_template.read_text(encoding="utf-8")
        if not self.tokenizer.chat_template:
            raise ConfigError(f"{model_dir} has no chat template; set chat_template=FILE.jinja")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pools = self._tokenise_pools(train)
        from safework.engine.reasoning import starts_in_reasoning

        probe = [{"role": "user", "content": "Hi"}]
        self._opens_reasoning = starts_in_reasoning(
            self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        )
        self.held_out = self._pick_held_out(held_out)
        self.reward = MultiObjectiveReward(config.routes(), RewardContext(cache=config.cache))
        lam = config.lam
        self.lam = AdaptiveLambda(lam.value, lam.target, lam.step, lam.low, lam.high, lam.threshold)
        ranks = self.dist.world_size if config.deepspeed is not None and self.dist.launched else 1
        if config.prompts_per_step % ranks:
            raise ConfigError(
                f"prompts_per_step={config.prompts_per_step} must be a multiple of the "
                f"{ranks} ranks"
            )
        self._claim()
        self.loop = asyncio.new_event_loop()
        self.encoder = encoder
        self._search: Any = None

    # ------------------------------------------------------------------ prompts

    def _tokenise_pools(self, prompts: Sequence[RLPrompt]) -> dict[str, list[RLPrompt]]:
        pools: dict[str, list[RLPrompt]] = {}
        skipped = 0
        for p in prompts:
            if len(self._prompt_ids(p)) > self.rl.max_prompt_tokens:
                skipped += 1
                continue
            pools.setdefault(p.label, []).append(p)
        if skipped:
            logger.warning("%d prompts longer than max_prompt_tokens were skipped", skipped)
        missing = set(self.rl.stage_labels()) - set(pools)
        if missing:
            raise ConfigError(f"no prompt labelled {sorted(missing)} fits max_prompt_tokens")
        return pools

    def _prompt_ids(self, p: RLPrompt) -> list[int]:
        messages = p.messages
        if self.rl.stage == "search":
            from safework.search.prompts import protocol_messages

            messages = protocol_messages(messages)
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _pick_held_out(self, prompts: Sequence[RLPrompt]) -> list[RLPrompt]:
        """Up to ``held_out`` prompts, the labels taking turns (a seeded draw within each)."""
        by_label: dict[str, list[RLPrompt]] = {}
        for p in prompts:
            by_label.setdefault(p.label, []).append(p)
        for label, items in by_label.items():
            random.Random(f"{self.rl.seed}-held-out-{label}").shuffle(items)
        picked: list[RLPrompt] = []
        while len(picked) < self.rl.held_out and any(by_label.values()):
            for label in sorted(by_label):
                if by_label[label] and len(picked) < self.rl.held_out:
                    picked.append(by_label[label].pop())
        return picked

    def step_prompts(self, step: int) -> list[RLPrompt]:
        """This rank's prompts of ``step``: slot ``g`` takes label ``g mod L`` and the next
        prompt of that label's seeded per-epoch order."""
        labels = self.rl.labels_at(step)
        per = self.rl.prompts_per_step
        out = []
        for j in range(self.dist.rank, per, self.dist.world_size):
            g = step * per + j
            label = labels[g % len(labels)]
            pool = self.pools[label]
            epoch, pos = divmod(g // len(labels), len(pool))
            order = list(range(len(pool)))
            random.Random(f"{self.rl.seed}-{label}-{epoch}").shuffle(order)
            out.append(pool[order[pos]])
        return out

    # ------------------------------------------------------------------ rollouts

    def _engine(self, model: Any) -> Engine:
        if self.rl.rollout_engine == "vllm":
            from .weights import colocated_vllm

            return colocated_vllm(self, model)
        length = self.rl.max_prompt_tokens + self.rl.max_new_tokens
        if self.rl.stage == "search":
            length += 2048  # inserted results and reads
        return PolicyEngine(model, self.tokenizer, max_model_len=length)

    def _search_strategies(self, prompt: RLPrompt, n: int) -> list[Any]:
        from safework.search.deliberative import DeliberativeSearch

        if self._search is None:
            from safework.engine.embedder import get_embedder
            from safework.search.base import BackendContext, load_backend

            s = self.rl.search
            backend = load_backend(s.backend, ctx=BackendContext(cache=self.rl.cache))
            encoder = self.encoder if self.encoder is not None else get_embedder(self.rl.cache)
            self._search = (s.search_config(), backend, encoder)
        search_config, backend, encoder = self._search
        return [
            DeliberativeSearch(search_config, backend, prompt.messages, prompt.question, encoder)
            for _ in range(n)
        ]

    def rollout(
        self, engine: Engine, prompts: Sequence[RLPrompt], n: int, *, greedy: bool = False
    ) -> list[list[Trajectory]]:
        """``n`` trajectories per prompt, every group in flight together."""
        sampling = SamplingConfig(
            max_tokens=self.rl.max_new_tokens,
            temperature=0.0 if greedy else self.rl.temperature,
            top_p=1.0 if greedy else self.rl.top_p,
        )

        async def one(i: int, p: RLPrompt) -> list[Trajectory]:
            ids = self._prompt_ids(p)
            rid = f"rl-{i}"
            if self.rl.stage == "search":
                return await search_group(engine, self._search_strategies(p, n), ids, sampling, rid)
            return await sample_group(engine, ids, n, sampling, rid)

        async def everything() -> list[list[Trajectory]]:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))

        return self.loop.run_until_complete(everything())

    # ------------------------------------------------------------------ update

    def _batch(self, items: Sequence[tuple[Trajectory, float]], device: Any) -> dict[str, Any]:
        """Right-padded ids, the trained-token mask over the shifted targets, advantages."""
        import torch

        seqs = [t.prompt_ids + t.completion_ids for t, _ in items]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        mask = torch.zeros((len(items), width - 1), dtype=torch.float32)
        for row, ((t, _), seq) in enumerate(zip(items, seqs, strict=True)):
            ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
            start = len(t.prompt_ids) - 1  # target position of the first completion token
            mask[row, start : start + len(t.completion_ids)] = torch.tensor(
                t.loss_mask, dtype=torch.float32
            )
        adv = torch.tensor([a for _, a in items], dtype=torch.float32)
        return {
            "input_ids": ids.to(device),
            "attention_mask": attention.to(device),
            "mask": mask.to(device),
            "advantages": adv.to(device),
        }

    def _logp(self, model: Any, batch: dict[str, Any]) -> Any:
        """Log-probs of every target token ``[B, T-1]``; the vocabulary projection runs only
        from the first trained position on (prompts are never scored)."""
        import torch

        from .cpgd import token_logprobs

        ids = batch["input_ids"]
        trained = batch["mask"].sum(0).nonzero()
        start = int(trained[0]) if len(trained) else ids.shape[1] - 2
        keep = ids.shape[1] - start  # logits of positions start .. T-1
        autocast = torch.autocast(ids.device.type, torch.bfloat16, enabled=self.bf16)
        with autocast:
            logits = model(
                input_ids=ids, attention_mask=batch["attention_mask"], logits_to_keep=keep
            ).logits
        logp = token_logprobs(logits[:, :-1], ids[:, start + 1 :], self.rl.temperature)
        return torch.nn.functional.pad(logp, (start, 0))

    def _reference_logp(self, model: Any, batch: dict[str, Any]) -> Any:
        """Log-probs under the starting policy: LoRA with the adapter off, else a frozen copy."""
        import torch

        with torch.no_grad():
            if self.rl.method == "lora":
                with model.disable_adapter():
                    return self._logp(model, batch)
            if getattr(self, "_ref_model", None) is None:
                from transformers import AutoModelForCausalLM

                ref = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
                self._ref_model = ref.to(batch["input_ids"].device).eval()
            return self._logp(self._ref_model, batch)

    def update(
        self,
        model: Any,
        engine: Any,
        optimizer: Any,
        scheduler: Any,
        samples: list[tuple[Trajectory, float]],
        step: int,
        device: Any,
        filler: Trajectory | None = None,
    ) -> dict[str, float]:
        """The CPGD passes over one step's kept samples; returns averaged stats.

        ``filler``: any trajectory of the step, run with zero weight by a rank that has fewer
        micro-batches than another (or none kept), so every rank joins the same collectives.
        """
        import torch

        from .cpgd import cpgd_loss

        rl = self.rl
        settings = rl.cpgd
        micro = rl.micro_batch_size
        # same-length neighbours share micro-batches; the mini-batch split is seeded per step
        samples = sorted(samples, key=lambda s: len(s[0].prompt_ids) + len(s[0].completion_ids))
        fresh = rl.ppo_epochs == 1 and rl.mini_batches == 1
        chunks = [samples[i : i + micro] for i in range(0, len(samples), micro)]
        batches = [self._batch(c, device) for c in chunks]
        spare = self._batch([(filler, 0.0)], device) if filler is not None else None
        old: list[Any] = []
        ref: list[Any | None] = []
        model.eval()  # no dropout while measuring the sampling policy
        for b in batches:
            with torch.no_grad():
                old.append(None if fresh else self._logp(model, b))
            ref.append(self._reference_logp(model, b) if settings.kl_coef > 0 else None)
        model.train()
        totals: dict[str, float] = {}
        count = 0
        trainable = [p for p in model.parameters() if p.requires_grad]
        for epoch in range(rl.ppo_epochs):
            order = list(range(len(batches)))
            random.Random(f"{rl.seed}-{step}-{epoch}").shuffle(order)
            per = math.ceil(len(order) / rl.mini_batches)
            for m in range(rl.mini_batches):
                mine = order[m * per : (m + 1) * per]
                norm = sum(
                    float(batches[i]["mask"].sum())
                    if settings.loss_norm == "token"
                    else len(chunks[i])
                    for i in mine
                )
                n_micro = len(mine)
                scale = 1.0
                if self.dist.world_size > 1:
                    reduced = torch.tensor([norm, float(n_micro)])
                    torch.distributed.all_reduce(reduced)
                    norm = float(reduced[0])
                    rounds = torch.tensor([n_micro])
                    torch.distributed.all_reduce(rounds, op=torch.distributed.ReduceOp.MAX)
                    n_micro = int(rounds[0])
                    scale = float(self.dist.world_size)  # DeepSpeed averages over ranks
                if norm <= 0:  # nothing to learn from: keep the schedule in step anyway
                    scheduler.step()
                    continue
                for k in range(n_micro):
                    real = k < len(mine)
                    b = batches[mine[k]] if real else spare
                    if b is None:
                        raise RuntimeError("a rank ran short of micro-batches without a filler")
                    logp = self._logp(model, b)
                    old_logp = old[mine[k]] if real and old[mine[k]] is not None else logp.detach()
                    loss, stats = cpgd_loss(
                        logp,
                        old_logp,
                        b["advantages"],
                        b["mask"],
                        settings,
                        ref_logp=ref[mine[k]] if real else logp.detach(),
                        normalizer=norm,
                    )
                    loss = loss * (scale if real else 0.0)
                    if engine is not None:
                        engine.set_gradient_accumulation_boundary(k == n_micro - 1)
                        engine.backward(loss, scale_wrt_gas=False)
                    else:
                        loss.backward()
                    if real:
                        for key, value in stats.items():
                            totals[key] = totals.get(key, 0.0) + value
                        totals["loss"] = totals.get("loss", 0.0) + float(loss.detach()) / scale
                        count += 1
                if engine is not None:
                    engine.step()
                    totals["grad_norm"] = float(engine.get_global_grad_norm() or 0.0)
                else:
                    limit = rl.max_grad_norm or float("inf")
                    totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(trainable, limit))
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        out = {k: v / max(count, 1) for k, v in totals.items() if k not in ("grad_norm", "loss")}
        out["loss"] = totals.get("loss", 0.0)
        out["grad_norm"] = totals.get("grad_norm", 0.0)
        return out

    # ------------------------------------------------------------------ the loop

    @property
    def total_steps(self) -> int:  # optimizer updates, for the learning-rate schedule
        return self.rl.max_steps * self.rl.ppo_epochs * self.rl.mini_batches

    def _extra_state(self) -> dict[str, Any]:
        return {"stage": self.rl.stage, "lam": self.lam.state_dict()}

    def fit(self) -> dict[str, Any]:
        try:
            return self._fit()
        finally:
            self.reward.close()
            self.loop.close()

    def _fit(self) -> dict[str, Any]:
        rl = self.rl
        # the trainer marks DeepSpeed's accumulation boundaries itself (grad_accum 1)
        model, device, optimizer, scheduler, engine = self._prepare(rl.micro_batch_size, 1)
        policy = engine.module if engine is not None else model
        step, tokens, elapsed = 0, 0, 0.0
        if self._resume_from is not None:
            step, tokens, elapsed = self._load_state(
                self._resume_from, optimizer, scheduler, engine
            )
            self.lam.load_state_dict(read_state(self._resume_from).get("lam", {}))
            logger.info("resuming from %s at step %d", self._resume_from, step)
            if self.dist.is_main:
                trim_log(rl.output, step)
        summary: dict[str, Any] = {
            "output": str(rl.output),
            "stage": rl.stage,
            "resumed_from_step": step,
        }
        rollout_engine = self._engine(policy)
        if step == 0 and self.held_out:
            summary["held_out_start"] = self.held_out_report(rollout_engine)
            self._log({"step": 0, "held_out": summary["held_out_start"]})
        elif self.held_out and self.log_path.is_file():  # resumed: the report of step 0
            for line in self.log_path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("step") == 0 and "held_out" in record:
                    summary["held_out_start"] = record["held_out"]
        progress = _progress(rl.max_steps, step, self.dist.is_main, rl.stage)
        last_saved = step
        timing = {"rollout_s": 0.0, "reward_s": 0.0, "update_s": 0.0}
        session_started = time.monotonic()
        while step < rl.max_steps:
            if rl.max_minutes and time.monotonic() - session_started >= 60 * rl.max_minutes:
                logger.info("max_minutes=%s reached at step %d", rl.max_minutes, step)
                summary["stopped"] = f"max_minutes={rl.max_minutes} at step {step}"
                break
            started = time.perf_counter()
            prompts = self.step_prompts(step)
            groups = self.rollout(rollout_engine, prompts, rl.group_size)
            t_rollout = time.perf_counter()
            result, flat_prompts, flat = self.score(prompts, groups)
            adv, keep, info = self.advantages(result, flat)
            record: dict[str, Any] = {"step": step + 1, **info}
            if rl.stage == "m3rl":
                record["phase"] = 1 if rl.labels_at(step) == list(rl.phase1_labels) else 2
            if rl.stage == "search":
                from .rewards import confidently_wrong_rate

                correct = [self.correctness(result, flat, i) for i in range(len(flat))]
                confidences = [t.confidence for t in flat]
                record["accuracy"] = sum(correct) / len(correct)
                record["confidently_wrong"] = confidently_wrong_rate(
                    confidences, correct, self.lam.threshold
                )
                record["lam"] = self.lam.value
                self.lam.update(confidences, correct)
            t_reward = time.perf_counter()
            samples = [(t, a) for t, a, k in zip(flat, adv, keep, strict=True) if k]
            stats = self.update(
                policy, engine, optimizer, scheduler, samples, step, device, filler=flat[0]
            )
            if rl.rollout_engine == "vllm":
                from .weights import sync_weights

                sync_weights(self, rollout_engine, policy)
            t_update = time.perf_counter()
            step += 1
            generated = sum(t.generated_tokens for t in flat)
            tokens += generated
            elapsed += t_update - started
            timing["rollout_s"] += t_rollout - started
            timing["reward_s"] += t_reward - t_rollout
            timing["update_s"] += t_update - t_reward
            labels = [p.label for p in flat_prompts]
            record.update(result.means(labels))
            record.update(stats)
            record.update(
                lr=scheduler.get_last_lr()[0],
                completion_tokens_mean=generated / len(flat),
                reasoning_tokens_mean=sum(self.reasoning_tokens(t) for t in flat) / len(flat),
                rollout_s=round(t_rollout - started, 3),
                reward_s=round(t_reward - t_rollout, 3),
                update_s=round(t_update - t_reward, 3),
                elapsed_s=round(elapsed, 2),
            )
            progress.update(1)
            progress.set_postfix(reward=f"{record.get('reward/total', 0.0):.3f}")
            if step % rl.log_every == 0 or step == rl.max_steps:
                self._log(record)
            if rl.save_every and step % rl.save_every == 0 and step < rl.max_steps:
                self._save_checkpoint(step, tokens, elapsed, policy, optimizer, scheduler, engine)
                last_saved = step
        progress.close()
        if last_saved != step:
            self._save_checkpoint(step, tokens, elapsed, policy, optimizer, scheduler, engine)
        if self.held_out:
            summary["held_out_end"] = self.held_out_report(rollout_engine)
            self._log({"step": step, "held_out": summary["held_out_end"]})
        self._save_final(policy, engine)
        self.loop.run_until_complete(rollout_engine.shutdown())
        summary.update(
            steps=step,
            generated_tokens=tokens,
            seconds=round(elapsed, 2),
            **{k: round(v, 2) for k, v in timing.items()},
            lam=self.lam.value,
            method=rl.method,
            train_prompts={label: len(pool) for label, pool in self.pools.items()},
        )
        if self.dist.is_main:
            from safework.files import write_json_atomic

            write_json_atomic(rl.output / "metrics.json", summary)
        return summary


def _progress(total: int, initial: int, enabled: bool, stage: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=stage, unit="step")
