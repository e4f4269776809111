"""Scoring one RL step: rewards, the efficient stage's length term, advantages, held-out report.

``Scoring`` is a collaborator of ``RLRun`` (``rl_trainer.py``, as ``run.scoring``), kept apart so
the loop stays readable: everything here reads the step's trajectories and the run's config,
and nothing here generates or touches the optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safework.engine.reasoning import split_reasoning

from .rl_config import RLConfig
from .rl_data import RLPrompt, reward_meta
from .rollout import Trajectory

__all__ = ["Scoring"]


class Scoring:
    """Reward and advantage computation for ``RLRun``."""

    def __init__(
        self, config: RLConfig, tokenizer: Any, reward: Any, lam: Any, opens_reasoning: bool
    ) -> None:
        """``reward``: the stage's ``MultiObjectiveReward``; ``lam``: its ``AdaptiveLambda``;
        ``opens_reasoning``: whether the chat template opens ``<think>`` in the prompt."""
        self.config = config
        self.tokenizer = tokenizer
        self.reward = reward
        self.lam = lam
        self._opens_reasoning = opens_reasoning
        self._gold: list[Any] = []

    # ------------------------------------------------------------------ rewards

    def score(
        self, prompts: Sequence[RLPrompt], groups: Sequence[Sequence[Trajectory]]
    ) -> tuple[Any, list[RLPrompt], list[Trajectory]]:
        """The reward result over all samples (flattened group by group)."""
        flat_prompts = [p for p, g in zip(prompts, groups, strict=True) for _ in g]
        flat = [t for g in groups for t in g]
        meta = reward_meta(flat_prompts)
        self._gold = meta["answer"]
        # a template that opens <think> in the prompt leaves it out of the completion
        opened = "<think>\n" if self._opens_reasoning else ""
        result = self.reward(
            [p.question for p in flat_prompts],
            [opened + t.text for t in flat],
            [p.label for p in flat_prompts],
            finish_reason=[t.finish_reason for t in flat],
            protocol=[t.protocol for t in flat],
            confidence=[t.confidence for t in flat],
            lam=[self.lam.value] * len(flat),
            **meta,
        )
        return result, flat_prompts, flat

    def good(self, result: Any, flat: Sequence[Trajectory], i: int) -> bool:
        """Whether sample ``i`` earned its brevity: it finished (not cut off at the token
        limit) and every outcome term routed to it (all but ``good_ignores``, the style terms)
        is at least ``good_threshold``. This is the report's conditional length reward: brevity
        counts only among answers that are right, safe and helpful; the format term still
        weighs in the reward itself."""
        if flat[i].finish_reason == "length":
            return False
        ignored = set(self.config.good_ignores)
        values = [
            v[i] for name, v in result.terms.items() if name not in ignored and v[i] is not None
        ]
        return bool(values) and all(v >= self.config.good_threshold for v in values)

    def reasoning_tokens(self, t: Trajectory) -> int:
        reasoning, _ = split_reasoning(t.text, self._opens_reasoning)
        if not reasoning:
            return 0
        return len(self.tokenizer(reasoning, add_special_tokens=False)["input_ids"])

    def correctness(self, result: Any, flat: Sequence[Trajectory], i: int) -> float:
        """Whether sample ``i`` answered right: its ``exact_match`` term, else the answer
        checked against the gold answers (search routes that only use ``search``)."""
        values = result.terms.get("exact_match")
        if values is not None and values[i] is not None:
            return float(values[i])
        gold = self._gold[i] if i < len(self._gold) else None
        if gold is None or not flat[i].answer:
            return 0.0
        from safework.search.answers import answer_matches

        return float(answer_matches(flat[i].answer, gold))

    # ------------------------------------------------------------------ held-out report

    def report(
        self, prompts: Sequence[RLPrompt], groups: Sequence[Sequence[Trajectory]]
    ) -> dict[str, Any]:
        """The held-out report of greedy answers ``groups`` to ``prompts``: reward terms,
        lengths, per label."""
        result, flat_prompts, flat = self.score(prompts, groups)
        labels = [p.label for p in flat_prompts]
        report: dict[str, Any] = {"n": len(flat), **result.means(labels)}
        lengths = [self.reasoning_tokens(t) for t in flat]
        report["reasoning_tokens_mean"] = sum(lengths) / len(lengths)
        report["completion_tokens_mean"] = sum(len(t.completion_ids) for t in flat) / len(flat)
        for label in sorted(set(labels)):
            mine = [ln for ln, lb in zip(lengths, labels, strict=True) if lb == label]
            report[f"reasoning_tokens/{label}"] = sum(mine) / len(mine)
        if self.config.stage == "search":
            from .rewards import confidently_wrong_rate

            correct = [self.correctness(result, flat, i) for i in range(len(flat))]
            report["accuracy"] = sum(correct) / len(correct)
            report["protocol_model"] = sum(t.protocol == "model" for t in flat) / len(flat)
            report["confidently_wrong"] = confidently_wrong_rate(
                [t.confidence for t in flat], correct, self.lam.threshold
            )
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}

    # ------------------------------------------------------------------ advantages

    def advantages(
        self, result: Any, flat: Sequence[Trajectory]
    ) -> tuple[list[float], list[bool], dict[str, Any]]:
        """Per-sample advantage, whether its group is kept, and what to log."""
        import torch

        from .cpgd import group_advantages, length_bonus, varied_groups

        g = self.config.group_size
        rewards = torch.tensor(result.total, dtype=torch.float32)
        info: dict[str, Any] = {}
        if self.config.stage == "efficient" and self.config.length_weight > 0:
            good = torch.tensor([self.good(result, flat, i) for i in range(len(flat))])
            lengths = torch.tensor([float(self.reasoning_tokens(t)) for t in flat])
            bonus = length_bonus(lengths, good, g)
            rewards = rewards + self.config.length_weight * bonus
            info["good_share"] = float(good.float().mean())
            info["length_bonus_mean"] = float(bonus.mean())
        adv = group_advantages(rewards, g, self.config.advantage)
        keep_groups = varied_groups(rewards, g) if self.config.drop_uniform_groups else None
        if keep_groups is None:
            keep_groups = torch.ones(len(flat) // g, dtype=torch.bool)
        keep = keep_groups.repeat_interleave(g).tolist()
        info["groups_kept"] = int(keep_groups.sum())
        info["groups_dropped"] = int((~keep_groups).sum())
        info["shaped_reward_mean"] = float(rewards.mean())
        return adv.tolist(), keep, info
