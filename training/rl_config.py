"""``RLConfig``: the settings of ``safework-train rl`` (``rl.py`` starts it, ``rl_trainer.py``).

The config on its own, so the trainer (``rl_trainer.py``), the loss (``cpgd.py``) and the
stage's entry (``rl.py``) all read it and none imports another for it. Sections: ``cpgd`` (the
loss's ``CPGDSettings``, one definition for the config and ``cpgd_loss``), ``search`` (the
search stage's backend and rollout loop, turned into the loop's ``SearchConfig`` by
``SearchSection.search_config``) and ``lam`` (the adaptive lambda). Importing this module is
cheap: ``--help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from safework.errors import ConfigError

from .config import config_to_dict, help_text
from .sft_config import RUN_SWITCHES, LoraSettings

if TYPE_CHECKING:
    from safework.search.deliberative import SearchConfig

__all__ = [
    "LOSS_NORMS",
    "STAGES",
    "CPGDSettings",
    "LambdaSection",
    "RLConfig",
    "SearchSection",
]

STAGES = ("m3rl", "efficient", "search")
_RUN_SWITCHES = (
    *RUN_SWITCHES,
    "held_out",
    "max_minutes",
    # these change how an update is computed, never what it is
    "micro_batch_size",
    "micro_batch_tokens",
    "rollout_engine",
    "rollout_dtype",
    "gradient_checkpointing",
)


LOSS_NORMS: tuple[str, ...] = ("token", "sequence")


@dataclass
class CPGDSettings:
    """Hyper-parameters of the CPGD loss (``cpgd.cpgd_loss``; its docstring has the formulas)."""

    clip_eps: float = field(default=0.2, metadata=help_text("eps of the clipped log-ratio"))
    alpha: float = field(default=0.01, metadata=help_text("weight of the policy-drift regulariser"))
    drift_clip: float = field(
        default=3.0, metadata=help_text("c: the drift weight clamp(r-1, max=c)")
    )
    kl_coef: float = field(
        default=0.0,
        metadata=help_text("KL to the starting policy (k3); 0 = off, no reference pass"),
    )
    loss_norm: Literal["token", "sequence"] = field(
        default="token", metadata=help_text("average over all trained tokens, or per sequence")
    )

    def check(self) -> None:
        """Raise ValueError naming the first field out of range (``cpgd_loss`` checks too; a
        config load reports it as ``cpgd: ...``)."""
        if not 0.0 < self.clip_eps < 1.0:
            raise ValueError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.alpha < 0.0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.drift_clip <= 0.0:
            raise ValueError(f"drift_clip must be > 0, got {self.drift_clip}")
        if self.kl_coef < 0.0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be one of {LOSS_NORMS}, got {self.loss_norm!r}")


@dataclass
class SearchSection:
    backend: str = field(
        default="local:builtin", metadata=help_text("search backend spec (as `safework serve`)")
    )
    max_turns: int = field(default=3, metadata=help_text("model turns per rollout"))
    top_k: int = field(default=3, metadata=help_text("results shown per search"))
    turn_max_tokens: int = field(default=96, metadata=help_text("tokens per model turn"))
    answer_max_tokens: int = field(default=32, metadata=help_text("tokens of a fallback answer"))
    read: bool = field(default=True, metadata=help_text("let the model read whole documents"))
    info_max_chars: int = field(default=1200, metadata=help_text("longest block of results"))
    read_max_chars: int = field(default=1600, metadata=help_text("longest excerpt of a read"))

    def search_config(self) -> SearchConfig:
        """The rollouts' ``SearchConfig``: these keys (all but ``backend``), the others at its
        defaults, without the closed-book prior check."""
        from safework.search.deliberative import SearchConfig

        keys = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "backend"}
        return SearchConfig(**keys, prior_check=False)

    def check(self) -> None:
        for key in (
            "max_turns",
            "top_k",
            "turn_max_tokens",
            "answer_max_tokens",
            "info_max_chars",
            "read_max_chars",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"search.{key} must be at least 1")


@dataclass
class LambdaSection:
    value: float = field(default=0.5, metadata=help_text("starting lambda (reliability weight)"))
    target: float = field(
        default=0.1, metadata=help_text("highest acceptable confidently-wrong rate")
    )
    step: float = field(default=0.5, metadata=help_text("dual-ascent step size"))
    low: float = field(default=0.0, metadata=help_text("lambda's lower bound"))
    high: float = field(default=2.0, metadata=help_text("lambda's upper bound"))
    threshold: float = field(default=0.7, metadata=help_text("confidence counted as confident"))

    def check(self) -> None:
        if not 0 <= self.target <= 1 or not 0 <= self.threshold <= 1:
            raise ConfigError("lam.target and lam.threshold must lie in [0, 1]")
        if self.step < 0 or not self.low <= self.value <= self.high:
            raise ConfigError("lam: need step >= 0 and low <= value <= high")


@dataclass
class RLConfig:
    stage: str = field(default="m3rl", metadata=help_text("m3rl, efficient or search"))
    model: str = field(
        default="default",
        metadata=help_text(
            "HF model folder (an SFT or RL checkpoint), or 'default' (SmolLM2-135M)"
        ),
    )
    data: str = field(
        default="auto",
        metadata=help_text(
            "prompts: 'cot-sft', 'element-qa', a dataset folder, a prompts .jsonl, or 'auto' "
            "(search: element-qa, others: cot-sft)"
        ),
    )
    output: Path = field(default=Path("runs/rl"), metadata=help_text("run folder"))
    rewards: dict[str, dict[str, float]] = field(
        default_factory=dict,
        metadata=help_text(
            "label -> {reward: weight}; empty = the stage's defaults (rewards.DEFAULT_ROUTES)"
        ),
    )
    method: Literal["lora", "full"] = field(
        default="lora", metadata=help_text("LoRA or all weights")
    )
    lora: LoraSettings = field(default_factory=LoraSettings, metadata=help_text("LoRA settings"))
    max_steps: int = field(default=100, metadata=help_text("RL steps (rollout + update)"))
    max_minutes: float = field(
        default=0.0,
        metadata=help_text("stop after this much training time (then save as at the end); 0 = off"),
    )
    prompts_per_step: int = field(default=4, metadata=help_text("prompts sampled per step"))
    group_size: int = field(default=4, metadata=help_text("G: completions per prompt (>= 2)"))
    max_prompt_tokens: int = field(default=512, metadata=help_text("longer prompts are skipped"))
    max_new_tokens: int = field(default=256, metadata=help_text("tokens per completion"))
    temperature: float = field(default=1.0, metadata=help_text("rollout sampling temperature"))
    top_p: float = field(default=1.0, metadata=help_text("rollout nucleus sampling"))
    advantage: Literal["group", "mean", "rloo", "batch"] = field(
        default="group", metadata=help_text("advantage weighting (cpgd.group_advantages)")
    )
    drop_uniform_groups: bool = field(
        default=True, metadata=help_text("skip groups whose rewards are all equal")
    )
    cpgd: CPGDSettings = field(default_factory=CPGDSettings, metadata=help_text("the CPGD loss"))
    ppo_epochs: int = field(default=1, metadata=help_text("passes over each step's samples"))
    mini_batches: int = field(default=1, metadata=help_text("optimizer steps per pass"))
    micro_batch_size: int = field(default=8, metadata=help_text("sequences per forward pass"))
    micro_batch_tokens: int = field(
        default=4096,
        metadata=help_text(
            "padded tokens per forward pass at most (0: no limit; one long sequence goes alone)"
        ),
    )
    lr: float = field(default=2e-5, metadata=help_text("learning rate (LoRA: 1e-5..1e-4)"))
    weight_decay: float = field(default=0.0, metadata=help_text("AdamW weight decay"))
    warmup_ratio: float = field(default=0.0, metadata=help_text("share of updates warming up"))
    scheduler: Literal["cosine", "linear", "constant"] = field(
        default="constant", metadata=help_text("learning-rate schedule after warmup")
    )
    max_grad_norm: float = field(default=1.0, metadata=help_text("gradient clipping; 0 = off"))
    precision: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata=help_text("bf16 autocast (auto: where the hardware is fast at it)")
    )
    gradient_checkpointing: bool = field(default=False, metadata=help_text("recompute activations"))
    phase1_labels: list[str] = field(
        default_factory=lambda: ["math"], metadata=help_text("m3rl phase 1: general tasks")
    )
    phase2_labels: list[str] = field(
        default_factory=lambda: ["math", "safety", "benign"],
        metadata=help_text("m3rl phase 2: safety + values + general together"),
    )
    phase1_share: float = field(default=0.5, metadata=help_text("m3rl: share of steps in phase 1"))
    labels: list[str] = field(
        default_factory=list,
        metadata=help_text("efficient/search: labels to train on (empty: every routed label)"),
    )
    length_weight: float = field(
        default=0.5, metadata=help_text("efficient: most extra reward for the shortest good sample")
    )
    good_threshold: float = field(
        default=0.5,
        metadata=help_text("efficient: every outcome term at least this (and not cut off) = good"),
    )
    good_ignores: list[str] = field(
        default_factory=lambda: ["format"],
        metadata=help_text("efficient: routed terms that do not decide good (style, not outcome)"),
    )
    search: SearchSection = field(default_factory=SearchSection, metadata=help_text("search stage"))
    lam: LambdaSection = field(default_factory=LambdaSection, metadata=help_text("adaptive lambda"))
    rollout_engine: Literal["policy", "vllm"] = field(
        default="policy",
        metadata=help_text("policy: the trained model's own generate; vllm: colocated vLLM + sync"),
    )
    rollout_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata=help_text(
            "dtype of the colocated vLLM (auto: vLLM's on a GPU; on a CPU the fastest whose "
            "greedy output agrees with float32 transformers, checked once per CPU and model)"
        ),
    )
    held_out: int = field(
        default=32, metadata=help_text("held-out prompts scored (greedy) before and after; 0 = off")
    )
    log_every: int = field(default=1, metadata=help_text("log a line every N steps"))
    save_every: int = field(default=25, metadata=help_text("checkpoint every N steps; 0 = end"))
    save_total_limit: int = field(default=2, metadata=help_text("checkpoints kept; 0 = all"))
    resume: str = field(
        default="auto", metadata=help_text("'auto', 'never' or a checkpoint folder")
    )
    overwrite: bool = field(default=False, metadata=help_text("empty a folder holding another run"))
    deepspeed: Path | None = field(
        default=None, metadata=help_text("DeepSpeed JSON (ZeRO-2/3); used under the launcher")
    )
    chat_template: Path | None = field(
        default=None, metadata=help_text("Jinja chat template to use instead of the model's")
    )
    save_dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata=help_text("dtype of the final model (auto: the base model's)")
    )
    seed: int = field(default=0, metadata=help_text("prompt order, sampling, LoRA init"))
    cache: Path | None = field(default=None, metadata=help_text("cache root ($SAFEWORK_CACHE)"))

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r}; use one of {', '.join(STAGES)}")
        if self.group_size < 2:
            raise ConfigError(
                f"group_size must be at least 2 (got {self.group_size}): advantages compare "
                "the samples of a group"
            )
        for key in ("max_steps", "prompts_per_step", "max_prompt_tokens", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("ppo_epochs", "mini_batches", "micro_batch_size", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("save_every", "save_total_limit", "held_out", "micro_batch_tokens"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be 0 or more, got {getattr(self, key)}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("rollouts sample: temperature > 0 and top_p in (0, 1]")
        if self.lr <= 0 or self.max_grad_norm < 0 or self.weight_decay < 0:
            raise ConfigError("lr must be positive; max_grad_norm and weight_decay >= 0")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.phase1_share <= 1:
            raise ConfigError("warmup_ratio must be in [0, 1) and phase1_share in [0, 1]")
        if self.max_minutes < 0:
            raise ConfigError(f"max_minutes must be 0 or more, got {self.max_minutes}")
        if self.length_weight < 0:
            raise ConfigError(f"length_weight must be 0 or more, got {self.length_weight}")
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise ConfigError(f"resume={self.resume!r}: not 'auto', 'never' or a checkpoint folder")
        self.routes()  # reward names and weights, before anything loads
        missing = set(self.stage_labels()) - set(self.routes())
        if missing:
            raise ConfigError(
                f"labels {sorted(missing)} have no reward route; add rewards.<label> or drop them"
            )

    # ------------------------------------------------------------------ derived

    def data_source(self) -> str:
        if self.data != "auto":
            return self.data
        return "element-qa" if self.stage == "search" else "cot-sft"

    def routes(self) -> dict[str, dict[str, float]]:
        """The stage's reward routes, checked (``rewards.parse_routes``)."""
        from .rewards import DEFAULT_ROUTES, parse_routes

        if self.rewards:
            return parse_routes(self.rewards, "rewards")
        if self.stage == "search":
            return parse_routes({"search": DEFAULT_ROUTES["search"]})
        # the labels the stage names (an ``ifeval`` in phase 1 brings its route), else these
        named = [*self.phase1_labels, *self.phase2_labels] if self.stage == "m3rl" else self.labels
        wanted = set(named) or {"math", "safety", "benign"}
        chosen = {k: v for k, v in DEFAULT_ROUTES.items() if k in wanted}
        return parse_routes(chosen) if chosen else {}  # none known: check() names the labels

    def stage_labels(self) -> list[str]:
        """Every label this stage trains on."""
        if self.stage == "m3rl":
            return sorted({*self.phase1_labels, *self.phase2_labels})
        return list(self.labels) or sorted(self.routes())

    def labels_at(self, step: int) -> list[str]:
        """The labels drawn at ``step`` (0-based): the m3rl curriculum, else all."""
        if self.stage != "m3rl":
            return self.stage_labels()
        phase1_steps = round(self.phase1_share * self.max_steps)
        return list(self.phase1_labels if step < phase1_steps else self.phase2_labels)

    def identity(self) -> dict[str, Any]:
        data = config_to_dict(self)
        return {k: v for k, v in data.items() if k not in _RUN_SWITCHES}
