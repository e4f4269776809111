"""Reward registry and multi-objective routing of the SafeLadder RL stages.

Reward functions (``fn(prompts, completions, **meta) -> list[float | None]``) and the rules of
each built-in one are described in ``reward_fns.py``; here they are named (``REWARDS``,
``load_reward``) and mixed. ``MultiObjectiveReward(routes)`` scores a batch whose samples carry
task labels: each label routes to weighted rewards (``DEFAULT_ROUTES``, the m3rl stage's), and a
sample's total is the weighted mean of its terms that apply. Every term is kept per sample for
logging (``RewardResult.means``). Routes are checked (``parse_routes``) before any model loads.

``AdaptiveLambda`` adapts the reliability weight ``lam`` of the ``search`` reward by dual
ascent on the batch's confidently-wrong rate.

>>> parse_routes({"math": {"format": 1, "reasoning_gym": 3}})
{'math': {'format': 1.0, 'reasoning_gym': 3.0}}
>>> AdaptiveLambda(value=0.5, step=1.0, target=0.1).update([0.9, 0.9], [0.0, 1.0])
0.9
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from safework.errors import ConfigError

from .reward_fns import (
    DEFAULT_LAMBDA,
    IFEvalReward,
    ReasoningGymReward,
    RewardContext,
    RewardFn,
    ValueReward,
    exact_match_reward,
    format_reward,
    meta_column,
    no_refusal_reward,
    predicted_answer,
    refusal_reward,
    reliability,
    search_format_ok,
    search_reward,
    think_format_ok,
)

__all__ = [
    "DEFAULT_ROUTES",
    "REWARDS",
    "AdaptiveLambda",
    "MultiObjectiveReward",
    "RewardContext",
    "RewardFn",
    "RewardResult",
    "ValueReward",
    "check_reward_name",
    "confidently_wrong_rate",
    "load_reward",
    "parse_routes",
    "predicted_answer",
    "reliability",
    "reward_names",
    "search_format_ok",
    "think_format_ok",
]

logger = logging.getLogger(__name__)

VALUE_PREFIX = "value:"
_ALIASES = {"safety": "value:builtin:safety", "values": "value:builtin:values"}

DEFAULT_ROUTES: dict[str, dict[str, float]] = {
    "math": {"format": 0.2, "reasoning_gym": 0.8},
    "safety": {"format": 0.2, "safety": 0.5, "refusal": 0.3},
    "benign": {"format": 0.2, "values": 0.4, "no_refusal": 0.4},
    "ifeval": {"format": 0.2, "ifeval": 0.8},
    "qa": {"format": 0.2, "exact_match": 0.8},
    "search": {"search": 1.0},
}
"""The m3rl stage's routes: task label -> {reward name: weight}."""


# --------------------------------------------------------------------------- adaptive lambda


def confidently_wrong_rate(
    confidences: Sequence[float | None], correct: Sequence[float], threshold: float = 0.7
) -> float:
    """Share of samples stated with confidence >= ``threshold`` (None counts as 0.5) and wrong
    (correct < 0.5); 0.0 for no samples."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences for {len(correct)} results")
    hits = sum(
        (0.5 if c is None else c) >= threshold and k < 0.5
        for c, k in zip(confidences, correct, strict=True)
    )
    return hits / len(correct) if correct else 0.0


@dataclass
class AdaptiveLambda:
    """The weight of reliability in the search reward, adapted by dual ascent.

    Lambda rises while confidently wrong answers are more frequent than ``target`` (so
    reliability weighs more and overconfidence costs more), and falls back when they are rare,
    returning weight to accuracy. It stays within ``[low, high]``.
    """

    value: float = DEFAULT_LAMBDA
    target: float = 0.1
    """The highest acceptable confidently-wrong rate."""
    step: float = 0.5
    """Dual-ascent step size."""
    low: float = 0.0
    high: float = 2.0
    threshold: float = 0.7
    """Confidence at or above this counts as confident."""

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ConfigError(f"lam.low must be <= lam.high, got {self.low} > {self.high}")
        if not self.low <= self.value <= self.high:
            raise ConfigError(
                f"lam.value must be within lam.low..lam.high ({self.low}..{self.high}), "
                f"got {self.value}"
            )
        if self.step < 0:
            raise ConfigError(f"lam.step must be 0 or more, got {self.step}")
        for key in ("target", "threshold"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"lam.{key} must be in [0, 1], got {getattr(self, key)}")

    def update(self, confidences: Sequence[float | None], correct: Sequence[float]) -> float:
        """``value <- clip(value + step * (rate - target), low, high)`` with ``rate`` the batch's
        confidently-wrong rate; an empty batch changes nothing. Returns the new value."""
        if correct:
            rate = confidently_wrong_rate(confidences, correct, self.threshold)
            self.value = min(
                max(self.value + self.step * (rate - self.target), self.low), self.high
            )
        return self.value

    def state_dict(self) -> dict[str, float]:
        """The fields, for a checkpoint."""
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore from ``state_dict`` (keys left out keep their values); checked first."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ConfigError(f"lam state has unknown keys {unknown}; expected {sorted(known)}")
        restored = AdaptiveLambda(**{**asdict(self), **{k: float(v) for k, v in state.items()}})
        for key in known:
            setattr(self, key, getattr(restored, key))


# --------------------------------------------------------------------------- registry

REWARDS: dict[str, Callable[[RewardContext], RewardFn]] = {
    "format": lambda ctx: format_reward,
    "reasoning_gym": lambda ctx: ReasoningGymReward(),
    "exact_match": lambda ctx: exact_match_reward,
    "ifeval": IFEvalReward,
    "refusal": lambda ctx: refusal_reward,
    "no_refusal": lambda ctx: no_refusal_reward,
    "safety": lambda ctx: ValueReward("builtin:safety", ctx),
    "values": lambda ctx: ValueReward("builtin:values", ctx),
    "search": lambda ctx: search_reward,
}
"""Reward name -> factory; ``value:SPEC`` names are handled by ``load_reward``."""


PY_PREFIX = "py:"
"""``py:package.module:function`` names a user's reward function with the same contract."""


