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
- ``efficient``: Safe-and-Efficient RL. Among the samples of a group that are good (finished,
  and every outcome term at least ``good_threshold``: correct, safe, helpful; the format term is
  left out by ``good_ignores`` and still weighs in the reward), the shorter reasoning earns up to
  ``length_weight`` extra reward; samples that are wrong, unsafe or cut off never earn anything
  for brevity. The held-out report gives the mean reasoning length before and after.
- ``search``: Deliberative-Search RL. Rollouts are the server's multi-turn search loop over
  ``search.backend``; retrieved text is in the sequence but masked out of the loss. Reward
  ``format * (0.1 * format + 0.9 * accuracy + lambda * reliability)``; ``lambda`` follows a
  dual-ascent rule that keeps the confidently-wrong rate under ``lam.target``.

Checkpoints and the final servable folder work as in ``sft`` (``checkpoint.py``, ``export.py``);
running the same command again resumes at the next step. Bad settings (an unknown reward or
stage, a negative weight, ``group_size < 2``) are refused before any model is loaded. The
settings are ``rl_config.py``'s, the loop ``rl_trainer.py``'s; ``train_rl`` loads the model and
prompts and starts the run.

Run::

    safework-train rl --stage m3rl model=runs/sft output=runs/m3rl max_steps=60
    safework-train rl --stage efficient model=runs/m3rl output=runs/efficient
    safework-train rl --stage search model=runs/efficient output=runs/search
    safework-train rl --help                      # every key
"""

from __future__ import annotations

from typing import Any

from safework.engine.embedder import Encoder
from safework.errors import ConfigError

from .rl_config import RLConfig
from .rl_data import load_rl_prompts
from .rl_trainer import RLRun
from .sft import resolve_model

__all__ = ["RLConfig", "train_rl"]


def train_rl(config: RLConfig, encoder: Encoder | None = None) -> dict[str, Any]:
    """Run (or resume) one RL stage; returns the summary also written to metrics.json.

    ``encoder`` embeds for the search stage's relevance filter (default: MiniLM)."""
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
    return RLRun(config, model_dir, train, held_out, encoder).fit()
