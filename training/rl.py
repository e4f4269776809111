"""``safework-train rl --stage m3rl|efficient|search``: the SafeLadder RL stages.

Every step samples ``prompts_per_step`` prompts, ``group_size`` completions each (``rollout.py``),
scores them with the stage's multi-objective reward (``rewards.py``: each prompt's task label
routes it to weighted reward terms, every term logged on its own), turns rewards into
group-normalised advantages and updates the policy with the CPGD loss (``cpgd.py``). Groups whose
rewards are all equal carry no signal and are dropped before the update.

Stages:

- ``m3rl``: a two-phase curriculum. The first ``phase1_share`` of the steps draws only the
  general verifiable tasks (``phase1_labels``, default maths); the rest draws
  ``phase2_labels`` (maths, safety, benign) round-robin, so safety, values and capability are
  optimised together.
- ``efficient``: Safe-and-Efficient RL. Among the samples of a group that are good (every routed
  term at least ``good_threshold``: correct, safe, well-formed), the shorter reasoning earns up to
  ``length_weight`` extra reward; samples that are wrong or unsafe never earn anything for
  brevity. The held-out report gives the mean reasoning length before and after.
- ``search``: Deliberative-Search RL. Rollouts are the server's multi-turn search loop over
  ``search.backend``; retrieved text is in the sequence but masked out of the loss. Reward
  ``format * (0.1 * format + 0.9 * accuracy + lambda * reliability)``; ``lambda`` follows a
  dual-ascent rule that keeps the confidently-wrong rate under ``lam.target``.

Checkpoints and the final servable folder work as in ``sft`` (``checkpoint.py``, ``export.py``);
running the same command again resumes at the next step. Bad settings (an unknown reward or
stage, a negative weight, ``group_size < 2``) are refused before any model is loaded.

Run::

    safework-train rl --stage m3rl model=runs/sft output=runs/m3rl max_steps=60
    safework-train rl --stage efficient model=runs/m3rl output=runs/efficient
    safework-train rl --stage search model=runs/efficient output=runs/search
    safework-train rl --help                      # every key
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safework.errors import ConfigError

from .config import config_to_dict
from .sft_config import RUN_SWITCHES, LoraSettings

__all__ = ["STAGES", "CPGDSection", "LambdaSection", "RLConfig", "SearchSection", "train_rl"]

logger = logging.getLogger(__name__)

STAGES = ("m3rl", "efficient", "search")
_RUN_SWITCHES = (
    *RUN_SWITCHES,
    "held_out",
    "max_minutes",
    # these change how an update is computed, never what it is
    "micro_batch_size",
    "rollout_engine",
    "rollout_dtype",
    "gradient_checkpointing",
)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class CPGDSection:
    clip_eps: float = field(default=0.2, metadata=_help("eps of the clipped log-ratio"))
    alpha: float = field(default=0.01, metadata=_help("weight of the policy-drift regulariser"))
    drift_clip: float = field(default=3.0, metadata=_help("c: the drift weight clamp(r-1, max=c)"))
    kl_coef: float = field(
        default=0.0, metadata=_help("KL to the starting policy (k3); 0 = off, no reference pass")
    )
    loss_norm: Literal["token", "sequence"] = field(
        default="token", metadata=_help("average over all trained tokens, or per sequence")
    )

    def settings(self) -> Any:
        from .cpgd import CPGDSettings

        return CPGDSettings(
            self.clip_eps, self.alpha, self.drift_clip, self.kl_coef, self.loss_norm
        )

    def check(self) -> None:
        try:
            self.settings().check()
        except ValueError as exc:
            raise ConfigError(f"cpgd: {exc}") from None


@dataclass
class SearchSection:
    backend: str = field(
        default="local:builtin", metadata=_help("search backend spec (as `safework serve`)")
    )
    max_turns: int = field(default=3, metadata=_help("model turns per rollout"))
    top_k: int = field(default=3, metadata=_help("results shown per search"))
    turn_max_tokens: int = field(default=96, metadata=_help("tokens per model turn"))
    answer_max_tokens: int = field(default=32, metadata=_help("tokens of a fallback answer"))
    read: bool = field(default=True, metadata=_help("let the model read whole documents"))
    info_max_chars: int = field(default=1200, metadata=_help("longest block of results"))
    read_max_chars: int = field(default=1600, metadata=_help("longest excerpt of a read"))

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
    value: float = field(default=0.5, metadata=_help("starting lambda (reliability weight)"))
    target: float = field(default=0.1, metadata=_help("highest acceptable confidently-wrong rate"))
    step: float = field(default=0.5, metadata=_help("dual-ascent step size"))
    low: float = field(default=0.0, metadata=_help("lambda's lower bound"))
    high: float = field(default=2.0, metadata=_help("lambda's upper bound"))
    threshold: float = field(default=0.7, metadata=_help("confidence counted as confident"))

    def check(self) -> None:
        if not 0 <= self.target <= 1 or not 0 <= self.threshold <= 1:
            raise ConfigError("lam.target and lam.threshold must lie in [0, 1]")
        if self.step < 0 or not self.low <= self.value <= self.high:
            raise ConfigError("lam: need step >= 0 and low <= value <= high")


@dataclass
class RLConfig:
    stage: str = field(default="m3rl", metadata=_help("m3rl, efficient or search"))
    model: str = field(
        default="default",
        metadata=_help("HF model folder (an SFT or RL checkpoint), or 'default' (SmolLM2-135M)"),
    )
    data: str = field(
        default="auto",
        metadata=_help(
            "prompts: 'cot-sft', 'element-qa', a prompts .jsonl, or 'auto' "
            "(search: element-qa, others: cot-sft)"
        ),
    )
    output: Path = field(default=Path("runs/rl"), metadata=_help("run folder"))
    rewards: dict[str, dict[str, float]] = field(
        default_factory=dict,
        metadata=_help(
            "label -> {reward: weight}; empty = the stage's defaults (rewards.DEFAULT_ROUTES)"
        ),
    )
    method: Literal["lora", "full"] = field(default="lora", metadata=_help("LoRA or all weights"))
    lora: LoraSettings = field(default_factory=LoraSettings, metadata=_help("LoRA settings"))
    max_steps: int = field(default=100, metadata=_help("RL steps (rollout + update)"))
    max_minutes: float = field(
        default=0.0,
        metadata=_help("stop after this much training time (then save as at the end); 0 = off"),
    )
    prompts_per_step: int = field(default=4, metadata=_help("prompts sampled per step"))
    group_size: int = field(default=4, metadata=_help("G: completions per prompt (>= 2)"))
    max_prompt_tokens: int = field(default=512, metadata=_help("longer prompts are skipped"))
    max_new_tokens: int = field(default=256, metadata=_help("tokens per completion"))
    temperature: float = field(default=1.0, metadata=_help("rollout sampling temperature"))
    top_p: float = field(default=1.0, metadata=_help("rollout nucleus sampling"))
    advantage: Literal["group", "mean", "rloo", "batch"] = field(
        default="group", metadata=_help("advantage weighting (cpgd.group_advantages)")
    )
    drop_uniform_groups: bool = field(
        default=True, metadata=_help("skip groups whose rewards are all equal")
    )
    cpgd: CPGDSection = field(default_factory=CPGDSection, metadata=_help("the CPGD loss"))
    ppo_epochs: int = field(default=1, metadata=_help("passes over each step's samples"))
    mini_batches: int = field(default=1, metadata=_help("optimizer steps per pass"))
    micro_batch_size: int = field(default=8, metadata=_help("sequences per forward pass"))
    lr: float = field(default=2e-5, metadata=_help("learning rate (LoRA: 1e-5..1e-4)"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    warmup_ratio: float = field(default=0.0, metadata=_help("share of updates warming up"))
    scheduler: Literal["cosine", "linear", "constant"] = field(
        default="constant", metadata=_help("learning-rate schedule after warmup")
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping; 0 = off"))
    precision: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata=_help("bf16 autocast (auto: where the hardware is fast at it)")
    )
    gradient_checkpointing: bool = field(default=False, metadata=_help("recompute activations"))
    phase1_labels: list[str] = field(
        default_factory=lambda: ["math"], metadata=_help("m3rl phase 1: general tasks")
    )
    phase2_labels: list[str] = field(
        default_factory=lambda: ["math", "safety", "benign"],
        metadata=_help("m3rl phase 2: safety + values + general together"),
    )
    phase1_share: float = field(default=0.5, metadata=_help("m3rl: share of steps in phase 1"))
    labels: list[str] = field(
        default_factory=list,
        metadata=_help("efficient/search: labels to train on (empty: every routed label)"),
    )
    length_weight: float = field(
        default=0.5, metadata=_help("efficient: most extra reward for the shortest good sample")
    )
    good_threshold: float = field(
        default=0.5, metadata=_help("efficient: every routed term at least this = good")
    )
    search: SearchSection = field(default_factory=SearchSection, metadata=_help("search stage"))
    lam: LambdaSection = field(default_factory=LambdaSection, metadata=_help("adaptive lambda"))
    rollout_engine: Literal["policy", "vllm"] = field(
        default="policy",
        metadata=_help("policy: the trained model's own generate; vllm: colocated vLLM + sync"),
    )
    rollout_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata=_help(
            "dtype of the colocated vLLM (auto: vLLM's on a GPU; on a CPU the fastest whose "
            "greedy output agrees with float32 transformers, checked once per CPU and model)"
        ),
    )
    held_out: int = field(
        default=32, metadata=_help("held-out prompts scored (greedy) before and after; 0 = off")
    )
    log_every: int = field(default=1, metadata=_help("log a line every N steps"))
    save_every: int = field(default=25, metadata=_help("checkpoint every N steps; 0 = end"))
    save_total_limit: int = field(default=2, metadata=_help("checkpoints kept; 0 = all"))
    resume: str = field(default="auto", metadata=_help("'auto', 'never' or a checkpoint folder"))
    overwrite: bool = field(default=False, metadata=_help("empty a folder holding another run"))
    deepspeed: Path | None = field(
        default=None, metadata=_help("DeepSpeed JSON (ZeRO-2/3); used under the launcher")
    )
    chat_template: Path | None = field(
        default=None, metadata=_help("Jinja chat template to use instead of the model's")
    )
    save_dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto", metadata=_help("dtype of the final model (auto: the base model's)")
    )
    seed: int = field(default=0, metadata=_help("prompt order, sampling, LoRA init"))
    cache: Path | None = field(default=None, metadata=_help("cache root ($SAFEWORK_CACHE)"))

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
        for key in ("save_every", "save_total_limit", "held_out"):
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
        return parse_routes({k: DEFAULT_ROUTES[k] for k in ("math", "safety", "benign")})

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


def train_rl(config: RLConfig) -> dict[str, Any]:
    """Run (or resume) one RL stage; returns the summary also written to metrics.json."""
    from .rl_data import load_rl_prompts
    from .rl_trainer import RLRun
    from .sft import resolve_model

    model_dir = resolve_model(config.model, config.cache)
    train, held_out = load_rl_prompts(config.data_source(), config.cache, config.seed)
    labels = set(config.stage_labels())
    train = [p for p in train if p.label in labels]
    held_out = [p for p in held_out if p.label in labels]
    have = {p.label for p in train}
    if labels - have:
        raise ConfigError(
            f"data {config.data_source()!r} has no prompts labelled {sorted(labels - have)}; "
            f"it has {sorted({p.label for p in train}) or 'none'}"
        )
    return RLRun(config, model_dir, train, held_out).fit()