def reward_names() -> list[str]:
    """Every known name, ``value:SPEC`` and ``py:MODULE:FUNCTION`` last."""
    return [*sorted(REWARDS), f"{VALUE_PREFIX}SPEC", f"{PY_PREFIX}MODULE:FUNCTION"]


def _import_reward(name: str) -> RewardFn:
    """The function a ``py:MODULE:FUNCTION`` name points at (imported, not called)."""
    import importlib

    module, sep, attr = name[len(PY_PREFIX) :].partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"reward {name!r}: write py:package.module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"reward {name!r}: cannot import it ({e})") from None
    if not callable(fn):
        raise ConfigError(f"reward {name!r}: {attr} is not callable")
    return fn


def check_reward_name(name: str) -> None:
    """ConfigError for an unknown name or a bad ``value:`` spec; loads nothing."""
    if isinstance(name, str) and name.startswith(VALUE_PREFIX):
        from safework.value_models.registry import check_spec

        try:
            check_spec(name[len(VALUE_PREFIX) :])
        except ConfigError as e:
            raise ConfigError(f"reward {name!r}: {e}") from e
        return
    if isinstance(name, str) and name.startswith(PY_PREFIX):
        _import_reward(name)
        return
    if name not in REWARDS:
        raise ConfigError(
            f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}; or value:SPEC "
            "(e.g. value:builtin:safety, value:rules:pii), or py:MODULE:FUNCTION"
        )


def load_reward(name: str, ctx: RewardContext | None = None) -> RewardFn:
    """The reward function called ``name`` (value models are loaded here)."""
    check_reward_name(name)
    ctx = ctx or RewardContext()
    if name.startswith(VALUE_PREFIX):
        return ValueReward(name[len(VALUE_PREFIX) :], ctx)
    if name.startswith(PY_PREFIX):
        return _import_reward(name)
    return REWARDS[name](ctx)


# --------------------------------------------------------------------------- routing


