"""Capability levels: one reasoning-gym dataset at one difficulty, and the ones evaluation uses.

A ``CapabilityLevel`` is a dataset with generator settings. ``CANDIDATE_LEVELS`` are the levels
``bench/capability_levels.py`` sweeps; ``CAPABILITY_LEVELS`` the ones the base model answers
neither always nor never, which evaluation scores (``capability.capability_samples`` asks fresh
questions of them). ``math_source`` reads a ``math_mix`` key, a dataset or a level's name, so
the CoT-SFT data can hold a level's easy problems too. Kept apart from ``capability.py`` (which
needs the evaluation's ``Sample``) so that the dataset builder can read the levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safework.errors import ConfigError

__all__ = ["CANDIDATE_LEVELS", "CAPABILITY_LEVELS", "CapabilityLevel", "math_source"]


@dataclass(frozen=True)
class CapabilityLevel:
    """One reasoning-gym dataset at one difficulty."""

    name: str
    dataset: str
    settings: Mapping[str, Any] = field(default_factory=dict)


_OPS = ("+", "-")
_PLAIN = {"allow_parentheses": False, "allow_negation": False}

CANDIDATE_LEVELS: tuple[CapabilityLevel, ...] = (
    CapabilityLevel(
        "chain_sum/2x1", "chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1}
    ),
    CapabilityLevel(
        "chain_sum/2x2",
        "chain_sum",
        {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2},
    ),
    CapabilityLevel(
        "chain_sum/3x2", "chain_sum", {"min_terms": 3, "max_terms": 3, "max_digits": 2}
    ),
    CapabilityLevel(
        "basic_arithmetic/2x1",
        "basic_arithmetic",
        {"min_terms": 2, "max_terms": 2, "max_digits": 1, "operators": _OPS, **_PLAIN},
    ),
    CapabilityLevel(
        "basic_arithmetic/3x1",
        "basic_arithmetic",
        {"min_terms": 3, "max_terms": 3, "max_digits": 1, "operators": ("+", "-", "*"), **_PLAIN},
    ),
    CapabilityLevel("products/1x1", "products", {"min_digits": 1, "max_digits": 1}),
    CapabilityLevel("products/2x1", "products", {"min_digits": 1, "max_digits": 2}),
    CapabilityLevel(
        "leg_counting/1-2",
        "leg_counting",
        {"min_animals": 1, "max_animals": 2, "min_instances": 1, "max_instances": 3},
    ),
    CapabilityLevel(
        "leg_counting/2-3",
        "leg_counting",
        {"min_animals": 2, "max_animals": 3, "min_instances": 1, "max_instances": 5},
    ),
    CapabilityLevel(
        "simple_equations/small",
        "simple_equations",
        {
            "min_terms": 2,
            "max_terms": 2,
            "max_value": 10,
            "operators": _OPS,
            "operators_weights": [0.5, 0.5],
        },
    ),
    CapabilityLevel(
        "number_sorting/3",
        "number_sorting",
        {
            "min_numbers": 3,
            "max_numbers": 3,
            "max_decimals": 0,
            "min_value": 0.0,
            "max_value": 100.0,
        },
    ),
    CapabilityLevel("gcd/50", "gcd", {"max_value": 50}),
    CapabilityLevel("lcm/12", "lcm", {"max_value": 12}),
    CapabilityLevel("spell_backward/3-5", "spell_backward", {"min_word_len": 3, "max_word_len": 5}),
    CapabilityLevel(
        "word_sequence_reversal/3", "word_sequence_reversal", {"min_words": 3, "max_words": 3}
    ),
    CapabilityLevel("gsm_symbolic", "gsm_symbolic"),
)
"""The sweep ``bench/capability_levels.py --levels candidates`` measures."""

_CHOSEN = ("chain_sum/2x1", "basic_arithmetic/2x1", "products/2x1", "gcd/50", "lcm/12")

CAPABILITY_LEVELS: tuple[CapabilityLevel, ...] = tuple(
    level for level in CANDIDATE_LEVELS if level.name in _CHOSEN
)
"""The levels evaluation scores capability on. The embedded model, greedy, 256 tokens, 40
questions each (2026-12-04, Intel Xeon with AMX): chain_sum/2x1 15/40, basic_arithmetic/2x1
19/40, products/2x1 12/40, gcd/50 7/40, lcm/12 14/40. Left out: products/1x1 (26/40, near the
top) and the levels at 0-4 of 40 (two-digit chain sums, three terms, leg counting, equations,
sorting, spelling backward, word reversal, gsm_symbolic), which the dev split's ``math`` group
and ``--levels candidates`` still report."""


def math_source(key: str) -> tuple[str, dict[str, Any]]:
    """The reasoning-gym dataset and generator settings a ``math_mix`` key names.

    A dataset with a step writer (``math_cot.SOLVERS``) is generated at its
    ``GENERATOR_SETTINGS``; a candidate level's name (``"chain_sum/2x1"``) at that level's
    settings, so the SFT and RL data can hold the easy end of a family as well as the harder
    default. Raises ``ConfigError`` for anything else.
    """
    from .math_cot import GENERATOR_SETTINGS, SOLVERS

    if key in SOLVERS:
        return key, dict(GENERATOR_SETTINGS.get(key, {}))
    levels = {
        level.name: level
        for level in CANDIDATE_LEVELS
        if level.dataset in SOLVERS and level.name not in SOLVERS
    }
    if key in levels:
        return levels[key].dataset, dict(levels[key].settings)
    raise ConfigError(
        f"math_mix: no step writer for {key!r}; choose a dataset among {sorted(SOLVERS)} or a "
        f"level among {sorted(levels)}"
    )
