"""Capability questions a 135M model can move on: reasoning-gym tasks at chosen difficulty.

The dev split's maths (mostly ``gsm_symbolic`` word problems, up to 6 terms of 3 digits) sits
at the floor for the embedded model: 1 of 40 right before any training, so no stage can show a
gain or a loss there. A ``CapabilityLevel`` is one reasoning-gym dataset with generator
settings (``levels.py``); ``CAPABILITY_LEVELS`` are the ones the base model answers neither
always nor never (measured with ``bench/capability_levels.py``, which also sweeps
``CANDIDATE_LEVELS``).

Questions are generated on demand with seeds of their own (``derive_seed(seed,
"capability", level)``: never the seeds the CoT-SFT or RL data use), and a question whose
normalized text or problem (``problem_key``: the expression, or a GCD's or LCM's numbers in any
order) is in ``exclude`` (the training rows') is skipped, as is a repeat, so every checkpoint
meets them fresh and none twice. Each becomes an ``eval_tasks.Sample`` whose ``meta`` holds what
``score_math`` needs (``dataset``, ``answer``, ``entry``) and the ``level``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from safework.errors import ConfigError

from .eval_tasks import Sample
from .levels import CANDIDATE_LEVELS, CAPABILITY_LEVELS, CapabilityLevel, math_source

__all__ = [
    "CANDIDATE_LEVELS",
    "CAPABILITY_LEVELS",
    "CapabilityLevel",
    "capability_samples",
    "math_source",
    "problem_key",
]


def problem_key(entry: Mapping[str, Any]) -> str | None:
    """What a reasoning-gym entry asks, whatever its wording: the expression (``4 - 9``, in
    a chain sum or basic arithmetic alike) or the unordered numbers of a GCD or LCM. None for
    the others, whose question text is the key."""
    meta = entry.get("metadata") or {}
    expression = meta.get("expression")
    if isinstance(expression, str) and expression.strip():
        return "expression:" + "".join(expression.split())
    numbers = meta.get("numbers")
    dataset = meta.get("source_dataset")
    if dataset in ("gcd", "lcm") and isinstance(numbers, list):
        return f"{dataset}:{sorted(numbers)}"
    return None


def capability_samples(
    levels: Sequence[CapabilityLevel],
    per_level: int,
    seed: int = 0,
    exclude: Collection[str] = (),
) -> list[Sample]:
    """``per_level`` fresh questions of every level, as ``capability`` samples.

    ``exclude`` holds normalized question texts and ``problem_key`` values. Raises
    ``ConfigError`` when a level cannot give that many questions outside it.
    """
    import reasoning_gym

    from safework.value_models.data import normalize

    from .math_cot import json_safe
    from .rows import derive_seed

    out: list[Sample] = []
    for level in levels:
        limit = 4 * per_level + 200
        dataset = reasoning_gym.create_dataset(
            level.dataset,
            size=limit,
            seed=derive_seed(seed, "capability", level.name),
            **dict(level.settings),
        )
        seen = set(exclude)
        taken = 0
        for index in range(limit):
            entry = json_safe(dataset[index])
            keys = {normalize(entry["question"]), problem_key(entry)} - {None}
            if keys & seen:
                continue
            seen |= keys
            meta = {
                "dataset": level.dataset,
                "answer": entry["answer"],
                "entry": entry,
                "level": level.name,
            }
            messages = [{"role": "user", "content": entry["question"]}]
            out.append(Sample(f"capability/{level.name}/{index}", "capability", messages, meta))
            taken += 1
            if taken == per_level:
                break
        else:
            raise ConfigError(
                f"capability level {level.name}: only {taken} distinct questions outside the "
                f"training rows (asked for {per_level})"
            )
    return out