def parse_routes(
    routes: Mapping[str, Mapping[str, float]], where: str = "routes"
) -> dict[str, dict[str, float]]:
    """Checked routes ``label -> {reward name: weight}``: ConfigError (before any model is
    loaded) for anything but a non-empty mapping of labels to non-empty mappings of known
    reward names to finite weights >= 0, not all zero."""
    if not isinstance(routes, Mapping) or not routes:
        raise ConfigError(
            f"{where}: expected a mapping label -> {{reward: weight}}, got {routes!r}"
        )
    out: dict[str, dict[str, float]] = {}
    for label, rewards in routes.items():
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f"{where}: label {label!r} must be a non-empty string")
        if not isinstance(rewards, Mapping) or not rewards:
            raise ConfigError(
                f"{where}.{label}: expected a mapping reward -> weight with at least one "
                f"reward, got {rewards!r}"
            )
        weights: dict[str, float] = {}
        for name, weight in rewards.items():
            check_reward_name(name)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(f"{where}.{label}.{name}: expected a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"{where}.{label}.{name}: weight must be 0 or more, got {weight}")
            weights[name] = float(weight)
        if not any(weights.values()):
            raise ConfigError(f"{where}.{label}: all weights are 0; give one reward a weight > 0")
        out[label] = weights
    return out


@dataclass
class RewardResult:
    """One batch's rewards: the totals and every term (None where it did not apply)."""

    total: list[float]
    terms: dict[str, list[float | None]]

    def means(self, labels: Sequence[str]) -> dict[str, float]:
        """``reward/<name>`` over the samples each term applied to, ``reward/total``, and
        ``reward/<label>/total`` per label (``labels``: the samples' labels)."""
        out: dict[str, float] = {}
        for name, column in self.terms.items():
            values = [v for v in column if v is not None]
            if values:
                out[f"reward/{name}"] = sum(values) / len(values)
        if self.total:
            out["reward/total"] = sum(self.total) / len(self.total)
        by_label: dict[str, list[float]] = {}
        for label, total in zip(labels, self.total, strict=True):
            by_label.setdefault(label, []).append(total)
        for label, totals in by_label.items():
            out[f"reward/{label}/total"] = sum(totals) / len(totals)
        return out


class MultiObjectiveReward:
    """Routes each sample, by its label, to weighted rewards; see ``__call__``.

    A weight of 0 keeps a term computed and logged without training on it.
    """

    def __init__(
        self, routes: Mapping[str, Mapping[str, float]], ctx: RewardContext | None = None
    ) -> None:
        self._routes = parse_routes(routes)
        ctx = ctx or RewardContext()
        loaded: dict[str, RewardFn] = {}
        self._fns: dict[str, RewardFn] = {}
        for name in dict.fromkeys(n for rewards in self._routes.values() for n in rewards):
            key = _ALIASES.get(name, name)  # "safety" and "value:builtin:safety" share a model
            if key not in loaded:
                loaded[key] = load_reward(name, ctx)
            self._fns[name] = loaded[key]
        self._warned = False

    @property
    def labels(self) -> list[str]:
        return list(self._routes)

    @property
    def routes(self) -> dict[str, dict[str, float]]:
        return {label: dict(rewards) for label, rewards in self._routes.items()}

    def __call__(
        self, prompts: list[str], completions: list[str], labels: list[str], **meta: Any
    ) -> RewardResult:
        """Each reward used by any label runs once, on the samples whose label routes to it
        (meta lists sliced alike; ``label`` is added). ``total[i]`` is the weighted mean of
        sample i's terms that returned a value (0.0, with a warning, when none did)."""
        n = len(completions)
        if len(prompts) != n or len(labels) != n:
            raise ValueError(f"{len(prompts)} prompts, {n} completions, {len(labels)} labels")
        unknown = [label for label in dict.fromkeys(labels) if label not in self._routes]
        if unknown:
            raise ConfigError(
                f"label {unknown[0]!r} has no reward route; routed labels: "
                f"{', '.join(self._routes)}; add routes.{unknown[0]} or fix the samples' labels"
            )
        meta = dict(meta, label=list(labels))
        for key in meta:
            meta_column(meta, key, n)  # lists must have one value per sample
        terms: dict[str, list[float | None]] = {}
        for name, fn in self._fns.items():
            rows = [i for i, label in enumerate(labels) if name in self._routes[label]]
            column: list[float | None] = [None] * n
            if rows:
                sub = {
                    k: [v[i] for i in rows] if isinstance(v, list | tuple) else v
                    for k, v in meta.items()
                }
                values = fn([prompts[i] for i in rows], [completions[i] for i in rows], **sub)
                if len(values) != len(rows):
                    raise RuntimeError(
                        f"reward {name!r} gave {len(values)} values for {len(rows)} samples"
                    )
                for i, value in zip(rows, values, strict=True):
                    if value is not None and not math.isfinite(value):
                        raise RuntimeError(f"reward {name!r} gave {value} for sample {i}")
                    column[i] = None if value is None else float(value)
            terms[name] = column
        total = [self._total(i, labels[i], terms) for i in range(n)]
        return RewardResult(total, terms)

    def _total(self, i: int, label: str, terms: Mapping[str, list[float | None]]) -> float:
        num = den = 0.0
        for name, weight in self._routes[label].items():
            value = terms[name][i]
            if value is not None:
                num, den = num + weight * value, den + weight
        if den > 0:
            return num / den
        if not self._warned:
            logger.warning(
                "no reward applied to a %r sample (e.g. no gold answer); its total is 0.0", label
            )
            self._warned = True
        return 0.0

    def close(self) -> None:
        """Release loaded value models."""
        for fn in {id(f): f for f in self._fns.values()}.values():
            if isinstance(fn, ValueReward):
                fn.close()
